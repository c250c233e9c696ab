// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/read_ring.h"

#include <algorithm>
#include <cstring>

namespace cfs::oci {

namespace {
// What the reading side asks its source for at once: large enough for few system calls and
// lock hand-offs, small enough that a hash below it (the blob's) finds the bytes in the cache.
constexpr std::size_t kPiece = 1u << 20;
}  // namespace

ReadRing::ReadRing(std::unique_ptr<ByteSource> owned, ByteSource& in, std::size_t capacity,
                   std::size_t max_view)
    : owned_(std::move(owned)),
      in_(in),
      cap_(std::max(capacity, 2 * max_view)),
      max_view_(max_view),
      mem_(cap_ + max_view_) {}

std::unique_ptr<ReadRing> ReadRing::start(std::unique_ptr<ByteSource> in, std::size_t capacity,
                                          std::size_t max_view) {
  ByteSource& src = *in;
  std::unique_ptr<ReadRing> r(new ReadRing(std::move(in), src, capacity, max_view));
  r->threaded_ = true;
  r->thread_ = std::thread([p = r.get()] { p->produce(); });
  return r;
}

std::unique_ptr<ReadRing> ReadRing::inline_reader(ByteSource& in, std::size_t capacity,
                                                  std::size_t max_view) {
  return std::unique_ptr<ReadRing>(new ReadRing(nullptr, in, capacity, max_view));
}

ReadRing::~ReadRing() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  room_cv_.notify_all();
  thread_.join();
}

std::size_t ReadRing::room_locked(std::uint64_t written) const {
  // Never more than cap_ - max_view_ unreleased bytes: a view that crosses the ring's end
  // copies up to max_view_ bytes past it, over what the previous lap's crossing view left
  // there, which is released by then (see read_ring.h).
  const std::uint64_t used = written - released_;
  const std::uint64_t limit = cap_ - max_view_;
  if (used >= limit) return 0;
  const std::size_t to_end = cap_ - static_cast<std::size_t>(written % cap_);
  return static_cast<std::size_t>(std::min<std::uint64_t>(limit - used, to_end));
}

void ReadRing::read_piece(std::uint64_t at, std::size_t room) {
  // Outside the lock: the consumer keeps viewing what is already there.
  const std::size_t off = static_cast<std::size_t>(at % cap_);
  auto n = in_.read(std::span(mem_.data() + off, std::min(room, kPiece)));
  {
    std::lock_guard lk(mu_);
    if (!n)
      error_ = std::move(n).error();
    else if (*n == 0)
      eof_ = true;
    else
      written_ += *n;
  }
  if (threaded_) data_cv_.notify_one();
}

void ReadRing::produce() {
  for (;;) {
    std::uint64_t at;
    std::size_t room;
    {
      std::unique_lock lk(mu_);
      for (;;) {
        if (stop_ || eof_ || error_) return;
        room = room_locked(written_);
        if (room > 0) break;
        producer_full_ = true;
        room_cv_.wait(lk);
        producer_full_ = false;
      }
      at = written_;
    }
    read_piece(at, room);
  }
}

Result<std::optional<std::span<const std::byte>>> ReadRing::view(std::size_t want) {
  using R = std::optional<std::span<const std::byte>>;
  want = std::min(want, max_view_);
  std::uint64_t end;
  {
    std::unique_lock lk(mu_);
    for (;;) {
      if (written_ - pos_ >= want || eof_) break;
      if (error_) return fail(*error_);
      // Full of unreleased bytes: only the consumer can make room.
      if (room_locked(written_) == 0) return R{};
      if (threaded_) {
        data_cv_.wait(lk);
      } else {
        const std::uint64_t at = written_;
        const std::size_t room = room_locked(at);
        lk.unlock();
        read_piece(at, room);
        lk.lock();
      }
    }
    if (written_ - pos_ < want && error_) return fail(*error_);
    end = written_;
  }
  const auto off = static_cast<std::size_t>(pos_ % cap_);
  const auto have = static_cast<std::size_t>(end - pos_);
  const std::size_t to_end = cap_ - off;
  std::byte* at = mem_.data() + off;
  if (have <= to_end) return R(std::span<const std::byte>(at, have));
  if (want <= to_end) return R(std::span<const std::byte>(at, to_end));
  // The view crosses the ring's end: the next lap's first bytes go after it (once per lap,
  // growing when a later view needs more of them).
  const std::size_t len = std::min(have, want);
  const std::size_t need = len - to_end;
  const std::uint64_t lap = pos_ / cap_ + 1;
  if (mirrored_lap_ != lap) {
    mirrored_lap_ = lap;
    mirrored_ = 0;
  }
  if (mirrored_ < need) {
    std::memcpy(mem_.data() + cap_ + mirrored_, mem_.data() + mirrored_, need - mirrored_);
    mirrored_ = need;
  }
  return R(std::span<const std::byte>(at, len));
}

void ReadRing::advance(std::size_t n) {
  if (hash_ && n > 0) hash_->update(std::span<const std::byte>(mem_.data() + pos_ % cap_, n));
  pos_ += n;
}

void ReadRing::release(std::uint64_t offset) {
  bool wake;
  {
    std::lock_guard lk(mu_);
    if (offset <= released_) return;
    released_ = offset;
    wake = producer_full_;
  }
  if (wake) room_cv_.notify_one();
}

Result<std::size_t> ReadRing::read(std::span<std::byte> buf) {
  if (buf.empty()) return 0;
  release(pos_);
  CFS_ASSIGN(auto v, view(1));
  if (!v) return fail(Errc::kInvalidInput, "read ring: full of bytes nobody released");
  const std::size_t n = std::min(buf.size(), v->size());
  std::memcpy(buf.data(), v->data(), n);
  advance(n);
  release(pos_);
  return n;
}

}  // namespace cfs::oci
