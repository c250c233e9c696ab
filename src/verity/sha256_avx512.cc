// SPDX-License-Identifier: Apache-2.0
// SHA-256 of 16 equal-length messages at once, one message per 32-bit element of a zmm
// register (AVX-512F/BW/VL, function-level target attribute, run only after cpuid and xgetbv
// say the CPU and the OS support it). On Intel Sapphire Rapids the SHA-NI unit accepts a
// sha256rnds2 only every ~2 cycles, which caps 8 interleaved SHA-NI streams at ~71 cycles per
// 64-byte block; a round here is ~25 vector instructions for 16 blocks (rotates with vprord,
// Ch/Maj/three-way XOR with one vpternlogd each), and measured 3.7 GB/s per core against
// 2.3 GB/s for sha-ni-8 (bench/README.md).
#include <cstring>
#include <utility>

#include "verity/sha256_internal.h"

#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
// g++ 12's AVX-512 headers pass _mm512_undefined_epi32() (a self-initialised variable) as the
// merge source of unmasked operations, which -Wuninitialized reports wherever they inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>

#include "verity/cpu_features.h"
#define CFS_HAVE_X86_64 1
#else
#define CFS_HAVE_X86_64 0
#endif

namespace cfs::verity::detail {

#if CFS_HAVE_X86_64

bool cpu_has_avx512_sha() noexcept {
#ifdef CFS_HAVE_GLIBC_X86
  // glibc's "active" features are what the CPU has and the OS saves (it read cpuid and XCR0 at
  // start-up); asking glibc costs nothing, while a cpuid is a VM exit (~10 us on host B).
  return CPU_FEATURE_ACTIVE(AVX512F) && CPU_FEATURE_ACTIVE(AVX512BW) &&
         CPU_FEATURE_ACTIVE(AVX512VL);
#else
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  if ((c & (1u << 27)) == 0) return false;  // OSXSAVE: xgetbv is usable
  // The OS must save SSE, AVX, opmask and both halves of the ZMM state (XCR0 bits 1, 2, 5-7);
  // without that, a context switch would corrupt the registers.
  unsigned xlo = 0, xhi = 0;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  if ((xlo & 0xE6u) != 0xE6u) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool f = (b & (1u << 16)) != 0, bw = (b & (1u << 30)) != 0, vl = (b & (1u << 31)) != 0;
  return f && bw && vl;
#endif
}

namespace {

#define CFS_X16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))
#define CFS_X16_INLINE CFS_X16_TARGET __attribute__((always_inline)) inline
#define CFS_X16_LAMBDA CFS_X16_TARGET __attribute__((always_inline))

// vpternlogd truth tables (operands a, b, c = 0xF0, 0xCC, 0xAA): a^b^c, (a&b)^(~a&c), majority.
constexpr int kXor3 = 0x96, kCh = 0xCA, kMaj = 0xE8;

template <int N>  // a template: clang checks the count is a constant before inlining
CFS_X16_INLINE __m512i ror(__m512i x) {
  return _mm512_ror_epi32(x, N);
}
CFS_X16_INLINE __m512i add(__m512i x, __m512i y) { return _mm512_add_epi32(x, y); }
CFS_X16_INLINE __m512i bcast(std::uint32_t k) {
  return _mm512_set1_epi32(static_cast<int>(k));  // an embedded {1to16} operand
}

// One round on 16 lanes: d += T1, h = T1 + T2 (the caller rotates the names, not the values).
CFS_X16_INLINE void round(__m512i a, __m512i b, __m512i c, __m512i& d, __m512i e, __m512i f,
                          __m512i g, __m512i& h, __m512i wk) {
  const __m512i s1 = _mm512_ternarylogic_epi32(ror<6>(e), ror<11>(e), ror<25>(e), kXor3);
  const __m512i ch = _mm512_ternarylogic_epi32(e, f, g, kCh);
  const __m512i t1 = add(add(h, wk), add(s1, ch));
  const __m512i s0 = _mm512_ternarylogic_epi32(ror<2>(a), ror<13>(a), ror<22>(a), kXor3);
  const __m512i maj = _mm512_ternarylogic_epi32(a, b, c, kMaj);
  d = add(d, t1);
  h = add(t1, add(s0, maj));
}

// Eight rounds; wk(i) gives W[t] + K[t] of round i of the eight. After eight rounds every
// name is back in place.
template <class WK>
CFS_X16_INLINE void rounds8(__m512i s[8], WK&& wk) {
  round(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], wk(0));
  round(s[7], s[0], s[1], s[2], s[3], s[4], s[5], s[6], wk(1));
  round(s[6], s[7], s[0], s[1], s[2], s[3], s[4], s[5], wk(2));
  round(s[5], s[6], s[7], s[0], s[1], s[2], s[3], s[4], wk(3));
  round(s[4], s[5], s[6], s[7], s[0], s[1], s[2], s[3], wk(4));
  round(s[3], s[4], s[5], s[6], s[7], s[0], s[1], s[2], wk(5));
  round(s[2], s[3], s[4], s[5], s[6], s[7], s[0], s[1], wk(6));
  round(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[0], wk(7));
}

// r[l] holds the 16 words of message l; afterwards r[t] holds word t of the 16 messages.
// Four stages of in-lane unpacks and 128-bit shuffles (64 instructions). Gathers measured the
// same speed here, but their cost depends on microcode (the GDS mitigation makes them slow),
// and loads + shuffles do not.
CFS_X16_INLINE void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + j], in 128-bit lane k: word 4k + j of messages 4g .. 4g + 3.
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);  // lanes 0, 2 of each
    const __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);  // lanes 1, 3
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
    r[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
  }
}

// How far ahead of its loads each lane prefetches. Each lane walks its own message (a 4 KiB
// block when hashing leaves), and the hardware prefetchers neither cross a page boundary nor
// follow 16 new streams before a few misses each, so every group of 16 pages started with 16
// cold misses per line until they ramped up. Prefetching 8 blocks ahead, and in a group's last
// 8 blocks the first 512 bytes of the next group's messages, took 1-5 % of the CPU time (user
// time -0.02 to -0.035 s) off the 1 GiB digest from mapped windows on host B; within a message
// alone it gained nothing (bench/README.md, docs/design.md). 128 to 2048 bytes measured alike.
constexpr std::size_t kPrefetch = 512;

// 16 messages of `nblk` blocks from the plan's start state, then the plan's padding block.
// `after`, when not null, holds the 16 messages hashed after these (prefetched, not read).
CFS_X16_TARGET __attribute__((flatten)) void x16(const Sha256Plan& plan,
                                                 const std::uint8_t* const* msg, std::size_t nblk,
                                                 std::uint8_t* const* out,
                                                 const std::uint8_t* const* after) {
  const __m512i bswap =
      _mm512_broadcast_i32x4(_mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL));
  __m512i s[8];
  for (int i = 0; i < 8; ++i) s[i] = bcast(plan.state[i]);
  for (std::size_t b = 0; b < nblk; ++b) {
    __m512i save[8], w[16];
    for (int i = 0; i < 8; ++i) save[i] = s[i];
    // A prefetch never faults, so a message shorter than the distance is harmless too.
    if (const std::size_t ahead = 64 * b + kPrefetch; ahead < 64 * nblk) {
      for (int l = 0; l < 16; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(msg[l] + ahead), _MM_HINT_T0);
    } else if (after != nullptr) {
      for (int l = 0; l < 16; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(after[l] + (ahead - 64 * nblk)), _MM_HINT_T0);
    }
    for (int l = 0; l < 16; ++l) w[l] = _mm512_loadu_si512(msg[l] + 64 * b);
    transpose16(w);
    for (int t = 0; t < 16; ++t) w[t] = _mm512_shuffle_epi8(w[t], bswap);
    rounds8(s, [&](int i) CFS_X16_LAMBDA { return add(w[i], bcast(kSha256K[i])); });
    rounds8(s, [&](int i) CFS_X16_LAMBDA { return add(w[8 + i], bcast(kSha256K[8 + i])); });
    // Rounds 16..63: the schedule lives in the 16-entry window w (W[t] replaces W[t-16]).
    for (int q = 1; q < 4; ++q) {
      auto next = [&](int j) CFS_X16_LAMBDA {
        const __m512i w15 = w[(j + 1) % 16], w2 = w[(j + 14) % 16];
        const __m512i s0 =
            _mm512_ternarylogic_epi32(ror<7>(w15), ror<18>(w15), _mm512_srli_epi32(w15, 3), kXor3);
        const __m512i s1 =
            _mm512_ternarylogic_epi32(ror<17>(w2), ror<19>(w2), _mm512_srli_epi32(w2, 10), kXor3);
        w[j] = add(add(w[j], s0), add(w[(j + 9) % 16], s1));
        return add(w[j], bcast(kSha256K[16 * q + j]));
      };
      rounds8(s, [&](int i) CFS_X16_LAMBDA { return next(i); });
      rounds8(s, [&](int i) CFS_X16_LAMBDA { return next(8 + i); });
    }
    for (int i = 0; i < 8; ++i) s[i] = add(s[i], save[i]);
  }
  // The padding block: W + K precomputed, the same for every lane.
  __m512i save[8];
  for (int i = 0; i < 8; ++i) save[i] = s[i];
  for (int g = 0; g < 8; ++g)
    rounds8(s, [&](int i) CFS_X16_LAMBDA { return bcast(plan.pad_wk[8 * g + i]); });
  alignas(64) std::uint32_t st[8][16];
  for (int i = 0; i < 8; ++i)
    _mm512_store_si512(st[i], _mm512_shuffle_epi8(add(s[i], save[i]), bswap));
  for (int l = 0; l < 16; ++l)
    for (int i = 0; i < 8; ++i) std::memcpy(out[l] + 4 * i, &st[i][l], 4);
}

}  // namespace

void sha256_x16_gather(const Sha256Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                       std::size_t count, std::uint8_t* const* outs, bool sha_ni,
                       std::size_t ahead) {
  const std::size_t nblk = len / 64;
  std::size_t i = 0;
  for (; count - i >= 16; i += 16)
    x16(plan, msgs + i, nblk, outs + i, count + ahead - i >= 32 ? msgs + i + 16 : nullptr);
  const std::size_t rest = count - i;
  if (rest == 0) return;
  // A pass of 16 lanes costs as much as 9 messages on sha-ni-8 (15.6 us for 4 KiB messages
  // on host B), so fewer than 10 go to SHA-NI and more fill a pass whose spare lanes repeat the
  // last message into a scratch digest.
  if (sha_ni && rest < 10) {
    sha256_ni_gather(plan, msgs + i, len, rest, outs + i, 8);
    return;
  }
  const std::uint8_t* m[16];
  std::uint8_t* o[16];
  std::uint8_t spare[32];
  for (std::size_t l = 0; l < 16; ++l) {
    m[l] = msgs[i + (l < rest ? l : rest - 1)];
    o[l] = l < rest ? outs[i + l] : spare;
  }
  x16(plan, m, nblk, o, nullptr);
}

#else  // !CFS_HAVE_X86_64

bool cpu_has_avx512_sha() noexcept { return false; }
void sha256_x16_gather(const Sha256Plan&, const std::uint8_t* const*, std::size_t, std::size_t,
                       std::uint8_t* const*, bool, std::size_t) {}

#endif

}  // namespace cfs::verity::detail
