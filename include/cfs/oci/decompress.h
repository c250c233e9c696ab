// SPDX-License-Identifier: Apache-2.0
// Streaming decompression of layer blobs with bounded memory whatever their size:
//  * gzip: every member of a multi-member stream (pigz, eStargz), each checked against its
//    CRC-32 and size; anything after a member that is not another member is an error. ISA-L's
//    inflate by default (faster than zlib here, see bench/README.md), zlib selectable.
//  * zstd: every frame, skippable frames skipped (zstd:chunked); windows up to 128 MiB.
//  * none.
// A stream that ends inside a member or frame is an error ("truncated"), as is an empty one.
// Thread-safety: one thread per source.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/byte_source.h"
#include "cfs/util/result.h"

namespace cfs::oci {

enum class Compression { kNone, kGzip, kZstd };
const char* compression_name(Compression c) noexcept;

/// The compression a layer media type declares: OCI tar, tar+gzip, tar+zstd and their
/// nondistributable forms, Docker's rootfs.diff.tar(.gzip). kUnsupportedFeature otherwise.
Result<Compression> layer_compression(std::string_view media_type);

/// The compression the first bytes of a blob show (gzip or zstd magic, including a zstd
/// skippable frame), else kNone.
Compression sniff_compression(std::span<const std::byte> head);

enum class GzipEngine { kIsal, kZlib };

/// Decompresses `in` (borrowed; must outlive the result). `what` names the blob in errors.
std::unique_ptr<ByteSource> decompressor(Compression c, ByteSource& in, std::string what,
                                         GzipEngine engine = GzipEngine::kIsal);

/// zstd decoding of bytes pushed as they arrive (a small blob decoded while it downloads, where
/// decompressor() would wait for its whole download): the same rules as decompressor()'s zstd
/// (every frame, skippable ones skipped; empty or truncated is an error at finish()).
class ZstdPushDecoder {
 public:
  using Output = std::function<Status(std::span<const std::byte>)>;
  ZstdPushDecoder(std::string what, Output out);
  ~ZstdPushDecoder();
  ZstdPushDecoder(const ZstdPushDecoder&) = delete;
  ZstdPushDecoder& operator=(const ZstdPushDecoder&) = delete;
  /// Before the first write: decode the first frame straight into `dst` (ZSTD_d_stableOutBuffer:
  /// no window buffer of the decoder's own, no copy out of it), the Output then being handed
  /// each newly decoded piece inside it; a first frame larger than `dst` is an error. Frames
  /// after it are decoded as without it (a reset() decodes into `dst` again). False (nothing
  /// changed) when libzstd cannot (before 1.4.7).
  bool decode_into(std::span<std::byte> dst);
  /// Decodes `in`, handing each piece of output to the Output.
  Status write(std::span<const std::byte> in);
  /// The input ended: an error unless it ended at the end of a frame, after at least one.
  Status finish() const;
  /// Forgets everything written (the input starts again from its first byte).
  void reset();

 private:
  std::string what_;
  Output out_;
  void* d_;  // ZSTD_DCtx, kept out of this header
  std::vector<std::byte> buf_;
  std::span<std::byte> dst_;      // decode_into's, while its first frame is decoded
  std::span<std::byte> dst_all_;  // decode_into's
  std::size_t dst_pos_ = 0;
  std::uint64_t offset_ = 0;  // compressed bytes consumed
  std::size_t frame_left_ = 0;
  bool started_ = false;
};

/// A source that first returns `prefix`, then the rest of `in` (to sniff and then decompress
/// without seeking).
std::unique_ptr<ByteSource> prefixed_source(std::string prefix, ByteSource& in);

}  // namespace cfs::oci
