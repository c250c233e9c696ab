// SPDX-License-Identifier: Apache-2.0
// A byte stream read into one ring of memory that its consumer looks at in place. The tar
// splitter parses headers where they were read and hands file contents to the splitstream
// writer as views of the ring (splitstream::Writer::write_external_view), so an uncompressed
// layer's bytes are copied once in user space: by the kernel's read into the ring, from which
// the diff_id is hashed, the objects digested and written. Before it, every byte was copied
// from the read-ahead's blocks into the splitter's buffer or the writer's object ring too (the
// splitting thread's `memmove`, 18 % of an import's CPU, bench/README.md session 9).
//
// Memory: `capacity` bytes of ring plus `max_view` bytes past its end, where a view that
// crosses the end gets the bytes from the ring's start copied after it (one copy per lap, at
// most `max_view` bytes), so every view is contiguous. Bytes stay valid until release()d: the
// reading side never has more than capacity - max_view bytes unreleased, which is what keeps
// those copies from overwriting a view still in use.
//
// With a thread (start()), the source is read ahead on a background thread in pieces of up to
// 1 MiB (decompressing and hashing below it overlap with the consumer); without one (inline()),
// view() reads on the caller's thread when it needs bytes. Errors of the source are returned by
// the view that reaches them.
//
// It is also a ByteSource: read() copies out, advances and releases (for readers that want
// their own copy, like LayerInput::finish()). With hash_on_advance(), every byte the consumer
// advances over is hashed on the consumer's thread (a compressed layer's diff_id: the reading
// thread is busy decompressing).
// Thread-safety: one consumer thread; the reading thread is the ring's own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/digest.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/result.h"

namespace cfs::oci {

/// A layer's ring (LayerInput, split_tar): 16 MiB, views of up to 4 MiB (larger files are
/// streamed to their object in pieces). Small enough that the bytes the reading thread puts
/// in it are still in the caches when the digest workers get to them: with 64 MiB (what the
/// splitstream writer's own object ring had) the workers and the diff_id's SHA-256 read
/// colder memory and the import used more user CPU than with 8 or 16 MiB (bench/README.md,
/// session 10); 4 MiB views bound the copy at the ring's end.
inline constexpr std::size_t kLayerRingBytes = 16u << 20;
inline constexpr std::size_t kLayerViewMax = 4u << 20;

class ReadRing final : public ByteSource {
 public:
  /// Reads `in` on a background thread. `capacity` >= 2 * `max_view`; both multiples of 4 KiB.
  static std::unique_ptr<ReadRing> start(std::unique_ptr<ByteSource> in, std::size_t capacity,
                                         std::size_t max_view);
  /// Reads `in` (borrowed, must outlive the ring) on the consumer's thread, as needed.
  static std::unique_ptr<ReadRing> inline_reader(ByteSource& in, std::size_t capacity,
                                                 std::size_t max_view);
  ~ReadRing() override;
  ReadRing(const ReadRing&) = delete;
  ReadRing& operator=(const ReadRing&) = delete;

  /// The bytes from position() on: at least `want` of them (`want` <= max_view()), fewer only
  /// at the end of the stream; often more. nullopt: they are not there and cannot come before
  /// the consumer releases bytes (the ring is full of unreleased ones).
  Result<std::optional<std::span<const std::byte>>> view(std::size_t want);
  /// Moves position() past `n` bytes of the last view (they stay valid until released).
  void advance(std::size_t n);
  /// Bytes before stream offset `offset` (at most position()) may be overwritten.
  void release(std::uint64_t offset);
  std::uint64_t position() const noexcept { return pos_; }
  std::size_t max_view() const noexcept { return max_view_; }

  /// Hashes every byte advanced over from now on, on the consumer's thread.
  void hash_on_advance(ContentHasher& hasher) { hash_ = &hasher; }

  /// Copies out up to buf.size() bytes (advancing, and releasing everything before the new
  /// position).
  Result<std::size_t> read(std::span<std::byte> buf) override;
  ReadRing* read_ring() noexcept override { return this; }

 private:
  ReadRing(std::unique_ptr<ByteSource> owned, ByteSource& in, std::size_t capacity,
           std::size_t max_view);
  void produce();
  /// Reads one piece into the ring (at most `room` bytes); sets eof_/error_ at the end.
  void read_piece(std::uint64_t at, std::size_t room);
  std::size_t room_locked(std::uint64_t written) const;

  std::unique_ptr<ByteSource> owned_;
  ByteSource& in_;
  const std::size_t cap_;
  const std::size_t max_view_;
  AlignedBuffer mem_;  // cap_ + max_view_ bytes, page-aligned (the kernel copies in fastest)
  ContentHasher* hash_ = nullptr;
  bool threaded_ = false;  // set before the thread starts, read by both

  // Consumer side.
  std::uint64_t pos_ = 0;
  std::uint64_t mirrored_lap_ = UINT64_MAX;  // the lap whose start is copied past the end
  std::size_t mirrored_ = 0;                 // how many of its bytes

  // Shared (under mu_).
  std::mutex mu_;
  std::condition_variable data_cv_;  // more bytes, the end, or an error
  std::condition_variable room_cv_;  // released bytes, or stop
  std::uint64_t written_ = 0;
  std::uint64_t released_ = 0;
  bool eof_ = false;
  bool stop_ = false;
  bool producer_full_ = false;  // the reading thread waits for room
  std::optional<Error> error_;
  std::thread thread_;
};

}  // namespace cfs::oci
