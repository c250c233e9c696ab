// SPDX-License-Identifier: Apache-2.0
// Small pure functions of the composefs EROFS layout, shared by the writer and the reader:
// xattr name prefixes and entry sizes, the xattr name filter, chunk geometry of external
// files, tail packing of directories and inline files. Spec: docs/format.md §5-§7.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cfs/erofs/format.h"

namespace cfs::erofs {

/// An xattr name split into its EROFS name index and the stored suffix.
struct XattrName {
  XattrIndex index = XattrIndex::kNone;
  std::string_view suffix;  ///< points into the key passed to split_xattr_name
};

/// Matches the prefixes in composefs' order: "user.", "system.posix_acl_access",
/// "system.posix_acl_default", "trusted.", "security."; anything else is index 0 with the
/// full name as suffix ("lustre." is deliberately not mapped).
XattrName split_xattr_name(std::string_view key) noexcept;

/// The prefix an index stands for ("" for kNone and unknown indexes); key = prefix + suffix.
std::string_view xattr_prefix(XattrIndex index) noexcept;

/// Bytes of one erofs_xattr_entry with its suffix and value, padded to 4.
std::uint32_t xattr_entry_size(std::string_view key, std::size_t value_len) noexcept;

/// Size of an inode's xattr body (ibody header, shared ids, inline entries) rounded to 4;
/// 0 when the inode has no xattrs at all.
std::uint64_t xattr_body_size(std::size_t n_shared, std::uint64_t inline_bytes) noexcept;

/// i_xattr_icount for a body of that size (0 for no body). May exceed 16 bits: callers check.
std::uint64_t xattr_icount(std::uint64_t body_size) noexcept;

/// Bit of the 32-bit xattr name filter for one name (xxh32 with seed kXattrFilterSeed + index).
unsigned xattr_filter_bit(XattrIndex index, std::string_view suffix) noexcept;

/// Chunk geometry of an external (chunk-based) regular file of `size` > 0 bytes:
/// chunkbits = max(12, ilog2(size - 1) + 1) capped at 12 + 31; count = ceil(size / 2^bits),
/// computed with composefs' wrapping 64-bit arithmetic (sizes within 2^43 of 2^64 wrap).
struct Chunking {
  std::uint32_t chunkbits = kBlockSizeBits;
  std::uint64_t count = 0;
  std::uint16_t format() const noexcept { return static_cast<std::uint16_t>(chunkbits - 12); }
};
Chunking chunking(std::uint64_t size) noexcept;

/// composefs refuses external files needing more chunks than fit one block of entries.
inline constexpr std::uint64_t kMaxChunks = 1024;

/// Directory and inline-content data split into full blocks and an inline tail.
struct DataSplit {
  std::uint64_t n_blocks = 0;
  std::uint32_t tail = 0;
};

/// Inline content of `size` bytes: full blocks, and a tail unless it exceeds half a block.
DataSplit inline_data_split(std::uint64_t size) noexcept;

}  // namespace cfs::erofs
