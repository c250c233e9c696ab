// SPDX-License-Identifier: Apache-2.0
// SHA-256 building blocks for fs-verity: every hashed message has the same length (one Merkle
// block, after an optional one-block salt prefix), so the salted start state and the message
// schedule of the final padding block are computed once per parameter set (Plan), and the
// SHA-NI kernel hashes 1..8 independent messages interleaved (AMD Zen runs several sha256rnds2
// at once, so interleaving, not a faster single stream, is what raises throughput); the
// AVX-512 kernel hashes 16, one per vector element (faster than SHA-NI on Intel).
// Thread-safety: a Plan is immutable after make_plan(); all functions are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cfs/verity/engine.h"

namespace cfs::verity::detail {

/// SHA-256 round constants (FIPS 180-4 §4.2.2); 64-byte aligned for the vector kernels' loads.
alignas(64) inline constexpr std::uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

struct Sha256Plan {
  std::uint32_t state[8];                // state after the salt block (or the IV)
  alignas(16) std::uint32_t pad_wk[64];  // W[t] + K[t] of the constant final padding block
  std::uint64_t prefix_len = 0;          // bytes already absorbed into `state`
};

/// Plan for messages of `len` bytes (a multiple of 64) preceded by `prefix` (0 or 64 bytes).
Sha256Plan make_sha256_plan(const std::uint8_t* prefix, std::size_t prefix_len, std::size_t len);

/// Portable scalar compression (used for plans and as a cross-check in tests).
void sha256_compress_scalar(std::uint32_t state[8], const std::uint8_t* blocks, std::size_t n);

/// True when the CPU has SHA-NI, SSSE3 and SSE4.1 (as glibc read them at start-up, else cpuid).
bool cpu_has_sha_ni() noexcept;

/// True when the CPU has AVX-512 F, BW and VL and the OS saves the ZMM and opmask state
/// (glibc's start-up reading of cpuid and XCR0, else cpuid and xgetbv).
bool cpu_has_avx512_sha() noexcept;

/// Hashes `count` messages of plan-length `len` bytes, message i at in + i * len, into 32-byte
/// digests at out + i * 32, with engine `e` (not kPortable or kAuto; the CPU must support it).
void sha256_many(const Sha256Plan& plan, const std::uint8_t* in, std::size_t len, std::size_t count,
                 std::uint8_t* out, Engine e);

/// Same as sha256_many() but the messages and digests are at arbitrary addresses.
void sha256_gather(const Sha256Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                   std::size_t count, std::uint8_t* const* outs, Engine e, std::size_t ahead = 0);

/// The SHA-NI kernels, interleaving `lanes` (1..8) messages at a time. Call only when
/// cpu_has_sha_ni().
void sha256_ni_gather(const Sha256Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                      std::size_t count, std::uint8_t* const* outs, unsigned lanes);

/// The AVX-512 kernel, 16 messages at a time; a remainder of fewer than 10 goes to sha-ni-8
/// when `sha_ni`, else through one more 16-lane pass. Call only when cpu_has_avx512_sha().
/// `msgs[count .. count + ahead)` may point at the messages the caller hashes next (`len`
/// bytes each, not hashed here): their first lines are prefetched while the last group runs.
void sha256_x16_gather(const Sha256Plan& plan, const std::uint8_t* const* msgs, std::size_t len,
                       std::size_t count, std::uint8_t* const* outs, bool sha_ni,
                       std::size_t ahead = 0);

}  // namespace cfs::verity::detail
