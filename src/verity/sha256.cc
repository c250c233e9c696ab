// SPDX-License-Identifier: Apache-2.0
// SHA-256 (FIPS 180-4): scalar compression for precomputation, an N-way interleaved SHA-NI
// kernel compiled with function-level target attributes so the build needs no -m flags and
// the code only runs after a cpuid check, and the dispatch to it or the AVX-512 kernel
// (sha256_avx512.cc).
#include <algorithm>
#include <cstring>
#include <utility>

#include "verity/sha256_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

#include "verity/cpu_features.h"
#define CFS_HAVE_X86 1
#else
#define CFS_HAVE_X86 0
#endif

namespace cfs::verity::detail {
namespace {

constexpr std::uint32_t kIv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
constexpr std::uint32_t load_be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 |
         std::uint32_t{p[3]};
}

// Message schedule of one 64-byte block.
void expand(const std::uint8_t* block, std::uint32_t w[64]) {
  for (int t = 0; t < 16; ++t) w[t] = load_be32(block + 4 * t);
  for (int t = 16; t < 64; ++t) {
    std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
}

}  // namespace

void sha256_compress_scalar(std::uint32_t state[8], const std::uint8_t* blocks, std::size_t n) {
  for (std::size_t b = 0; b < n; ++b) {
    std::uint32_t w[64];
    expand(blocks + 64 * b, w);
    std::uint32_t a = state[0], bb = state[1], c = state[2], d = state[3], e = state[4],
                  f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; ++t) {
      std::uint32_t t1 =
          h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[t] + w[t];
      std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = bb;
      bb = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += bb;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

Sha256Plan make_sha256_plan(const std::uint8_t* prefix, std::size_t prefix_len, std::size_t len) {
  Sha256Plan p{};
  std::memcpy(p.state, kIv, sizeof kIv);
  if (prefix_len > 0) sha256_compress_scalar(p.state, prefix, prefix_len / 64);
  p.prefix_len = prefix_len;
  // The message length is a multiple of 64, so the padding is a whole block: 0x80, zeros,
  // and the bit length big-endian in the last 8 bytes. Its schedule never changes.
  std::uint8_t pad[64] = {0x80};
  std::uint64_t bits = (static_cast<std::uint64_t>(prefix_len) + len) * 8;
  for (int i = 0; i < 8; ++i) pad[63 - i] = static_cast<std::uint8_t>(bits >> (8 * i));
  std::uint32_t w[64];
  expand(pad, w);
  for (int t = 0; t < 64; ++t) p.pad_wk[t] = w[t] + kSha256K[t];
  return p;
}

#if CFS_HAVE_X86

bool cpu_has_sha_ni() noexcept {
#ifdef CFS_HAVE_GLIBC_X86
  // What glibc read at start-up: free, where a cpuid is a VM exit (~10 us on host B).
  return CPU_FEATURE_ACTIVE(SHA) && CPU_FEATURE_ACTIVE(SSSE3) && CPU_FEATURE_ACTIVE(SSE4_1);
#else
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = (c & (1u << 9)) != 0, sse41 = (c & (1u << 19)) != 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool sha = (b & (1u << 29)) != 0;
  return ssse3 && sse41 && sha;
#endif
}

namespace {

#define CFS_SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))
#define CFS_SHA_INLINE CFS_SHA_TARGET __attribute__((always_inline)) inline
#define CFS_SHA_LAMBDA CFS_SHA_TARGET __attribute__((always_inline))

// Calls f(integral_constant<I>) for I = 0..N-1 as straight-line code. Every array below is then
// indexed by constants only, so the compiler can keep it in registers; with plain loops g++ 12
// leaves the lane loops rolled and the states in memory, which made 3 and 4 lanes slower than 2.
template <class F, std::size_t... I>
CFS_SHA_INLINE void each_index(F&& f, std::index_sequence<I...>) {
  (f(std::integral_constant<std::size_t, I>{}), ...);
}
template <std::size_t N, class F>
CFS_SHA_INLINE void unrolled(F&& f) {
  each_index(f, std::make_index_sequence<N>{});
}

// N independent messages, each `nblk` 64-byte blocks from a common start state, then the shared
// padding block. The N instruction streams interleave and keep the SHA unit's pipeline full (a
// sha256rnds2 waits ~4 cycles for its predecessor; the unit takes one every ~2). States and
// message schedules need 6 registers per lane, so from 3 lanes on some live in memory, which
// costs less than the latency it hides (bench/README.md).
template <unsigned N>
CFS_SHA_TARGET __attribute__((flatten)) void lanes(const Sha256Plan& plan,
                                                   const std::uint8_t* const* msg, std::size_t nblk,
                                                   std::uint8_t* const* out) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  __m128i abef[N], cdgh[N];
  {
    __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(plan.state));
    __m128i s1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(plan.state + 4));
    t = _mm_shuffle_epi32(t, 0xB1);
    s1 = _mm_shuffle_epi32(s1, 0x1B);
    const __m128i s0 = _mm_alignr_epi8(t, s1, 8);
    s1 = _mm_blend_epi16(s1, t, 0xF0);
    unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
      abef[l] = s0;
      cdgh[l] = s1;
    });
  }
  for (std::size_t b = 0; b < nblk; ++b) {
    __m128i save0[N], save1[N], m[4][N];
    unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
      save0[l] = abef[l];
      save1[l] = cdgh[l];
      const std::uint8_t* p = msg[l] + 64 * b;
      unrolled<4>([&](auto i) CFS_SHA_LAMBDA {
        m[i][l] =
            _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), bswap);
      });
    });
    unrolled<16>([&](auto q) CFS_SHA_LAMBDA {
      if constexpr (q >= 4) {
        unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
          __m128i x = _mm_sha256msg1_epu32(m[q % 4][l], m[(q + 1) % 4][l]);
          x = _mm_add_epi32(x, _mm_alignr_epi8(m[(q + 3) % 4][l], m[(q + 2) % 4][l], 4));
          m[q % 4][l] = _mm_sha256msg2_epu32(x, m[(q + 3) % 4][l]);
        });
      }
      const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kSha256K + 4 * q));
      unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
        const __m128i t = _mm_add_epi32(m[q % 4][l], k);
        cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], t);
        abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(t, 0x0E));
      });
    });
    unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
      abef[l] = _mm_add_epi32(abef[l], save0[l]);
      cdgh[l] = _mm_add_epi32(cdgh[l], save1[l]);
    });
  }
  // Final padding block: W + K precomputed, identical for every lane.
  {
    __m128i save0[N], save1[N];
    unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
      save0[l] = abef[l];
      save1[l] = cdgh[l];
    });
    unrolled<16>([&](auto q) CFS_SHA_LAMBDA {
      const __m128i wk = _mm_load_si128(reinterpret_cast<const __m128i*>(plan.pad_wk + 4 * q));
      const __m128i wk_hi = _mm_shuffle_epi32(wk, 0x0E);
      unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
        cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk);
        abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], wk_hi);
      });
    });
    unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
      abef[l] = _mm_add_epi32(abef[l], save0[l]);
      cdgh[l] = _mm_add_epi32(cdgh[l], save1[l]);
    });
  }
  unrolled<N>([&](auto l) CFS_SHA_LAMBDA {
    const __m128i t = _mm_shuffle_epi32(abef[l], 0x1B);
    const __m128i s1 = _mm_shuffle_epi32(cdgh[l], 0xB1);
    const __m128i lo = _mm_blend_epi16(t, s1, 0xF0);
    const __m128i hi = _mm_alignr_epi8(s1, t, 8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[l]), _mm_shuffle_epi8(lo, bswap));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[l] + 16), _mm_shuffle_epi8(hi, bswap));
  });
}

}  // namespace

void sha256_ni_gather(const Sha256Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                      std::size_t count, std::uint8_t* const* outs, unsigned nlanes) {
  using Kernel =
      void (*)(const Sha256Plan&, const std::uint8_t* const*, std::size_t, std::uint8_t* const*);
  static constexpr Kernel kKernels[9] = {nullptr,  lanes<1>, lanes<2>, lanes<3>, lanes<4>,
                                         lanes<4>, lanes<6>, lanes<6>, lanes<8>};
  const std::size_t nblk = len / 64;
  std::size_t width = nlanes < 1 ? 1 : nlanes > 8 ? 8 : nlanes;
  for (std::size_t i = 0; i < count;) {
    // The last few messages go through the widest kernel that still fits.
    while (width > count - i) width = width > 4 ? 4 : width - 1;
    kKernels[width](plan, msgs + i, nblk, outs + i);
    i += width;
  }
}

#else  // !CFS_HAVE_X86

bool cpu_has_sha_ni() noexcept { return false; }
void sha256_ni_gather(const Sha256Plan&, const std::uint8_t* const*, std::size_t, std::size_t,
                      std::uint8_t* const*, unsigned) {}

#endif

void sha256_gather(const Sha256Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                   std::size_t count, std::uint8_t* const* outs, Engine e, std::size_t ahead) {
  if (e == Engine::kAvx512x16)
    sha256_x16_gather(plan, msgs, len, count, outs, sha_ni_available(), ahead);
  else
    sha256_ni_gather(plan, msgs, len, count, outs, engine_lanes(e));
}

void sha256_many(const Sha256Plan& plan, const std::uint8_t* in, std::size_t len, std::size_t count,
                 std::uint8_t* out, Engine e) {
  constexpr std::size_t kBatch = 64;  // a multiple of every interleave width
  constexpr std::size_t kAhead = 16;  // the next batch's first group, for the prefetch
  const std::uint8_t* msgs[kBatch + kAhead];
  std::uint8_t* outs[kBatch];
  for (std::size_t done = 0; done < count;) {
    const std::size_t n = count - done < kBatch ? count - done : kBatch;
    const std::size_t ahead = std::min(kAhead, count - done - n);
    for (std::size_t j = 0; j < n; ++j) {
      msgs[j] = in + (done + j) * len;
      outs[j] = out + (done + j) * 32;
    }
    for (std::size_t j = n; j < n + ahead; ++j) msgs[j] = in + (done + j) * len;
    sha256_gather(plan, msgs, len, n, outs, e, ahead);
    done += n;
  }
}

}  // namespace cfs::verity::detail
