// SPDX-License-Identifier: Apache-2.0
// The composefs-rs splitstream format, byte for byte (docs/splitstream.md; composefs-rs
// crates/composefs/src/splitstream.rs is normative). A splitstream stores a byte stream (a tar
// layer, an OCI config) as a zstd-compressed sequence of chunks: inline bytes, or a reference
// to an external object named by its fs-verity digest. All integers are little-endian.
//
//   off 0   Header (32 bytes)     magic "SplitStream", version 0, flags, algorithm, lg_blocksize,
//                                 info range
//   off 32  Info (80 bytes; readers accept a larger one and ignore the tail)
//           then, in file order: stream_refs, object_refs, named_refs (zstd), stream (zstd)
//
// Inside the zstd stream every chunk starts with an i64: n < 0 is an inline chunk of -n bytes
// that follow; n >= 0 is the index of an external object in object_refs. The end of the zstd
// data ends the stream. named_refs decompresses to "idx:name\0" records (idx into stream_refs),
// sorted by name.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "cfs/util/le.h"

namespace cfs::splitstream {

inline constexpr std::array<char, 11> kMagic = {'S', 'p', 'l', 'i', 't', 'S',
                                                't', 'r', 'e', 'a', 'm'};
inline constexpr std::uint8_t kVersion = 0;
/// log2 of the fs-verity block size of every digest in the file (4 KiB).
inline constexpr std::uint8_t kLgBlockSize = 12;

/// A [start, end) byte range of the file.
struct FileRange {
  le64 start;
  le64 end;
};
static_assert(sizeof(FileRange) == 16);

/// The header since composefs-rs made it #[repr(C)].
struct Header {
  std::array<char, 11> magic;
  std::uint8_t version;
  le16 flags;                 ///< written 0, ignored on read
  std::uint8_t algorithm;     ///< FS_VERITY_HASH_ALG_*: 1 = SHA-256, 2 = SHA-512
  std::uint8_t lg_blocksize;  ///< must be 12
  FileRange info;
};
static_assert(sizeof(Header) == 32);

/// The header as bootc <= 1.15 wrote it (Rust reordered the fields before repr(C)). Read only.
struct OldHeader {
  FileRange info;
  le16 flags;
  std::array<char, 11> magic;
  std::uint8_t version;
  std::uint8_t algorithm;
  std::uint8_t lg_blocksize;
};
static_assert(sizeof(OldHeader) == 32);

struct Info {
  FileRange stream_refs;  ///< flat array of binary digests of other splitstreams
  FileRange object_refs;  ///< flat array of binary digests of external objects
  FileRange stream;       ///< zstd-compressed chunk stream
  FileRange named_refs;   ///< zstd-compressed "idx:name\0" records
  le64 content_type;      ///< 8 ASCII bytes read as a little-endian u64
  le64 stream_size;       ///< size of the reassembled stream
};
static_assert(sizeof(Info) == 80);

/// Eight ASCII characters as composefs-rs' u64::from_le_bytes(*b"........").
constexpr std::uint64_t content_type_code(std::string_view name8) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < name8.size(); ++i)
    v |= std::uint64_t(static_cast<unsigned char>(name8[i])) << (8 * i);
  return v;
}

/// Content types of OCI streams (composefs-oci skopeo.rs).
inline constexpr std::uint64_t kOciLayer = content_type_code("ocilayer");
inline constexpr std::uint64_t kOciConfig = content_type_code("ociconfg");
inline constexpr std::uint64_t kOciManifest = content_type_code("ocimanif");
inline constexpr std::uint64_t kOciBlob = content_type_code("oci_blob");

/// The content type as text for messages: its eight characters when printable ("ocilayer"),
/// else "0x<16 hex digits>".
std::string content_type_name(std::uint64_t code);

/// Largest inline chunk cfs writes. Longer runs of inline data are split at the end of a
/// write; composefs-rs reads consecutive inline chunks as long as no tar block straddles two
/// of them, which holds because the tar splitter writes whole blocks (docs/splitstream.md).
inline constexpr std::size_t kMaxInlineChunk = 16u << 20;

}  // namespace cfs::splitstream
