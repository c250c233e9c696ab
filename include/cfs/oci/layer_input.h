// SPDX-License-Identifier: Apache-2.0
// A layer blob opened for import: its compression decided by its first bytes (and checked
// against the media type), decompressed, and hashed twice while it streams: the blob digest
// (what manifests name) and the diff_id (the sha256 of the tar, what configs name). An
// uncompressed blob is hashed once, both digests being the same; a blob whose source verifies
// its digest before its end (ByteSource::verified_digest(), a registry download) is not hashed
// again, only counted. Reading, the blob hash and decompressing run on a background thread
// that fills a ReadRing (read_ring.h), so they overlap with splitting, which looks at the tar
// in the ring without copying it; a compressed layer's diff_id is hashed on the splitting
// thread.
// Thread-safety: one thread per LayerInput.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/decompress.h"
#include "cfs/oci/digest.h"
#include "cfs/util/result.h"

namespace cfs::oci {

struct LayerDigests {
  Compression compression = Compression::kNone;
  ContentDigest blob;     ///< sha256 of the blob as stored
  ContentDigest diff_id;  ///< sha256 of the uncompressed tar
  std::uint64_t blob_size = 0;
  std::uint64_t tar_size = 0;
};

/// How far a layer has streamed: what a check is given, and what LayerInput::streamed() says.
struct LayerProgress {
  std::uint64_t tar_bytes = 0;   ///< of the tar, decompressed so far
  std::uint64_t blob_bytes = 0;  ///< of the blob, read so far
};

struct LayerInputOptions {
  GzipEngine gzip = GzipEngine::kIsal;
  bool read_ahead = true;  ///< read, hash the blob and decompress on the ring's own thread
  /// Called on the decompressing thread each time another `check_every` bytes of tar were
  /// decompressed; an error it returns ends the layer with that error (before the splitter
  /// gets the bytes that crossed the mark). Empty: none. The import's free-space reserve
  /// (ocirepo/pull.h): a layer's size after decompression is bounded by nothing in the image.
  std::function<Status(const LayerProgress&)> check;
  std::uint64_t check_every = 32u << 20;
};

class LayerInput {
 public:
  /// `blob` is owned. `media_type` may be empty (then the first bytes decide alone); a media
  /// type the bytes contradict is an error (kInvalidInput), as is an unsupported one.
  static Result<std::unique_ptr<LayerInput>> open(std::unique_ptr<ByteSource> blob,
                                                  std::string_view media_type, std::string what,
                                                  const LayerInputOptions& options = {});
  ~LayerInput();

  /// The uncompressed tar (a ReadRing: split_tar views it in place).
  ByteSource& tar() noexcept;
  /// Reads whatever the consumer left (bytes after the tar's end), then returns the digests.
  /// Call once, after the tar was consumed.
  Result<LayerDigests> finish();
  /// How far the layer has streamed (decompressed, not necessarily split yet); from any
  /// thread, e.g. to say where a failed layer stopped.
  LayerProgress streamed() const noexcept;

 private:
  struct Impl;
  explicit LayerInput(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::oci
