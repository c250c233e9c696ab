// SPDX-License-Identifier: Apache-2.0
// Which SHA-256 implementation hashes Merkle blocks. The default (kAuto) picks SHA-NI with the
// fastest measured interleave when the CPU has it, else OpenSSL. Tests force each engine to
// compare them; benchmarks may set CFS_VERITY_ENGINE=portable|sha-ni-1|sha-ni-2|sha-ni-3|sha-ni-4.
// SHA-512 always uses OpenSSL. Thread-safety: the selection is a process-wide atomic; set it
// before hashing starts (a Hasher keeps the engine it was created with).
#pragma once

#include <string_view>

namespace cfs::verity {

enum class Engine { kAuto, kPortable, kShaNi1, kShaNi2, kShaNi3, kShaNi4 };

/// Forces an engine (kAuto restores the default). Returns false (and changes nothing) when the
/// CPU cannot run it.
bool set_engine(Engine e) noexcept;
/// The engine in effect for SHA-256, never kAuto.
Engine active_engine() noexcept;
/// True when the CPU has SHA-NI (and SSE4.1).
bool sha_ni_available() noexcept;
/// "portable", "sha-ni-1" .. "sha-ni-4" ("auto" for kAuto).
std::string_view engine_name(Engine e) noexcept;

}  // namespace cfs::verity
