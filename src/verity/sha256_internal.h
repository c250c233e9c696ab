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
