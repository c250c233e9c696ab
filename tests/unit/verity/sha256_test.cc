// SPDX-License-Identifier: Apache-2.0
// The SHA-256 kernels alone (sha256_internal.h) against OpenSSL's one-shot SHA256: every
// engine this CPU runs, every message count from 1 to 40 (so every full pass of 8 or 16 lanes
// and every remainder), message lengths from one 64-byte block to 64 KiB, with and without a
// salt block absorbed into the plan, contiguous (sha256_many) and scattered (sha256_gather).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <functional>
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
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<std::size_t>(8, n - i));
  }
  return v;
}

std::string hex32(const std::uint8_t* p) { return to_hex(std::span<const std::uint8_t>(p, 32)); }

// SHA-256 of prefix || message by OpenSSL, the oracle.
std::string openssl_sha256(const std::vector<std::uint8_t>& prefix, const std::uint8_t* msg,
                           std::size_t len) {
  EVP_MD_CTX* c = EVP_MD_CTX_new();
  std::uint8_t md[32];
  unsigned n = 0;
  const bool ok = c != nullptr && EVP_DigestInit_ex(c, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(c, prefix.data(), prefix.size()) == 1 &&
                  EVP_DigestUpdate(c, msg, len) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1;
  EVP_MD_CTX_free(c);
  return ok && n == 32 ? hex32(md) : "openssl failed";
}

// One kernel call: (plan, messages, length, count, digest pointers).
using Kernel = std::function<void(const Sha256Plan&, const std::uint8_t* const*, std::size_t,
                                  std::size_t, std::uint8_t* const*)>;
struct NamedKernel {
  std::string name;
  Kernel run;
};

// Every kernel on the same inputs; the expected digests come from OpenSSL over salt || message.
void check_kernels(const std::vector<NamedKernel>& kernels, std::mt19937_64& rng) {
  for (std::size_t len : {64u, 128u, 256u, 320u, 4096u, 65536u}) {
    for (bool salted : {false, true}) {
      const std::vector<std::uint8_t> prefix =
          salted ? random_bytes(rng, 64) : std::vector<std::uint8_t>{};
      const Sha256Plan plan = make_sha256_plan(prefix.data(), prefix.size(), len);
      for (std::size_t count = 1; count <= 40; ++count) {
        // 64 KiB messages: one pass, the remainders around the SHA-NI cut-off, more than one pass.
        if (len == 65536 && count != 1 && count != 9 && count != 10 && count != 16 && count != 17 &&
            count != 40)
          continue;
        // One buffer, messages at shuffled offsets with different alignments mod 64.
        const std::vector<std::uint8_t> buf = random_bytes(rng, count * (len + 64));
        std::vector<std::size_t> slot(count);
        for (std::size_t i = 0; i < count; ++i) slot[i] = i;
        std::shuffle(slot.begin(), slot.end(), rng);
        std::vector<const std::uint8_t*> msgs(count);
        std::vector<std::string> want(count);
        for (std::size_t i = 0; i < count; ++i) {
          msgs[i] = buf.data() + slot[i] * (len + 64) + (i * 4) % 64;
          want[i] = openssl_sha256(prefix, msgs[i], len);
        }
        for (const NamedKernel& k : kernels) {
          std::vector<std::uint8_t> out(count * 32 + 32, 0xA5);
          std::vector<std::uint8_t*> outs(count);
          for (std::size_t i = 0; i < count; ++i) outs[i] = out.data() + 32 * i;
          k.run(plan, msgs.data(), len, count, outs.data());
          for (std::size_t i = 0; i < count; ++i)
            ASSERT_EQ(hex32(outs[i]), want[i]) << k.name << " len " << len << " salted " << salted
                                               << " count " << count << " message " << i;
          // Nothing written past the last digest.
          for (std::size_t j = count * 32; j < out.size(); ++j) ASSERT_EQ(out[j], 0xA5) << k.name;
        }
      }
    }
  }
}

TEST(Sha256Kernels, EveryEngineMatchesOpenSslForEveryCountAndLength) {
  std::vector<NamedKernel> kernels;
  for (Engine e : kAllEngines) {
    if (e == Engine::kPortable) continue;  // OpenSSL itself
    if (!engine_available(e)) {
      std::cout << "skipped engine " << engine_name(e) << ": this CPU cannot run it\n";
      continue;
    }
    kernels.push_back(
        {std::string(engine_name(e)) + " gather",
         [e](const Sha256Plan& p, const std::uint8_t* const* m, std::size_t len, std::size_t n,
             std::uint8_t* const* o) { sha256_gather(p, m, len, n, o, e); }});
    // Contiguous messages and digests: the scattered messages copied into one run.
    kernels.push_back({std::string(engine_name(e)) + " many",
                       [e](const Sha256Plan& p, const std::uint8_t* const* m, std::size_t len,
                           std::size_t n, std::uint8_t* const* o) {
                         std::vector<std::uint8_t> in(n * len), out(n * 32);
                         for (std::size_t i = 0; i < n; ++i)
                           std::memcpy(in.data() + i * len, m[i], len);
                         sha256_many(p, in.data(), len, n, out.data(), e);
                         for (std::size_t i = 0; i < n; ++i)
                           std::memcpy(o[i], out.data() + 32 * i, 32);
                       }});
  }
  // The AVX-512 kernel's leftovers without SHA-NI (CPUs with AVX-512 but no SHA-NI): every
  // leftover goes through a 16-lane pass whose spare lanes must not leak into the digests.
  if (engine_available(Engine::kAvx512x16))
    kernels.push_back(
        {"avx512-16 without sha-ni",
         [](const Sha256Plan& p, const std::uint8_t* const* m, std::size_t len, std::size_t n,
            std::uint8_t* const* o) { sha256_x16_gather(p, m, len, n, o, false); }});
  if (kernels.empty()) GTEST_SKIP() << "CPU has neither SHA-NI nor AVX-512";
  std::mt19937_64 rng(20261206);
  check_kernels(kernels, rng);
}

}  // namespace
}  // namespace cfs::verity::detail
