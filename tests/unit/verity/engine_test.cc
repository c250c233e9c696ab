// SPDX-License-Identifier: Apache-2.0
// The SHA-NI engines (1..8 interleaved lanes) and the 16-lane AVX-512 engine against the
// OpenSSL path, on random data, sizes, salts, block sizes and thread counts. The OpenSSL path
// itself is pinned by vectors_test; the kernels alone by sha256_test.
#include "cfs/verity/engine.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <stdexcept>
#include <vector>

#include "cfs/verity/digest.h"
#include "cfs/verity/merkle.h"

namespace cfs::verity {
namespace {

class EngineGuard {
 public:
  ~EngineGuard() { set_engine(Engine::kAuto); }
};

std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t r = rng();
    for (std::size_t j = 0; j < 8 && i + j < n; ++j)
      v[i + j] = static_cast<std::byte>(r >> (8 * j));
  }
  return v;
}

Params random_params(std::mt19937_64& rng) {
  Params p;
  p.alg = HashAlg::kSha256;
  p.block_size = 1u << (6 + rng() % 11);  // 64 .. 65536
  const std::size_t salt = rng() % 3 == 0 ? 0 : 1 + rng() % 32;
  for (std::size_t i = 0; i < salt; ++i) p.salt.push_back(static_cast<std::uint8_t>(rng()));
  return p;
}

TEST(Engine, ReportsAndSelects) {
  EngineGuard g;
  EXPECT_TRUE(set_engine(Engine::kPortable));
  EXPECT_EQ(active_engine(), Engine::kPortable);
  EXPECT_TRUE(set_engine(Engine::kAuto));
  EXPECT_NE(active_engine(), Engine::kAuto);
  if (sha_ni_available()) {
    EXPECT_TRUE(set_engine(Engine::kShaNi3));
    EXPECT_EQ(active_engine(), Engine::kShaNi3);
  } else {
    EXPECT_FALSE(set_engine(Engine::kShaNi3));
  }
  EXPECT_EQ(engine_name(Engine::kShaNi2), "sha-ni-2");
  EXPECT_EQ(engine_name(Engine::kAvx512x16), "avx512-16");
  EXPECT_EQ(engine_lanes(Engine::kAvx512x16), 16u);
  EXPECT_EQ(set_engine(Engine::kAvx512x16), engine_available(Engine::kAvx512x16));
  if (engine_available(Engine::kAvx512x16)) {
    EXPECT_EQ(active_engine(), Engine::kAvx512x16);
  }
}

// SHA-512's 8-lane kernel follows the CPU, not the SHA-256 engine the vendor rule picks (on AMD
// that is sha-ni-8), and a forced engine other than avx512-16 turns it off.
TEST(Engine, Sha512LanesWhereverAvx512) {
  EngineGuard g;
  const bool avx512 = engine_available(Engine::kAvx512x16);
  ASSERT_TRUE(set_engine(Engine::kAuto));
  if (std::getenv("CFS_VERITY_ENGINE") == nullptr) {
    EXPECT_EQ(sha512_x8_active(), avx512);
  }
  ASSERT_TRUE(set_engine(Engine::kPortable));
  EXPECT_FALSE(sha512_x8_active());
  if (sha_ni_available()) {
    ASSERT_TRUE(set_engine(Engine::kShaNi8));
    EXPECT_FALSE(sha512_x8_active());
  }
  if (avx512) {
    ASSERT_TRUE(set_engine(Engine::kAvx512x16));
    EXPECT_TRUE(sha512_x8_active());
  }
}

TEST(Engine, EveryEngineMatchesPortableOnRandomInputs) {
  if (!sha_ni_available() && !engine_available(Engine::kAvx512x16))
    GTEST_SKIP() << "CPU has neither SHA-NI nor AVX-512; only the portable path exists";
  EngineGuard g;
  std::mt19937_64 rng(20261127);
  for (int round = 0; round < 40; ++round) {
    const Params p = random_params(rng);
    // Sizes around block and level boundaries, and plain random ones.
    std::size_t size = rng() % (3 * p.block_size + 1);
    if (round % 3 == 1) size = rng() % (std::size_t{p.block_size} << 6);
    if (round % 5 == 4 && p.block_size <= 4096)
      size = static_cast<std::size_t>(p.block_size) * (p.block_size / 32) + (rng() % 3) - 1;
    const std::vector<std::byte> data = random_bytes(rng, size);
    SCOPED_TRACE("round " + std::to_string(round) + " size " + std::to_string(size) + " bs " +
                 std::to_string(p.block_size) + " salt " + std::to_string(p.salt.size()));
    ASSERT_TRUE(set_engine(Engine::kPortable));
    const Digest want = digest_bytes(data, p);
    auto want_tree = build_merkle_tree(data, p, 1);
    ASSERT_TRUE(want_tree);
    for (Engine e : kAllEngines) {
      if (e == Engine::kPortable || !engine_available(e)) continue;
      ASSERT_TRUE(set_engine(e));
      EXPECT_EQ(digest_bytes(data, p), want) << engine_name(e);
      auto tree = build_merkle_tree(data, p, 1 + static_cast<unsigned>(rng() % 3));
      ASSERT_TRUE(tree);
      EXPECT_EQ(tree->tree, want_tree->tree) << engine_name(e);
      EXPECT_EQ(tree->digest, want) << engine_name(e);
    }
  }
}

TEST(Engine, SmallBatchMatchesOneAtATimeOnEveryEngine) {
  EngineGuard g;
  std::mt19937_64 rng(11);
  for (int round = 0; round < 30; ++round) {
    const Params p = random_params(rng);
    std::vector<std::vector<std::byte>> data;
    const std::size_t n = 1 + rng() % kSmallBatchMax;
    // Up to one block (most often), or up to a two-level tree (capped to keep the test fast).
    const std::size_t cap = std::min<std::size_t>(small_many_max(p), std::size_t{1} << 20);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t max = rng() % 3 == 0 ? cap : p.block_size;
      data.push_back(random_bytes(rng, rng() % (max + 1)));
    }
    std::vector<std::span<const std::byte>> in(data.begin(), data.end());
    ASSERT_TRUE(set_engine(Engine::kPortable));
    std::vector<Digest> want;
    for (const auto& d : data) want.push_back(digest_bytes(d, p));
    for (Engine e : kAllEngines) {
      if (!engine_available(e)) continue;
      ASSERT_TRUE(set_engine(e));
      std::vector<Digest> got(n);
      digest_small_many(in, p, got);
      EXPECT_EQ(got, want) << engine_name(e) << " round " << round;
    }
  }
  std::vector<std::byte> big(small_many_max(Params{}) + 1);
  std::vector<std::span<const std::byte>> too_big{big};
  std::vector<Digest> one(1);
  EXPECT_THROW(digest_small_many(too_big, Params{}, one), std::invalid_argument);
  std::vector<Digest> out(kSmallBatchMax + 1);
  std::vector<std::span<const std::byte>> too_many(kSmallBatchMax + 1);
  EXPECT_THROW(digest_small_many(too_many, Params{}, out), std::invalid_argument);
}

TEST(Engine, Sha512IgnoresEngineChoice) {
  EngineGuard g;
  std::mt19937_64 rng(7);
  const std::vector<std::byte> data = random_bytes(rng, 100000);
  Params p;
  p.alg = HashAlg::kSha512;
  p.salt = {1, 2, 3};
  ASSERT_TRUE(set_engine(Engine::kPortable));
  const Digest want = digest_bytes(data, p);
  set_engine(Engine::kAuto);
  EXPECT_EQ(digest_bytes(data, p), want);
  EXPECT_EQ(want.size, 64u);
}

}  // namespace
}  // namespace cfs::verity
