// SPDX-License-Identifier: Apache-2.0
// Streaming splitstream writer (format: splitstream/format.h).
//
// Inline data is coalesced into chunks and zstd-compressed as it arrives (level 3, no
// checksum, ZSTD_compressStream2 with e_continue and a final e_end: the framing composefs-rs'
// zstd crate produces). External objects are digested and stored on worker threads while the
// caller keeps producing: each object's bytes go into a ring buffer, a worker computes the
// fs-verity digest (up to 16 small objects at once, verity::digest_small_many) and hands the
// object to the ObjectSink, and chunks are emitted in stream order as their digests arrive.
// Objects larger than `stream_threshold` are streamed to ObjectSink::begin() in pieces and
// committed (digested, linked) on a worker. Memory is bounded by the options whatever the
// stream size: the ring, a staging buffer, the in-memory part of the compressed stream (which
// spills to an unlinked temporary file beyond spool_memory) and the reference tables.
//
// object_refs lists each distinct digest once, in order of first appearance; stream_refs in
// order of add_named_ref(); named refs are sorted by name. The output is deterministic for a
// given input and libzstd version, whatever the thread count.
//
// Thread-safety: one producer thread; the writer runs its own workers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "cfs/splitstream/objects.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::splitstream {

struct WriterOptions {
  std::uint64_t content_type = 0;  ///< e.g. kOciLayer
  /// Worker threads for digests and object writes: 0 = available CPUs; 1 = no workers, every
  /// object is digested and stored on the caller's thread before write_external() returns.
  unsigned threads = 0;
  /// Object bytes in flight (the ring buffer); bounds memory together with max_jobs.
  std::size_t buffer_bytes = 64u << 20;
  std::size_t max_jobs = 4096;
  /// Objects larger than this are streamed through ObjectSink::begin() instead of buffered.
  std::uint64_t stream_threshold = 8u << 20;
  /// The compressed stream is kept in memory up to spool_memory bytes, then continues in an
  /// unlinked temporary file in spool_dir ("" = $TMPDIR, else /var/tmp).
  std::size_t spool_memory = 32u << 20;
  std::string spool_dir;
};

struct WriterStats {
  std::uint64_t stream_size = 0;      ///< bytes of the reassembled stream
  std::uint64_t inline_bytes = 0;     ///< of which inline
  std::uint64_t external_bytes = 0;   ///< of which in external chunks
  std::uint64_t external_chunks = 0;  ///< external chunks (a repeated object counts each time)
  std::uint64_t objects = 0;          ///< distinct objects (object_refs entries)
  std::uint64_t file_size = 0;        ///< bytes of the splitstream file
};

class Writer {
 public:
  /// `sink` must outlive the writer.
  static Result<std::unique_ptr<Writer>> create(ObjectSink& sink, const WriterOptions& options);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  /// Appends inline bytes.
  Status write_inline(std::span<const std::byte> data);

  /// Fills a buffer completely with the next bytes of an object (an error aborts the stream).
  using Fill = std::function<Status(std::span<std::byte>)>;
  /// Appends an external object of exactly `size` bytes. `fill` is called with consecutive
  /// buffers that together hold `size` bytes (one buffer in the ring for objects up to
  /// stream_threshold, so the caller can read its source straight into it).
  Status write_external(std::uint64_t size, const Fill& fill);
  /// The next bytes of a streamed object, in place: at most `max` of them, at least one.
  using Next = std::function<Result<std::span<const std::byte>>(std::size_t max)>;
  /// Appends an external object of exactly `size` bytes streamed to its file through
  /// ObjectSink::begin(), for objects too large to keep in memory at once. Each piece `next`
  /// returns is a view (as in write_external_view: the caller keeps it in place until the
  /// writer retires it, and each piece counts as one view), written to the file and hashed by
  /// the workers while the caller goes on (one worker writes the object's pieces in order while
  /// another hashes them), and the object is committed with that digest, not read back.
  /// `next` may call retire_view() (to make room for the piece it returns).
  Status write_external_stream(std::uint64_t size, const Next& next);
  /// Same, from memory (always external, whatever its size: configs and manifests).
  Status write_external(std::span<const std::byte> content);
  /// Appends an external object whose bytes the caller keeps in place (no copy) until the
  /// writer is done with them: views are retired in the order they were written, and
  /// views_retired() counts them (on the producer's thread; retire_view() waits for the next).
  /// For a producer that reads its input into memory of its own (oci::ReadRing). Objects over
  /// stream_threshold are taken as views too.
  Status write_external_view(std::span<const std::byte> content);
  /// How many views the writer no longer reads (in write order).
  std::uint64_t views_retired() noexcept;
  /// Waits until the oldest view still in use is retired (returns at once if there is none).
  Status retire_view();
  /// Waits until no worker reads any view written so far, whatever the writer's state (also
  /// after an error): then the caller may reuse or free their memory. Emits nothing.
  void wait_views();
  /// Appends an external chunk for an object already stored (of `size` bytes).
  Status write_reference(const verity::Digest& digest, std::uint64_t size);

  /// Adds a named reference to another splitstream; a repeated name replaces the target.
  /// Names must not contain NUL (kInvalidInput).
  Status add_named_ref(std::string_view name, const verity::Digest& stream);

  /// Waits for every object, then emits the whole splitstream to `out` in order.
  Result<WriterStats> finish(const ByteOutput& out);
  /// Same, storing the splitstream itself as an object of the sink; returns its digest (the
  /// stream id).
  Result<std::pair<verity::Digest, WriterStats>> finish_object();

 private:
  struct Impl;
  explicit Writer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::splitstream
