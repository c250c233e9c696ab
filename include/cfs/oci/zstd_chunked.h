// SPDX-License-Identifier: Apache-2.0
// zstd:chunked layers, as containers/storage (pkg/chunked) defines them, written from a layer
// tar. The blob is a sequence of zstd frames that `zstd -d` turns back into the exact tar (so
// the diff_id is unchanged), cut so that the data of every regular file is one frame of its
// own, followed by three skippable frames (magic 0x184D2A50, le32 length, data):
//
//   frames      headers and padding of the tar (any number of frames), and per regular file
//               with data one frame holding exactly its bytes (TOC offset..endOffset)
//   skippable   the TOC: zstd-compressed JSON {"version":1,"entries":[…],"tarSplitDigest":…}
//               one entry per tar entry: type (reg, hardlink, symlink, char, block, dir,
//               fifo), name, linkName, mode, size, uid, gid, modtime (RFC 3339), devMajor,
//               devMinor, xattrs (base64 values), digest (sha256:… of the contents), offset,
//               endOffset; zero values omitted, as Go's omitempty does
//   skippable   the tar-split: zstd-compressed JSON lines {"type":2,"payload":<base64 raw
//               header and padding bytes>,"position":n} and {"type":1,"name":…,"size":…,
//               "payload":<base64 big-endian CRC-64/ISO of the contents>,"position":n}, from
//               which the tar is rebuilt byte for byte (its sha256 is tarSplitDigest)
//   skippable   the 64-byte footer: le64 TOC offset, compressed and uncompressed length,
//               type 1; le64 tar-split offset, compressed and uncompressed length;
//               "GNUlInUx"
//
// and the layer descriptor's annotations: manifest-checksum (sha256 of the compressed TOC),
// manifest-position "<offset>:<length>:<uncompressed length>:1", tarsplit-position
// "<offset>:<length>:<uncompressed length>", plus the first two again under the keys of
// containers/storage before 1.44 (io.containers.zstd-chunked.*). Files are not split into
// rolling-checksum chunks (the chunk fields are optional). Pax global headers have no TOC type
// and are refused, as containers/storage refuses them.
// Thread-safety: one thread per writer.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/compress.h"
#include "cfs/util/le.h"
#include "cfs/util/result.h"

namespace cfs::oci {

inline constexpr std::string_view kZstdChunkedManifestChecksum =
    "io.github.containers.zstd-chunked.manifest-checksum";
inline constexpr std::string_view kZstdChunkedManifestPosition =
    "io.github.containers.zstd-chunked.manifest-position";
inline constexpr std::string_view kZstdChunkedTarSplitPosition =
    "io.github.containers.zstd-chunked.tarsplit-position";
/// The keys of containers/storage before 1.44 (Debian 12's podman 4.3.1 reads only these): the
/// same values as the two above. Given the position annotation, those readers never look at
/// the footer (theirs was 40 bytes), so the current 64-byte footer does not disturb them, and
/// current readers ignore these keys (docs/design.md "zstd:chunked for old and new readers").
inline constexpr std::string_view kZstdChunkedLegacyManifestChecksum =
    "io.containers.zstd-chunked.manifest-checksum";
inline constexpr std::string_view kZstdChunkedLegacyManifestPosition =
    "io.containers.zstd-chunked.manifest-position";

/// The header of a zstd skippable frame (RFC 8878 3.1.2); decoders skip `size` bytes after it.
struct SkippableFrameHeader {
  le32 magic;  ///< kSkippableFrameMagic
  le32 size;
};
static_assert(sizeof(SkippableFrameHeader) == 8);
inline constexpr std::uint32_t kSkippableFrameMagic = 0x184D2A50;

/// The content of the last skippable frame of a zstd:chunked blob (its last 64 bytes).
struct ZstdChunkedFooter {
  le64 toc_offset;  ///< of the compressed TOC (after its skippable frame header)
  le64 toc_length;
  le64 toc_uncompressed;
  le64 toc_type;  ///< kZstdChunkedTocType
  le64 tar_split_offset;
  le64 tar_split_length;
  le64 tar_split_uncompressed;
  std::array<char, 8> magic;  ///< kZstdChunkedFooterMagic
};
static_assert(sizeof(ZstdChunkedFooter) == 64);
inline constexpr std::array<char, 8> kZstdChunkedFooterMagic = {'G', 'N', 'U', 'l',
                                                                'I', 'n', 'U', 'x'};
/// containers/storage's ManifestTypeCRFS.
inline constexpr std::uint64_t kZstdChunkedTocType = 1;

/// Where a regular file's data went.
struct ChunkedFile {
  std::uint64_t tar_offset = 0;  ///< first data byte in the tar
  std::uint64_t size = 0;        ///< bytes of data (> 0)
  std::uint64_t offset = 0;      ///< its frame in the blob
  std::uint64_t length = 0;      ///< the frame's bytes
};

struct ChunkedLayer {
  std::map<std::string, std::string> annotations;  ///< for the layer descriptor
  std::vector<ChunkedFile> files;                  ///< tar order
  std::uint64_t blob_size = 0;
};

/// CRC-64/ISO (Go's crc64.ISO table, reflected, inverted in and out) of `data` continuing
/// from `crc` (0 to start): the checksum tar-split records.
std::uint64_t crc64_iso(std::uint64_t crc, std::span<const std::byte> data) noexcept;

class ZstdChunkedWriter {
 public:
  /// `what` names the layer in errors; `level` is the zstd level of every frame.
  ZstdChunkedWriter(CompressedSink sink, std::string what, int level = 3);
  ~ZstdChunkedWriter();
  ZstdChunkedWriter(const ZstdChunkedWriter&) = delete;
  ZstdChunkedWriter& operator=(const ZstdChunkedWriter&) = delete;

  /// The next bytes of the tar.
  Status write(std::span<const std::byte> tar);
  /// Ends the tar (it must end at an entry boundary) and writes the TOC, tar-split and footer.
  Result<ChunkedLayer> finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::oci
