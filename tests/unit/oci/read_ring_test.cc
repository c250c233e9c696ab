// SPDX-License-Identifier: Apache-2.0
// ReadRing: views see the stream's bytes wherever they fall in the ring (across its end too),
// bytes stay as they were until released, a ring full of unreleased bytes says so instead of
// waiting forever, the source's errors reach the view, and hash_on_advance hashes the stream
// (the expected digest is Python's hashlib over the same pattern, not this code's). Both with
// the ring's own reading thread and inline.
#include "cfs/oci/read_ring.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <random>

#include "cfs/oci/digest.h"

namespace cfs::oci {
namespace {

using ::testing::HasSubstr;

std::byte pattern(std::uint64_t i) { return static_cast<std::byte>((i * 131 + i / 7) & 0xff); }

/// `size` bytes of pattern(), returned in reads of random lengths; fails at `fail_at` if set.
class PatternSource final : public ByteSource {
 public:
  PatternSource(std::uint64_t size, std::uint64_t fail_at = UINT64_MAX)
      : size_(size), fail_at_(fail_at) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    if (pos_ >= fail_at_)
      return fail(Errc::kInvalidInput, "pattern: broken at byte " + std::to_string(pos_));
    std::uniform_int_distribution<std::size_t> len(1, 7000);
    std::size_t n = std::min<std::uint64_t>({buf.size(), size_ - pos_, len(rng_), fail_at_ - pos_});
    for (std::size_t i = 0; i < n; ++i) buf[i] = pattern(pos_ + i);
    pos_ += n;
    return n;
  }

 private:
  std::uint64_t size_, fail_at_, pos_ = 0;
  std::mt19937 rng_{7};
};

constexpr std::size_t kCap = 64 * 1024;
constexpr std::size_t kMaxView = 16 * 1024;

std::unique_ptr<ReadRing> make_ring(bool threaded, std::unique_ptr<PatternSource>& keep,
                                    std::uint64_t size, std::uint64_t fail_at = UINT64_MAX) {
  keep = std::make_unique<PatternSource>(size, fail_at);
  if (!threaded) return ReadRing::inline_reader(*keep, kCap, kMaxView);
  return ReadRing::start(std::move(keep), kCap, kMaxView);
}

bool matches(std::span<const std::byte> v, std::uint64_t at) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] != pattern(at + i)) return false;
  return true;
}

TEST(ReadRing, ViewsSeeTheStreamAcrossTheEndAndHeldBytesStay) {
  constexpr std::uint64_t kSize = 3000000;  // ~46 laps of the ring
  for (bool threaded : {true, false}) {
    std::unique_ptr<PatternSource> src;
    auto ring = make_ring(threaded, src, kSize);
    ContentHasher hash;
    ring->hash_on_advance(hash);
    std::mt19937 rng(1);
    // Views still held (not released), oldest first: each must keep its bytes until released.
    std::deque<std::pair<std::uint64_t, std::span<const std::byte>>> held;
    std::size_t crossing = 0;
    while (ring->position() < kSize) {
      const std::size_t want = std::uniform_int_distribution<std::size_t>(1, kMaxView)(rng);
      auto v = ring->view(want);
      ASSERT_TRUE(v) << v.error().message();
      if (!*v) {  // full: the oldest held view goes
        ASSERT_FALSE(held.empty());
        ASSERT_TRUE(matches(held.front().second, held.front().first))
            << "bytes at " << held.front().first << " changed before their release";
        held.pop_front();
        ring->release(held.empty() ? ring->position() : held.front().first);
        continue;
      }
      const std::uint64_t at = ring->position();
      ASSERT_GE((*v)->size(), std::min<std::uint64_t>(want, kSize - at));
      ASSERT_TRUE(matches(**v, at)) << "view at " << at;
      if ((at % kCap) + (*v)->size() > kCap) ++crossing;
      const std::size_t n = std::min((*v)->size(), want);
      held.emplace_back(at, (*v)->first(n));
      ring->advance(n);
      if (held.size() > 3) {
        ASSERT_TRUE(matches(held.front().second, held.front().first));
        held.pop_front();
        ring->release(held.front().first);
      }
    }
    auto end = ring->view(1);
    ASSERT_TRUE(end && *end);
    EXPECT_TRUE((*end)->empty());
    EXPECT_GT(crossing, 10u);
    // hashlib.sha256(bytes(((i * 131 + i // 7) & 0xff) for i in range(3000000))).hexdigest()
    EXPECT_EQ(hash.finish().hex, "d83b38290f9afec584f6c737a7f50245c01f5f1dddbd0aad94f78a3ff53dde61")
        << (threaded ? "threaded" : "inline");
  }
}

TEST(ReadRing, AFullRingAsksForAReleaseInsteadOfWaiting) {
  for (bool threaded : {true, false}) {
    std::unique_ptr<PatternSource> src;
    auto ring = make_ring(threaded, src, 1000000);
    // capacity - max_view bytes may be unreleased: 48 KiB here.
    for (int i = 0; i < 3; ++i) {
      auto v = ring->view(kMaxView);
      ASSERT_TRUE(v && *v);
      ring->advance(kMaxView);
    }
    auto full = ring->view(1);
    ASSERT_TRUE(full);
    EXPECT_FALSE(*full) << (threaded ? "threaded" : "inline");
    ring->release(kMaxView);
    auto more = ring->view(1);
    ASSERT_TRUE(more && *more);
    EXPECT_TRUE(matches(**more, 3 * kMaxView));
  }
}

TEST(ReadRing, TheSourcesErrorReachesTheViewAndReadCopiesOut) {
  for (bool threaded : {true, false}) {
    std::unique_ptr<PatternSource> src;
    auto ring = make_ring(threaded, src, 1000000, 100000);
    std::string got;
    std::array<std::byte, 5000> buf;
    Result<std::size_t> n;
    while ((n = ring->read(buf)) && *n > 0) got.append(reinterpret_cast<char*>(buf.data()), *n);
    ASSERT_FALSE(n);
    EXPECT_THAT(n.error().message(), HasSubstr("pattern: broken at byte 100000"));
    ASSERT_EQ(got.size(), 100000u);
    EXPECT_TRUE(matches(std::as_bytes(std::span(got)), 0));
  }
}

}  // namespace
}  // namespace cfs::oci
