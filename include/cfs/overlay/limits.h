// SPDX-License-Identifier: Apache-2.0
// Upstream limits of composefs 1.0.8 (libcomposefs) that decide between an image and a
// refusal, and the one per-inode xattr accounting every source and the writer apply
// (docs/format.md "Limits"). Thread-safety: constants and a value type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace cfs::overlay {

inline constexpr std::size_t kMaxNameLen = 255;  ///< one path component (NAME_MAX)
inline constexpr std::size_t kPathMax = 4096;    ///< symlink targets, payloads: shorter
inline constexpr std::size_t kMaxSymlinkLen = kPathMax - 1;
inline constexpr std::size_t kMaxXattrKeyLen = 255;      ///< XATTR_NAME_MAX (names are 1..255)
inline constexpr std::size_t kMaxXattrValueLen = 65535;  ///< UINT16_MAX (e_value_size)
/// Files up to this size are stored in the image by a directory scan
/// (LCFS_RECOMMENDED_INLINE_CONTENT_MAX: the length of a SHA-256 object name).
inline constexpr std::size_t kInlineThreshold = 64;
/// Largest inline content a dump or tree may carry (LCFS_INLINE_CONTENT_MAX).
inline constexpr std::size_t kMaxInlineContent = 5000;
/// External files are chunk-based inodes of at most 1024 chunks of at most 2^43 bytes
/// (LCFS_MAX_NONINLINE_CHUNKS); larger ones are refused (EFBIG).
inline constexpr std::uint64_t kMaxExternalFileSize = std::uint64_t{1024} << 43;

/// composefs' per-inode xattr accounting (lcfs_node_set_xattr): every xattr costs twice the
/// 4-byte erofs_xattr_entry minus one (worst-case alignment) plus key and value bytes; the
/// first one also the 12-byte ibody header; the running total must stay at most 32767
/// (LCFS_INODE_EXTERNAL_XATTR_MAX = 65535 / 2) or the xattr is refused (ERANGE). Replacing a
/// key first removes the old entry's cost (all of it, header included, when it was the last).
/// The dump parser, the directory scan and the writer all count with this one class.
class XattrBudget {
 public:
  static constexpr std::int64_t kLimit = 65535 / 2;
  static constexpr std::int64_t kEntryOverhead = 2 * 4 - 1;
  static constexpr std::int64_t kHeader = 12;

  XattrBudget() = default;

  /// Where composefs' writer starts for an inode: its deep clone copies the `count` xattrs but
  /// not the running size, so only what the writer adds itself is counted, and replacing a
  /// copied value can drive the total below zero (which upstream's size_t arithmetic turns
  /// into a refusal, unless the entry added brings it back to zero or more).
  static XattrBudget cloned(std::size_t count) noexcept;

  /// Accounts for setting a key of `key_size` bytes to a value of `value_size` bytes;
  /// `replaced` is the size of the value it replaces when the key is already set. False (and
  /// nothing changes) when the inode would exceed the limit.
  bool set(std::size_t key_size, std::size_t value_size,
           std::optional<std::size_t> replaced = std::nullopt) noexcept;

  std::int64_t used() const noexcept { return used_; }
  std::size_t count() const noexcept { return count_; }

 private:
  std::int64_t used_ = 0;
  std::size_t count_ = 0;
};

}  // namespace cfs::overlay
