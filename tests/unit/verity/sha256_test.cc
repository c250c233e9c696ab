// SPDX-License-Identifier: Apache-2.0
// The SHA-256 kernels alone (sha256_internal.h) against OpenSSL's one-shot SHA256: every
// engine this CPU runs, every message count from 1 to 40 (so every full pass of 8 or 16 lanes
// and every remainder), message lengths from one 64-byte block to 64 KiB, with and without a
// salt block absorbed into the plan, contiguous (sha256_many) and scattered (sha256_gather).
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "cfs/util/hex.h"
#include "cfs/verity/engine.h"
#include "verity/sha256_internal.h"

namespace cfs::verity::detail {
namespace {

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// SHA-256 of prefix || message by OpenSSL, the oracle.
std::string openssl_sha256(const std::vector<std::uint8_t>& prefix, const std::uint8_t* msg,
                           std::size_t len) {
  std::vector<std::uint8_t> all(prefix);
  all.insert(all.end(), msg, msg + len);
  std::uint8_t md[32];
  SHA256(all.data(), all.size(), md);
  return to_hex(std::span<const std::uint8_t>(md, 32));
}

std::string hex32(const std::uint8_t* p) { return to_hex(std::span<const std::uint8_t>(p, 32)); }

// Runs `check(engine, plan, prefix, len, count)`-style comparisons for one kernel entry point.
void check_kernel(const std::string& name, std::mt19937_64& rng,
                  void (*run)(const Sha256Plan&, const std::uint8_t* const*, std::size_t,
                              std::size_t, std::uint8_t* const*, const void*),
                  const void* ctx) {
  for (std::size_t len : {64u, 128u, 256u, 320u, 4096u, 65536u}) {
    for (bool salted : {false, true}) {
      const std::vector<std::uint8_t> prefix =
          salted ? random_bytes(rng, 64) : std::vector<std::uint8_t>{};
      const Sha256Plan plan = make_sha256_plan(prefix.data(), prefix.size(), len);
      for (std::size_t count = 1; count <= 40; ++count) {
        if (len == 65536 && count % 7 != 0 && count > 17) continue;  // keep the test fast
        // One buffer, messages at shuffled offsets (each a different alignment mod 64).
        std::vector<std::uint8_t> buf = random_bytes(rng, count * (len + 64));
        std::vector<std::size_t> slot(count);
        for (std::size_t i = 0; i < count; ++i) slot[i] = i;
        std::shuffle(slot.begin(), slot.end(), rng);
        std::vector<const std::uint8_t*> msgs(count);
        for (std::size_t i = 0; i < count; ++i)
          msgs[i] = buf.data() + slot[i] * (len + 64) + (i * 4) % 64;
        std::vector<std::uint8_t> out(count * 32 + 32, 0xA5);
        std::vector<std::uint8_t*> outs(count);
        for (std::size_t i = 0; i < count; ++i) outs[i] = out.data() + 32 * i;
        run(plan, msgs.data(), len, count, outs.data(), ctx);
        for (std::size_t i = 0; i < count; ++i)
          ASSERT_EQ(hex32(outs[i]), openssl_sha256(prefix, msgs[i], len))
              << name << " len " << len << " salted " << salted << " count " << count << " message "
              << i;
        // Nothing written past the last digest.
        for (std::size_t j = count * 32; j < out.size(); ++j) ASSERT_EQ(out[j], 0xA5) << name;
      }
    }
  }
}

TEST(Sha256Kernels, EveryEngineMatchesOpenSslForEveryCountAndLength) {
  std::mt19937_64 rng(20261206);
  int ran = 0;
  for (Engine e : kAllEngines) {
    if (e == Engine::kPortable) continue;  // OpenSSL itself
    if (!engine_available(e)) {
      std::cout << "skipped engine " << engine_name(e) << ": this CPU cannot run it\n";
      continue;
    }
    ++ran;
    check_kernel(
        std::string(engine_name(e)) + " gather", rng,
        [](const Sha256Plan& p, const std::uint8_t* const* m, std::size_t len, std::size_t n,
           std::uint8_t* const* o,
           const void* ctx) { sha256_gather(p, m, len, n, o, *static_cast<const Engine*>(ctx)); },
        &e);
    // Contiguous messages and digests: copy the scattered messages into one run.
    check_kernel(
        std::string(engine_name(e)) + " many", rng,
        [](const Sha256Plan& p, const std::uint8_t* const* m, std::size_t len, std::size_t n,
           std::uint8_t* const* o, const void* ctx) {
          std::vector<std::uint8_t> in(n * len), out(n * 32);
          for (std::size_t i = 0; i < n; ++i) std::memcpy(in.data() + i * len, m[i], len);
          sha256_many(p, in.data(), len, n, out.data(), *static_cast<const Engine*>(ctx));
          for (std::size_t i = 0; i < n; ++i) std::memcpy(o[i], out.data() + 32 * i, 32);
        },
        &e);
  }
  if (ran == 0) GTEST_SKIP() << "CPU has neither SHA-NI nor AVX-512";
}

// The AVX-512 kernel's remainder without SHA-NI (CPUs with AVX-512 but no SHA-NI): every
// remainder goes through a 16-lane pass whose spare lanes must not leak into the digests.
TEST(Sha256Kernels, Avx512RemainderWithoutShaNi) {
  if (!engine_available(Engine::kAvx512x16))
    GTEST_SKIP() << "CPU (or OS) has no usable AVX-512 F/BW/VL";
  std::mt19937_64 rng(17);
  check_kernel(
      "avx512-16 without sha-ni", rng,
      [](const Sha256Plan& p, const std::uint8_t* const* m, std::size_t len, std::size_t n,
         std::uint8_t* const* o, const void*) { sha256_x16_gather(p, m, len, n, o, false); },
      nullptr);
}

}  // namespace
}  // namespace cfs::verity::detail
