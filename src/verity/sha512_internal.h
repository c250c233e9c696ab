// SPDX-License-Identifier: Apache-2.0
// SHA-512 building blocks for fs-verity, the counterpart of sha256_internal.h: every hashed
// message has the same length (one Merkle block after an optional 128-byte salt prefix), so the
// salted start state and the schedule of the final padding block are computed once per parameter
// set (Sha512Plan), and the AVX-512 kernel hashes 8 messages at once, one per 64-bit element of a
// zmm register (OpenSSL's one-message-at-a-time SHA-512 is the fallback and the oracle).
// Thread-safety: a Plan is immutable after make_sha512_plan(); all functions are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cfs::verity::detail {

struct Sha512Plan {
  std::uint64_t state[8];                // state after the salt block (or the IV)
  alignas(64) std::uint64_t pad_wk[80];  // W[t] + K[t] of the constant final padding block
  std::uint64_t prefix_len = 0;          // bytes already absorbed into `state`
};

/// The 80 round constants.
extern const std::uint64_t kSha512K[80];

/// Plan for messages of `len` bytes (a multiple of 128) preceded by `prefix` (0 or 128 bytes).
Sha512Plan make_sha512_plan(const std::uint8_t* prefix, std::size_t prefix_len, std::size_t len);

/// Portable scalar compression of n 128-byte blocks (used for plans).
void sha512_compress_scalar(std::uint64_t state[8], const std::uint8_t* blocks, std::size_t n);

/// The AVX-512 kernel: hashes messages of plan-length `len` bytes, 8 at a time, into 64-byte
/// digests; a remainder goes through one more 8-lane pass only when it is large enough to beat
/// hashing it one by one. Returns how many it hashed (the first ones); the caller hashes the
/// rest. Call only when cpu_has_avx512_sha().
std::size_t sha512_x8_gather(const Sha512Plan& plan, const std::uint8_t* const* msgs,
                             std::size_t len, std::size_t count, std::uint8_t* const* outs);

/// Same kernel, every message (the leftovers too), for tests.
void sha512_x8_gather_all(const Sha512Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                          std::size_t count, std::uint8_t* const* outs);

}  // namespace cfs::verity::detail
