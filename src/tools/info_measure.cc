// SPDX-License-Identifier: Apache-2.0
#include "tools/info_measure.h"

#include <fcntl.h>

#include "cfs/util/sys.h"

namespace cfs::tools {

Result<verity::Digest> measure_fd_digest(int fd, const std::string& what, unsigned threads) {
  // TODO(issue 2): ask the kernel first (FS_IOC_MEASURE_VERITY) once cfs/verity/kernel.h lands.
  return verity::digest_fd(fd, verity::Params{}, what, threads);
}

Result<verity::Digest> measure_file_digest(const std::string& path, unsigned threads) {
  CFS_ASSIGN(UniqueFd fd, sys::open(path, O_RDONLY));
  return measure_fd_digest(fd.get(), path, threads);
}

}  // namespace cfs::tools
