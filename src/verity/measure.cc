// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/measure.h"

#include <fcntl.h>

#include "cfs/util/sys.h"
#include "cfs/verity/kernel.h"

namespace cfs::verity {
namespace {

Status compare(const Digest& expected, const Digest& actual, const std::string& what,
               const std::string& how) {
  if (expected == actual) return {};
  return fail(Errc::kDigestMismatch, what + ": wrong fs-verity digest (" + how + "): expected " +
                                         expected.str() + ", got " + actual.str());
}

}  // namespace

Result<std::optional<Digest>> kernel_measurement(int fd, const std::string& what,
                                                 std::optional<HashAlg> alg, bool* no_verity_here) {
  auto m = measure_verity(fd, what);
  if (!m) {
    if (no_verity_here && is_verity_unsupported_here(m.error())) *no_verity_here = true;
    if (is_verity_unavailable(m.error())) return std::optional<Digest>();
    return fail(std::move(m).error());
  }
  if (alg && m->alg != *alg) return std::optional<Digest>();
  return std::optional<Digest>(*m);
}

Result<Measurement> measure_or_compute(int fd, const Params& p, const std::string& what,
                                       unsigned threads) {
  CFS_ASSIGN(std::optional<Digest> kernel, kernel_measurement(fd, what, p.alg));
  if (kernel) return Measurement{*kernel, true};
  CFS_ASSIGN(Digest d, digest_fd(fd, p, what, threads));
  return Measurement{d, false};
}

Result<CheckedFile> open_checked(UniqueFd fd, const std::string& what, const Digest& expected) {
  CFS_ASSIGN(std::optional<Digest> kernel, kernel_measurement(fd.get(), what, expected.alg));
  if (kernel) {
    // fs-verity makes the file immutable and the kernel verifies every page it reads, so the
    // descriptor digest covers every byte anyone will read through this fd.
    CFS_TRY(compare(expected, *kernel, what, "kernel fs-verity measurement"));
    return CheckedFile{std::move(fd), true};
  }
  // Digesting the file and then using it would leave a window in which it could be rewritten.
  // A sealed memfd cannot change after sealing, so the digest covers exactly what is used.
  CFS_ASSIGN(UniqueFd copy, sys::memfd_create("composefs-image"));
  CFS_TRY(sys::copy_all(fd.get(), copy.get(), what + " into memfd"));
  CFS_TRY(sys::seal_readonly(copy.get()));
  Params params;
  params.alg = expected.alg;
  // A fresh open file description of the memfd reads from offset 0 whatever the copy left.
  CFS_ASSIGN(UniqueFd reader, sys::open(sys::fd_path(copy.get()), O_RDONLY));
  CFS_ASSIGN(Digest actual, digest_fd(reader.get(), params, "sealed copy of " + what));
  CFS_TRY(compare(expected, actual, what, "no fs-verity on the file; digest of a sealed copy"));
  return CheckedFile{std::move(copy), false};
}

}  // namespace cfs::verity
