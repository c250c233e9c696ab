// SPDX-License-Identifier: Apache-2.0
// Layer compression for pushing (the decoders are in decompress.h): gzip (zlib) and zstd
// streams of the bytes written, handed to a sink in pieces. The output is a valid stream but not
// byte-identical to any other compressor's, so a recompressed layer has a new blob digest.
// Thread-safety: one thread per compressor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "cfs/oci/decompress.h"
#include "cfs/util/result.h"

namespace cfs::oci {

/// The OCI media type of a layer tar with compression `c`
/// (application/vnd.oci.image.layer.v1.tar, +gzip, +zstd).
std::string_view layer_media_type(Compression c) noexcept;

class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual Status write(std::span<const std::byte> data) = 0;
  /// Ends the stream (the last bytes reach the sink). Nothing may be written after.
  virtual Status finish() = 0;
};

using CompressedSink = std::function<Status(std::span<const std::byte>)>;

/// zstd (libzstd's streaming API) whose frames the caller may cut: finish() ends the current
/// frame, and a later write() starts the next one in the same stream (zstd:chunked puts each
/// file in a frame of its own; a plain zstd layer is one frame).
class ZstdCompressor final : public Compressor {
 public:
  ZstdCompressor(CompressedSink sink, int level = 3);
  ~ZstdCompressor() override;
  ZstdCompressor(const ZstdCompressor&) = delete;
  ZstdCompressor& operator=(const ZstdCompressor&) = delete;
  /// The next frame will hold exactly `size` bytes (recorded in its header). Call before its
  /// first write.
  Status pledge_frame_size(std::uint64_t size);
  Status write(std::span<const std::byte> data) override;
  /// Ends the current frame (nothing when nothing was written since the last one).
  Status finish() override;

 private:
  Status run(std::span<const std::byte> data, int mode);
  CompressedSink sink_;
  std::vector<std::byte> out_;
  void* cctx_;  // ZSTD_CCtx, kept out of this header
  bool open_ = false;
};

/// A compressor for `c` (kNone passes the bytes through) writing to `sink`.
std::unique_ptr<Compressor> compressor(Compression c, CompressedSink sink);

}  // namespace cfs::oci
