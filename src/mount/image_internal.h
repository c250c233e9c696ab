// SPDX-License-Identifier: Apache-2.0
// Opening a composefs image for mounting: header check and the digest= check, with the sealed
// memfd copy when the image file has no fs-verity.
#pragma once

#include <optional>
#include <string>

#include "cfs/mount/mount.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::mount {

struct OpenedImage {
  UniqueFd fd;           ///< what to mount: the image itself, or the sealed memfd copy
  bool has_acl = false;  ///< header flag LCFS_EROFS_FLAGS_HAS_ACL: mount without noacl
  DigestCheck check = DigestCheck::kNone;
};

/// Opens `path` (a regular file: a FIFO is refused at once), requires the composefs magic and
/// header version 1 and an EROFS superblock (Errc::kCorruptImage otherwise). With `expected`,
/// measures the file's fs-verity (kernel) or, when it has none, copies it into a memfd, seals it,
/// digests the copy and returns the memfd: the bytes checked are the bytes mounted. A mismatch is
/// Errc::kDigestMismatch.
Result<OpenedImage> open_image(const std::string& path,
                               const std::optional<verity::Digest>& expected);

}  // namespace cfs::mount
