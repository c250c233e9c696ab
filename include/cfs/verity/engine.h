// SPDX-License-Identifier: Apache-2.0
// Which SHA-256 implementation hashes Merkle blocks. The default (kAuto) picks the 16-lane
// AVX-512 kernel on Intel CPUs that have AVX-512 (and an OS that saves its state) and SHA-NI
// (for leftovers of fewer than 16 messages), else SHA-NI with the fastest measured interleave
// when the CPU has it, else OpenSSL. Tests force each engine to compare them; benchmarks may
// set CFS_VERITY_ENGINE=portable|sha-ni-1|…|sha-ni-8|avx512-16.
// SHA-512 uses its 8-lane AVX-512 kernel wherever the CPU has AVX-512, AMD's too (there is no
// SHA-512 instruction to prefer, unlike SHA-NI for SHA-256), unless the engine is forced to
// portable or sha-ni-N (CFS_VERITY_ENGINE or set_engine), else OpenSSL. Thread-safety: the
// selection is a process-wide atomic; set it before hashing starts (a Hasher keeps the engine it
// was created with).
#pragma once

#include <array>
#include <string_view>

namespace cfs::verity {

enum class Engine {
  kAuto,
  kPortable,
  kShaNi1,
  kShaNi2,
  kShaNi3,
  kShaNi4,
  kShaNi6,
  kShaNi8,
  kAvx512x16,
};

/// Every concrete engine, for tests and benchmarks that compare them (check
/// engine_available() before using one).
inline constexpr std::array kAllEngines = {Engine::kPortable, Engine::kShaNi1,   Engine::kShaNi2,
                                           Engine::kShaNi3,   Engine::kShaNi4,   Engine::kShaNi6,
                                           Engine::kShaNi8,   Engine::kAvx512x16};

/// Forces an engine (kAuto restores the default). Returns false (and changes nothing) when the
/// CPU cannot run it.
bool set_engine(Engine e) noexcept;
/// True when this CPU (and OS) can run `e`; always true for kAuto and kPortable.
bool engine_available(Engine e) noexcept;
/// The engine in effect for SHA-256, never kAuto.
Engine active_engine() noexcept;
/// True when the CPU has SHA-NI (and SSE4.1).
bool sha_ni_available() noexcept;
/// True when SHA-512 Merkle blocks go through the 8-lane AVX-512 kernel: the CPU (and OS) can run
/// it and no engine other than avx512-16 is forced.
bool sha512_x8_active() noexcept;
/// Number of messages the engine hashes interleaved (1 for portable, 16 for avx512-16).
unsigned engine_lanes(Engine e) noexcept;
/// "portable", "sha-ni-1" .. "sha-ni-8", "avx512-16" ("auto" for kAuto).
std::string_view engine_name(Engine e) noexcept;

}  // namespace cfs::verity
