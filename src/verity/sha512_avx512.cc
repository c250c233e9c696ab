// SPDX-License-Identifier: Apache-2.0
// SHA-512 of 8 equal-length messages at once, one message per 64-bit element of a zmm register
// (AVX-512F/BW/VL, function-level target attribute, run only after glibc or cpuid and xgetbv say
// the CPU and the OS support it), the 64-bit counterpart of sha256_avx512.cc: x86 has no SHA-512
// instructions before Arrow Lake, and OpenSSL hashes one message at a time (~0.8 GB/s per core on
// host B), while here a round is ~25 vector instructions for 8 blocks (rotates with vprorq,
// Ch/Maj/three-way XOR with one vpternlogq each).
#include <cstring>

#include "verity/sha512_internal.h"

#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
// g++ 12's AVX-512 headers pass _mm512_undefined_epi32() (a self-initialised variable) as the
// merge source of unmasked operations, which -Wuninitialized reports wherever they inline.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#define CFS_HAVE_X86_64 1
#else
#define CFS_HAVE_X86_64 0
#endif

namespace cfs::verity::detail {

#if CFS_HAVE_X86_64

namespace {

#define CFS_X8_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))
#define CFS_X8_INLINE CFS_X8_TARGET __attribute__((always_inline)) inline
#define CFS_X8_LAMBDA CFS_X8_TARGET __attribute__((always_inline))

// vpternlogq truth tables (operands a, b, c = 0xF0, 0xCC, 0xAA): a^b^c, (a&b)^(~a&c), majority.
constexpr int kXor3 = 0x96, kCh = 0xCA, kMaj = 0xE8;

template <int N>  // a template: clang checks the count is a constant before inlining
CFS_X8_INLINE __m512i ror(__m512i x) {
  return _mm512_ror_epi64(x, N);
}
template <int N>
CFS_X8_INLINE __m512i shr(__m512i x) {
  return _mm512_srli_epi64(x, N);
}
CFS_X8_INLINE __m512i add(__m512i x, __m512i y) { return _mm512_add_epi64(x, y); }
CFS_X8_INLINE __m512i bcast(std::uint64_t k) {
  return _mm512_set1_epi64(static_cast<long long>(k));  // an embedded {1to8} operand
}

// One round on 8 lanes: d += T1, h = T1 + T2 (the caller rotates the names, not the values).
CFS_X8_INLINE void round(__m512i a, __m512i b, __m512i c, __m512i& d, __m512i e, __m512i f,
                         __m512i g, __m512i& h, __m512i wk) {
  const __m512i s1 = _mm512_ternarylogic_epi64(ror<14>(e), ror<18>(e), ror<41>(e), kXor3);
  const __m512i ch = _mm512_ternarylogic_epi64(e, f, g, kCh);
  const __m512i t1 = add(add(h, wk), add(s1, ch));
  const __m512i s0 = _mm512_ternarylogic_epi64(ror<28>(a), ror<34>(a), ror<39>(a), kXor3);
  const __m512i maj = _mm512_ternarylogic_epi64(a, b, c, kMaj);
  d = add(d, t1);
  h = add(t1, add(s0, maj));
}

// Eight rounds; wk(i) gives W[t] + K[t] of round i of the eight. After eight rounds every
// name is back in place.
template <class WK>
CFS_X8_INLINE void rounds8(__m512i s[8], WK&& wk) {
  round(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], wk(0));
  round(s[7], s[0], s[1], s[2], s[3], s[4], s[5], s[6], wk(1));
  round(s[6], s[7], s[0], s[1], s[2], s[3], s[4], s[5], wk(2));
  round(s[5], s[6], s[7], s[0], s[1], s[2], s[3], s[4], wk(3));
  round(s[4], s[5], s[6], s[7], s[0], s[1], s[2], s[3], wk(4));
  round(s[3], s[4], s[5], s[6], s[7], s[0], s[1], s[2], wk(5));
  round(s[2], s[3], s[4], s[5], s[6], s[7], s[0], s[1], wk(6));
  round(s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[0], wk(7));
}

// r[l] holds 8 words of message l; afterwards r[t] holds word t of the 8 messages. In-lane
// unpacks, then two stages of 128-bit shuffles (24 instructions), loads + shuffles rather than
// gathers for the reason sha256_avx512.cc gives.
CFS_X8_INLINE void transpose8(__m512i r[8]) {
  // t[2i + j], in 128-bit lane k: word 2k + j of messages 2i, 2i + 1.
  __m512i t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);
  }
  for (int j = 0; j < 2; ++j) {
    const __m512i u0 = _mm512_shuffle_i64x2(t[j], t[2 + j], 0x88);  // lanes 0, 2 of each
    const __m512i u1 = _mm512_shuffle_i64x2(t[j], t[2 + j], 0xDD);  // lanes 1, 3
    const __m512i v0 = _mm512_shuffle_i64x2(t[4 + j], t[6 + j], 0x88);
    const __m512i v1 = _mm512_shuffle_i64x2(t[4 + j], t[6 + j], 0xDD);
    r[j] = _mm512_shuffle_i64x2(u0, v0, 0x88);      // lane 0 of each: word j
    r[4 + j] = _mm512_shuffle_i64x2(u0, v0, 0xDD);  // lane 2: word 4 + j
    r[2 + j] = _mm512_shuffle_i64x2(u1, v1, 0x88);  // lane 1: word 2 + j
    r[6 + j] = _mm512_shuffle_i64x2(u1, v1, 0xDD);  // lane 3: word 6 + j
  }
}

// 8 messages of `nblk` 128-byte blocks from the plan's start state, then the plan's padding block.
CFS_X8_TARGET __attribute__((flatten)) void x8(const Sha512Plan& plan,
                                               const std::uint8_t* const* msg, std::size_t nblk,
                                               std::uint8_t* const* out) {
  const __m512i bswap =
      _mm512_broadcast_i32x4(_mm_set_epi64x(0x08090a0b0c0d0e0fLL, 0x0001020304050607LL));
  __m512i s[8];
  for (int i = 0; i < 8; ++i) s[i] = bcast(plan.state[i]);
  for (std::size_t b = 0; b < nblk; ++b) {
    __m512i save[8], w[16];
    for (int i = 0; i < 8; ++i) save[i] = s[i];
    for (int l = 0; l < 8; ++l) {
      w[l] = _mm512_loadu_si512(msg[l] + 128 * b);
      w[8 + l] = _mm512_loadu_si512(msg[l] + 128 * b + 64);
    }
    transpose8(w);
    transpose8(w + 8);
    for (int t = 0; t < 16; ++t) w[t] = _mm512_shuffle_epi8(w[t], bswap);
    rounds8(s, [&](int i) CFS_X8_LAMBDA { return add(w[i], bcast(kSha512K[i])); });
    rounds8(s, [&](int i) CFS_X8_LAMBDA { return add(w[8 + i], bcast(kSha512K[8 + i])); });
    // Rounds 16..79: the schedule lives in the 16-entry window w (W[t] replaces W[t-16]).
    for (int q = 1; q < 5; ++q) {
      auto next = [&](int j) CFS_X8_LAMBDA {
        const __m512i w15 = w[(j + 1) % 16], w2 = w[(j + 14) % 16];
        const __m512i s0 = _mm512_ternarylogic_epi64(ror<1>(w15), ror<8>(w15), shr<7>(w15), kXor3);
        const __m512i s1 = _mm512_ternarylogic_epi64(ror<19>(w2), ror<61>(w2), shr<6>(w2), kXor3);
        w[j] = add(add(w[j], s0), add(w[(j + 9) % 16], s1));
        return add(w[j], bcast(kSha512K[16 * q + j]));
      };
      rounds8(s, [&](int i) CFS_X8_LAMBDA { return next(i); });
      rounds8(s, [&](int i) CFS_X8_LAMBDA { return next(8 + i); });
    }
    for (int i = 0; i < 8; ++i) s[i] = add(s[i], save[i]);
  }
  // The padding block: W + K precomputed, the same for every lane.
  __m512i save[8];
  for (int i = 0; i < 8; ++i) save[i] = s[i];
  for (int g = 0; g < 10; ++g)
    rounds8(s, [&](int i) CFS_X8_LAMBDA { return bcast(plan.pad_wk[8 * g + i]); });
  alignas(64) std::uint64_t st[8][8];
  for (int i = 0; i < 8; ++i)
    _mm512_store_si512(st[i], _mm512_shuffle_epi8(add(s[i], save[i]), bswap));
  for (int l = 0; l < 8; ++l)
    for (int i = 0; i < 8; ++i) std::memcpy(out[l] + 8 * i, &st[i][l], 8);
}

// One pass over the last `rest` (1..7) messages; spare lanes repeat the last message into a
// scratch digest.
void x8_partial(const Sha512Plan& plan, const std::uint8_t* const* msgs, std::size_t nblk,
                std::size_t rest, std::uint8_t* const* outs) {
  const std::uint8_t* m[8];
  std::uint8_t* o[8];
  std::uint8_t spare[64];
  for (std::size_t l = 0; l < 8; ++l) {
    m[l] = msgs[l < rest ? l : rest - 1];
    o[l] = l < rest ? outs[l] : spare;
  }
  x8(plan, m, nblk, o);
}

}  // namespace

std::size_t sha512_x8_gather(const Sha512Plan& plan, const std::uint8_t* const* msgs,
                             std::size_t len, std::size_t count, std::uint8_t* const* outs) {
  const std::size_t nblk = len / 128;
  std::size_t i = 0;
  for (; count - i >= 8; i += 8) x8(plan, msgs + i, nblk, outs + i);
  const std::size_t rest = count - i;
  // A pass of 8 lanes costs as much as ~3 messages through OpenSSL (bench/README.md), so
  // fewer are left to the caller.
  constexpr std::size_t kMinPartial = 3;
  if (rest < kMinPartial) return i;
  x8_partial(plan, msgs + i, nblk, rest, outs + i);
  return count;
}

void sha512_x8_gather_all(const Sha512Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                          std::size_t count, std::uint8_t* const* outs) {
  const std::size_t nblk = len / 128;
  std::size_t i = 0;
  for (; count - i >= 8; i += 8) x8(plan, msgs + i, nblk, outs + i);
  if (count > i) x8_partial(plan, msgs + i, nblk, count - i, outs + i);
}

#else  // !CFS_HAVE_X86_64

std::size_t sha512_x8_gather(const Sha512Plan&, const std::uint8_t* const*, std::size_t,
                             std::size_t, std::uint8_t* const*) {
  return 0;
}
void sha512_x8_gather_all(const Sha512Plan&, const std::uint8_t* const*, std::size_t, std::size_t,
                          std::uint8_t* const*) {}

#endif

}  // namespace cfs::verity::detail
