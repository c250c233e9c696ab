// SPDX-License-Identifier: Apache-2.0
// On-disk structures of the EROFS subset composefs uses, plus the composefs header. Field
// names follow the kernel's fs/erofs/erofs_fs.h; sizes are pinned with static_assert. Use
// memcpy between these structs and image bytes, never reinterpret_cast.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cfs/overlay/file_type.h"
#include "cfs/util/le.h"

namespace cfs::erofs {

inline constexpr std::uint32_t kBlockSize = 4096;
inline constexpr unsigned kBlockSizeBits = 12;
inline constexpr std::uint32_t kSlotSize = 32;  // inodes start on 32-byte slots; nid = off / 32

// composefs header at offset 0.
inline constexpr std::uint32_t kComposefsMagic = 0xd078629a;
inline constexpr std::uint32_t kComposefsHeaderVersion = 1;  // LCFS_EROFS_VERSION
inline constexpr std::uint32_t kComposefsFlagHasAcl = 1;
inline constexpr std::uint32_t kMaxFormatVersion = 1;

struct ComposefsHeader {
  le32 magic;
  le32 version;
  le32 flags;
  le32 composefs_version;
  le32 unused[4];
};
static_assert(sizeof(ComposefsHeader) == 32);

inline constexpr std::uint32_t kSuperOffset = 1024;
inline constexpr std::uint32_t kSuperMagic = 0xE0F5E1E2;
inline constexpr std::uint32_t kFeatureCompatMtime = 0x2;
inline constexpr std::uint32_t kFeatureCompatXattrFilter = 0x4;
inline constexpr std::uint32_t kFeatureCompatSbChksum = 0x1;

struct SuperBlock {
  le32 magic;
  le32 checksum;
  le32 feature_compat;
  std::uint8_t blkszbits;
  std::uint8_t sb_extslots;
  le16 root_nid;
  le64 inos;
  le64 build_time;
  le32 build_time_nsec;
  le32 blocks;
  le32 meta_blkaddr;
  le32 xattr_blkaddr;
  std::uint8_t uuid[16];
  std::uint8_t volume_name[16];
  le32 feature_incompat;
  le16 available_compr_algs;  // union with lz4_max_distance
  le16 extra_devices;
  le16 devt_slotoff;
  std::uint8_t dirblkbits;
  std::uint8_t xattr_prefix_count;
  le32 xattr_prefix_start;
  le64 packed_nid;
  std::uint8_t xattr_filter_reserved;
  std::uint8_t reserved2[23];
};
static_assert(sizeof(SuperBlock) == 128);

// i_format = (datalayout << 1) | version bit
inline constexpr std::uint16_t kInodeLayoutCompact = 0;
inline constexpr std::uint16_t kInodeLayoutExtended = 1;
enum class DataLayout : std::uint16_t {
  kFlatPlain = 0,
  kCompressedFull = 1,
  kFlatInline = 2,
  kCompressedCompact = 3,
  kChunkBased = 4,
};
inline constexpr std::uint16_t kMaxDataLayout = 5;

struct InodeCompact {
  le16 i_format;
  le16 i_xattr_icount;
  le16 i_mode;
  le16 i_nlink;
  le32 i_size;
  le32 i_reserved;
  le32 i_u;  // raw_blkaddr | rdev | chunk info
  le32 i_ino;
  le16 i_uid;
  le16 i_gid;
  le32 i_reserved2;
};
static_assert(sizeof(InodeCompact) == 32);

struct InodeExtended {
  le16 i_format;
  le16 i_xattr_icount;
  le16 i_mode;
  le16 i_reserved;
  le64 i_size;
  le32 i_u;
  le32 i_ino;
  le32 i_uid;
  le32 i_gid;
  le64 i_mtime;
  le32 i_mtime_nsec;
  le32 i_nlink;
  std::uint8_t i_reserved2[16];
};
static_assert(sizeof(InodeExtended) == 64);

// chunk info in i_u for CHUNK_BASED: low 5 bits = chunkbits - blkszbits; 0x20 = indexes
inline constexpr std::uint32_t kChunkFormatBlkbitsMask = 0x1f;
inline constexpr std::uint32_t kChunkFormatIndexes = 0x20;
inline constexpr std::uint32_t kNullAddr = 0xFFFFFFFF;

struct Dirent {
  le64 nid;
  le16 nameoff;
  std::uint8_t file_type;
  std::uint8_t reserved;
};
static_assert(sizeof(Dirent) == 12);

/// Dirent file_type (EROFS_FT_*): the kernel's file-type numbers, defined with their mode
/// mapping in cfs/overlay/file_type.h.
using overlay::FileType;

struct XattrIbodyHeader {
  le32 h_name_filter;
  std::uint8_t h_shared_count;
  std::uint8_t h_reserved2[7];
};
static_assert(sizeof(XattrIbodyHeader) == 12);

struct XattrEntry {
  std::uint8_t e_name_len;
  std::uint8_t e_name_index;
  le16 e_value_size;
};
static_assert(sizeof(XattrEntry) == 4);

// e_name_index values (the stored name is the suffix after the prefix).
enum class XattrIndex : std::uint8_t {
  kNone = 0,
  kUser = 1,
  kPosixAclAccess = 2,
  kPosixAclDefault = 3,
  kTrusted = 4,
  kLustre = 5,  // never written by composefs
  kSecurity = 6,
};

inline constexpr std::uint32_t kXattrFilterSeed = 0x25BBE08F;
inline constexpr unsigned kXattrFilterBits = 32;
inline constexpr unsigned kMaxSharedXattrsPerInode = 128;

static_assert(std::is_trivially_copyable_v<SuperBlock> && std::is_trivially_copyable_v<Dirent>);

}  // namespace cfs::erofs
