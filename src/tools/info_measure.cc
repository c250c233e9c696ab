// SPDX-License-Identifier: Apache-2.0
#include "tools/info_measure.h"

#include <fcntl.h>

#include "cfs/util/sys.h"
#include "cfs/verity/kernel.h"

namespace cfs::tools {

Result<verity::Digest> measure_fd_digest(int fd, const std::string& what, unsigned threads,
                                         verity::HashAlg alg) {
  // The kernel's measurement is free when the file has fs-verity (and is what a mount will
  // enforce); otherwise hash it.
  auto kernel = verity::measure_verity(fd, what);
  if (!kernel && !verity::is_verity_unavailable(kernel.error()))
    return fail(std::move(kernel).error());
  if (kernel && kernel->alg == alg) return *kernel;
  verity::Params p;
  p.alg = alg;
  return verity::digest_fd(fd, p, what, threads);
}

Result<verity::Digest> measure_file_digest(const std::string& path, unsigned threads,
                                           verity::HashAlg alg) {
  CFS_ASSIGN(UniqueFd fd, sys::open(path, O_RDONLY));
  return measure_fd_digest(fd.get(), path, threads, alg);
}

}  // namespace cfs::tools
