// SPDX-License-Identifier: Apache-2.0
// The SHA-512 AVX-512 kernel alone (sha512_internal.h) against OpenSSL's SHA-512 (EVP): every
// message count from 1 to 24 (full 8-lane passes and every remainder), message lengths from one
// 128-byte block to 64 KiB, with and without a 128-byte salt block absorbed into the plan, at
// addresses of different alignments; both the entry that leaves small remainders to the caller
// and the one that hashes everything.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cfs/util/hex.h"
#include "cfs/verity/engine.h"
#include "verity/sha512_internal.h"

namespace cfs::verity::detail {
namespace {

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<std::size_t>(8, n - i));
  }
  return v;
}

std::string hex64(const std::uint8_t* p) { return to_hex(std::span<const std::uint8_t>(p, 64)); }

// SHA-512 of prefix || message by OpenSSL, the oracle.
std::string openssl_sha512(const std::vector<std::uint8_t>& prefix, const std::uint8_t* msg,
                           std::size_t len) {
  EVP_MD_CTX* c = EVP_MD_CTX_new();
  std::uint8_t md[64];
  unsigned n = 0;
  const bool ok = c != nullptr && EVP_DigestInit_ex(c, EVP_sha512(), nullptr) == 1 &&
                  EVP_DigestUpdate(c, prefix.data(), prefix.size()) == 1 &&
                  EVP_DigestUpdate(c, msg, len) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1;
  EVP_MD_CTX_free(c);
  return ok && n == 64 ? hex64(md) : "openssl failed";
}

TEST(Sha512Kernels, Avx512MatchesOpenSslForEveryCountAndLength) {
  if (!engine_available(Engine::kAvx512x16)) GTEST_SKIP() << "CPU has no AVX-512";
  std::mt19937_64 rng(20261206);
  for (std::size_t len : {128u, 256u, 384u, 4096u, 65536u}) {
    for (bool salted : {false, true}) {
      const std::vector<std::uint8_t> prefix =
          salted ? random_bytes(rng, 128) : std::vector<std::uint8_t>{};
      const Sha512Plan plan = make_sha512_plan(prefix.data(), prefix.size(), len);
      for (std::size_t count = 1; count <= 24; ++count) {
        if (len == 65536 && count != 1 && count != 3 && count != 8 && count != 11 && count != 24)
          continue;
        // One buffer, messages at shuffled offsets with different alignments mod 64.
        const std::vector<std::uint8_t> buf = random_bytes(rng, count * (len + 64));
        std::vector<std::size_t> slot(count);
        for (std::size_t i = 0; i < count; ++i) slot[i] = i;
        std::shuffle(slot.begin(), slot.end(), rng);
        std::vector<const std::uint8_t*> msgs(count);
        std::vector<std::string> want(count);
        for (std::size_t i = 0; i < count; ++i) {
          msgs[i] = buf.data() + slot[i] * (len + 64) + (i * 8) % 64;
          want[i] = openssl_sha512(prefix, msgs[i], len);
        }
        for (bool all : {false, true}) {
          std::vector<std::uint8_t> out(count * 64 + 64, 0xA5);
          std::vector<std::uint8_t*> outs(count);
          for (std::size_t i = 0; i < count; ++i) outs[i] = out.data() + 64 * i;
          std::size_t done = count;
          if (all)
            sha512_x8_gather_all(plan, msgs.data(), len, count, outs.data());
          else
            done = sha512_x8_gather(plan, msgs.data(), len, count, outs.data());
          // The partial entry hashes every full pass and leaves at most a few to the caller.
          ASSERT_LE(done, count);
          ASSERT_GE(done, count / 8 * 8);
          for (std::size_t i = 0; i < done; ++i)
            ASSERT_EQ(hex64(outs[i]), want[i]) << "len " << len << " salted " << salted << " count "
                                               << count << " message " << i << " all " << all;
          // Nothing written past the last digest hashed.
          for (std::size_t j = done * 64; j < out.size(); ++j) ASSERT_EQ(out[j], 0xA5) << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace cfs::verity::detail
