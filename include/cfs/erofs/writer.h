// SPDX-License-Identifier: Apache-2.0
// The composefs image writer: turns a Tree into the exact bytes composefs 1.0.8's mkcomposefs
// writes for the same input (layout: docs/format.md). The image is produced in one streaming pass
// and its fs-verity digest is computed on the same stream. Thread-safety: write_image only reads
// `tree`; concurrent calls on distinct or unmodified trees are safe.
#pragma once

#include <cstdint>

#include "cfs/tree/tree.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::erofs {

/// Format version range, as mkcomposefs' --min-version/--max-version. The writer uses
/// min_version, bumped to 1 when max_version >= 1 and the input holds a user whiteout (a chardev
/// 0/0). max_version < min_version is raised to min_version; values > 1 are kInvalidInput.
struct WriteOptions {
  std::uint32_t min_version = 0;
  std::uint32_t max_version = 1;
  /// Algorithm of the image's own fs-verity digest (WriteResult::digest). The files' digests
  /// are whatever the tree holds (SHA-256 or SHA-512 metacopy values).
  verity::HashAlg hash = verity::HashAlg::kSha256;
};

struct WriteResult {
  verity::Digest digest;      ///< fs-verity digest (opts.hash, 4 KiB blocks, no salt) of the image
  std::uint64_t size = 0;     ///< image size in bytes (a multiple of 4096)
  std::uint32_t version = 0;  ///< format version written (composefs_version in the header)
};

/// Writes the composefs image of `tree` to out_fd (streamed, no seeks; out_fd < 0 = compute
/// only, for --print-digest-only) and returns its fs-verity digest. Does not modify `tree`.
/// Errors: Errc::kInvalidInput naming the path and problem (too many chunks, bad hardlinks,
/// xattr budget, unknown file type, ...); write errors as errno errors. Nothing is written to
/// out_fd before the layout has been validated, but a write error can leave a partial stream:
/// callers write to a temp file and rename (AtomicFile).
Result<WriteResult> write_image(const Tree& tree, const WriteOptions& opts, int out_fd);

}  // namespace cfs::erofs
