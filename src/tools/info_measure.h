// SPDX-License-Identifier: Apache-2.0
// fs-verity digest of a file as `composefs-info measure-file` and `cfs fsck` need it: the
// kernel's measurement when the file has verity enabled, else computed in userspace.
#pragma once

#include <string>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::tools {

/// fs-verity digest (4 KiB blocks, no salt; SHA-256 unless `alg` says otherwise) of the file
/// at path. An empty file gives the kernel's value (upstream 1.0.8 differs there, format
/// quirk 12).
Result<verity::Digest> measure_file_digest(const std::string& path, unsigned threads = 0,
                                           verity::HashAlg alg = verity::HashAlg::kSha256);
/// Same for an open fd (`what` names it in errors).
Result<verity::Digest> measure_fd_digest(int fd, const std::string& what, unsigned threads = 0,
                                         verity::HashAlg alg = verity::HashAlg::kSha256);

}  // namespace cfs::tools
