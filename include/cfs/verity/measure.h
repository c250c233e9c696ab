// SPDX-License-Identifier: Apache-2.0
// The measure-else-compute policy, in one place: a file's fs-verity digest is the kernel's
// measurement when the file has fs-verity (free, and exactly what a kernel mount enforces),
// else it is computed in userspace. Used by `cfs measure`, `composefs-info measure-file`, fsck,
// the object store and both mounts' digest= check.
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <optional>
#include <string>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::verity {

/// The kernel's measurement of fd when the file has fs-verity with algorithm `alg` (any
/// algorithm when nullopt); nullopt when it has none or another algorithm, so the caller
/// computes the digest itself. Real failures (EIO, EBADF) are errors. `no_verity_here`, when
/// given, is set when the kernel or the filesystem has no fs-verity at all (not just this
/// file): no file there can have a measurement, so a caller checking many files of one
/// filesystem can stop asking.
Result<std::optional<Digest>> kernel_measurement(int fd, const std::string& what,
                                                 std::optional<HashAlg> alg,
                                                 bool* no_verity_here = nullptr);

struct Measurement {
  Digest digest;
  bool from_kernel = false;
};

/// The digest of fd with parameters `p`: the kernel's measurement when it has one of p.alg,
/// else computed from offset 0 to EOF on `threads` threads (0 = all CPUs).
Result<Measurement> measure_or_compute(int fd, const Params& p, const std::string& what,
                                       unsigned threads = 0);

/// An open file whose bytes have the fs-verity digest `expected` for as long as it is open.
struct CheckedFile {
  UniqueFd fd;
  bool by_kernel = false;  ///< the file itself: its fs-verity measurement matched
};

/// Checks the regular file open at `fd` against `expected` and returns what to use instead of
/// it: the file itself when the kernel measures it (fs-verity files are immutable and every
/// page read is verified), else a sealed memfd copy whose digest was computed, so the bytes
/// checked are exactly the bytes used, whatever happens to the file afterwards. A mismatch is
/// Errc::kDigestMismatch ("WHAT: wrong fs-verity digest (how): expected sha256:…, got …").
Result<CheckedFile> open_checked(UniqueFd fd, const std::string& what, const Digest& expected);

}  // namespace cfs::verity
