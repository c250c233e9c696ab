// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/layer_input.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

#include "cfs/oci/read_ring.h"
#include "cfs/util/aligned_buffer.h"

namespace cfs::oci {

namespace {

/// The blob as read: hashed, unless its source verifies the digest itself before its end (a
/// registry download), then only counted; SHA-256 of the compressed bytes once, not twice.
class BlobMeter final : public ByteSource {
 public:
  explicit BlobMeter(ByteSource& in) : in_(in), vouched_(in.verified_digest()) {
    if (!vouched_) hasher_.emplace();
  }
  Result<std::size_t> read(std::span<std::byte> buf) override {
    CFS_ASSIGN(std::size_t n, in_.read(buf));
    if (hasher_) hasher_->update(buf.first(n));
    size_ += n;
    return n;
  }
  std::uint64_t size() const noexcept { return size_; }
  /// Call once, after the source reported its end.
  ContentDigest finish() { return vouched_ ? *vouched_ : hasher_->finish(); }

 private:
  ByteSource& in_;
  const ContentDigest* vouched_;
  std::optional<ContentHasher> hasher_;
  std::uint64_t size_ = 0;
};

/// The decoding stack, owned together so it can move onto the read-ahead thread as one source.
class Stack final : public ByteSource {
 public:
  explicit Stack(std::unique_ptr<ByteSource> blob) : blob_(std::move(blob)), blob_hash_(*blob_) {}

  /// Reads the first bytes (hashed like the rest) and returns the compression they show.
  Result<Compression> sniff() {
    head_.resize(8);
    CFS_ASSIGN(std::size_t n, read_full(blob_hash_, std::as_writable_bytes(std::span(head_))));
    head_.resize(n);
    return sniff_compression(std::as_bytes(std::span(head_)));
  }

  void start(Compression c, std::string what, const LayerInputOptions& options) {
    prefixed_ = prefixed_source(std::move(head_), blob_hash_);
    plain_ = decompressor(c, *prefixed_, std::move(what), options.gzip);
    check_ = options.check;
    check_every_ = std::max<std::uint64_t>(options.check_every, 1);
    next_check_ = check_every_;
  }

  // Per piece the ring reads (up to 1 MiB), not per byte: two relaxed stores, and a check
  // every check_every_ bytes.
  Result<std::size_t> read(std::span<std::byte> buf) override {
    CFS_ASSIGN(std::size_t n, plain_->read(buf));
    tar_bytes_ += n;
    tar_seen_.store(tar_bytes_, std::memory_order_relaxed);
    blob_seen_.store(blob_hash_.size(), std::memory_order_relaxed);
    if (check_ && tar_bytes_ >= next_check_) {
      next_check_ = tar_bytes_ + check_every_;
      CFS_TRY(check_(streamed()));
    }
    return n;
  }

  LayerProgress streamed() const noexcept {
    return {tar_seen_.load(std::memory_order_relaxed), blob_seen_.load(std::memory_order_relaxed)};
  }

  /// The blob's digest and size (the diff_id is the reader's, LayerInput::Impl::tar_hash).
  void digests(LayerDigests& d) {
    d.blob = blob_hash_.finish();
    d.blob_size = blob_hash_.size();
  }

 private:
  std::unique_ptr<ByteSource> blob_;
  BlobMeter blob_hash_;
  std::string head_;
  std::unique_ptr<ByteSource> prefixed_;
  std::unique_ptr<ByteSource> plain_;
  std::function<Status(const LayerProgress&)> check_;
  std::uint64_t check_every_ = 0, next_check_ = 0, tar_bytes_ = 0;
  // Read by streamed() on other threads (the ring's consumer).
  std::atomic<std::uint64_t> tar_seen_{0}, blob_seen_{0};
};

}  // namespace

struct LayerInput::Impl {
  Stack* stack = nullptr;  // owned by `ring` (read on its thread) or `inline_stack`
  std::unique_ptr<ByteSource> inline_stack;
  // The tar as its reader sees it: split_tar looks at the bytes in place (read_ring.h).
  std::unique_ptr<ReadRing> ring;
  // The diff_id of a compressed layer, hashed on the reader's thread (as the ring's consumer
  // advances): the ring's thread already decompresses (the longest step), and the reader (the
  // tar splitter) has time to spare; hashing there cut the read-ahead thread's share of a
  // Debian pull by a third (bench/README.md, session 9). Uncompressed: the blob hash already
  // covers every byte; a second one would double the cost of the largest single step of an
  // import.
  std::optional<ContentHasher> tar_hash;
  Compression compression = Compression::kNone;
};

LayerInput::LayerInput(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerInput::~LayerInput() = default;

Result<std::unique_ptr<LayerInput>> LayerInput::open(std::unique_ptr<ByteSource> blob,
                                                     std::string_view media_type, std::string what,
                                                     const LayerInputOptions& options) {
  auto stack = std::make_unique<Stack>(std::move(blob));
  CFS_ASSIGN(Compression c, stack->sniff());
  if (!media_type.empty()) {
    auto declared = layer_compression(media_type);
    if (!declared) return fail(std::move(declared).error().with_context(what));
    if (*declared != c)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: the media type {} says {}, but the blob is {}", what, media_type,
                              compression_name(*declared), compression_name(c)));
  }
  auto m = std::make_unique<Impl>();
  m->compression = c;
  stack->start(c, what, options);
  m->stack = stack.get();
  if (options.read_ahead) {
    m->ring = ReadRing::start(std::move(stack), kLayerRingBytes, kLayerViewMax);
  } else {
    m->inline_stack = std::move(stack);
    m->ring = ReadRing::inline_reader(*m->inline_stack, kLayerRingBytes, kLayerViewMax);
  }
  if (c != Compression::kNone) m->ring->hash_on_advance(m->tar_hash.emplace());
  return std::unique_ptr<LayerInput>(new LayerInput(std::move(m)));
}

ByteSource& LayerInput::tar() noexcept { return *impl_->ring; }

LayerProgress LayerInput::streamed() const noexcept { return impl_->stack->streamed(); }

Result<LayerDigests> LayerInput::finish() {
  AlignedBuffer mem;
  const std::span<std::byte> buf = mem.get(1u << 16);
  for (;;) {
    CFS_ASSIGN(std::size_t n, impl_->ring->read(buf));
    if (n == 0) break;
  }
  // The read-ahead thread has stopped at the end of the stream: the stack is quiet.
  LayerDigests d;
  d.compression = impl_->compression;
  impl_->stack->digests(d);
  if (impl_->tar_hash) {
    d.diff_id = impl_->tar_hash->finish();
    d.tar_size = impl_->tar_hash->size();
  } else {
    d.diff_id = d.blob;
    d.tar_size = d.blob_size;
  }
  return d;
}

}  // namespace cfs::oci
