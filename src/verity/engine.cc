// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/engine.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "cfs/util/cpu.h"
#include "verity/sha256_internal.h"

namespace cfs::verity {
namespace {

// Measured on AMD Zen 4 (bench/README.md, `cfs digest --threads=1` on 2 GiB in the page cache,
// best of 5): 1 lane 1.25 s, 2 lanes 0.91, 4 lanes 0.79, 6 lanes 0.76, 8 lanes 0.74. One
// sha256rnds2 chain waits ~4 cycles per instruction while the unit accepts one every ~2, so
// more independent chains keep it busy; past 4 lanes the states spill to the stack (SHA
// instructions only address xmm0-15), but the reloads are cheaper than the stalls they hide.
constexpr Engine kDefaultShaNi = Engine::kShaNi8;

// The 16-lane AVX-512 kernel beat sha-ni-8 by 60 % per core on Intel Sapphire Rapids, whose
// SHA unit takes a sha256rnds2 only every ~2 cycles (bench/README.md). It is chosen by vendor,
// not by timing it at start-up: AMD Zen 4 splits 512-bit operations over its 256-bit units and
// its SHA-NI is fast (sha-ni-8 5.2 GB/s on two threads), and a start-up calibration would add
// its cost to every process that hashes and could pick differently from run to run on a busy
// machine. Only where SHA-NI is present too (Ice Lake server and later), as measured: without
// it (Skylake-SP, Cascade Lake) leftovers of fewer than 16 messages would each cost a whole
// 16-lane pass, a single small file's digest more than OpenSSL's, and nothing was measured on
// such a CPU; CFS_VERITY_ENGINE=avx512-16 still forces it there.
bool avx512_available() {
  static const bool has = detail::cpu_has_avx512_sha();
  return has;
}

bool prefer_avx512() {
  static const bool yes = avx512_available() && sha_ni_available() && cpu_is_intel();
  return yes;
}

std::atomic<Engine>& forced() {
  static std::atomic<Engine> e{Engine::kAuto};
  return e;
}

Engine from_env() {
  const char* v = std::getenv("CFS_VERITY_ENGINE");
  if (v == nullptr) return Engine::kAuto;
  const std::string_view s(v);
  for (Engine e : kAllEngines)
    if (s == engine_name(e)) return e;
  return Engine::kAuto;
}

}  // namespace

bool sha_ni_available() noexcept {
  static const bool has = detail::cpu_has_sha_ni();
  return has;
}

bool engine_available(Engine e) noexcept {
  switch (e) {
    case Engine::kAuto:
    case Engine::kPortable:
      return true;
    case Engine::kAvx512x16:
      return avx512_available();
    default:
      return sha_ni_available();
  }
}

bool set_engine(Engine e) noexcept {
  if (!engine_available(e)) return false;
  forced().store(e, std::memory_order_relaxed);
  return true;
}

namespace {

// What set_engine() or CFS_VERITY_ENGINE asked for (kAuto when neither did).
Engine requested() noexcept {
  Engine e = forced().load(std::memory_order_relaxed);
  if (e == Engine::kAuto) {
    static const Engine env = from_env();
    e = env;
  }
  return e;
}

}  // namespace

bool sha512_x8_active() noexcept {
  if (!avx512_available()) return false;
  // An engine the CPU lacks falls back to the default, as in active_engine().
  const Engine e = requested();
  return e == Engine::kAuto || e == Engine::kAvx512x16 || !engine_available(e);
}

Engine active_engine() noexcept {
  Engine e = requested();
  // An engine named in CFS_VERITY_ENGINE that this CPU lacks falls back to the default.
  if (e == Engine::kAuto || !engine_available(e))
    e = prefer_avx512()      ? Engine::kAvx512x16
        : sha_ni_available() ? kDefaultShaNi
                             : Engine::kPortable;
  return e;
}

std::string_view engine_name(Engine e) noexcept {
  switch (e) {
    case Engine::kAuto:
      return "auto";
    case Engine::kPortable:
      return "portable";
    case Engine::kShaNi1:
      return "sha-ni-1";
    case Engine::kShaNi2:
      return "sha-ni-2";
    case Engine::kShaNi3:
      return "sha-ni-3";
    case Engine::kShaNi4:
      return "sha-ni-4";
    case Engine::kShaNi6:
      return "sha-ni-6";
    case Engine::kShaNi8:
      return "sha-ni-8";
    case Engine::kAvx512x16:
      return "avx512-16";
  }
  return "?";
}

}  // namespace cfs::verity

namespace cfs::verity {

unsigned engine_lanes(Engine e) noexcept {
  switch (e) {
    case Engine::kShaNi2:
      return 2;
    case Engine::kShaNi3:
      return 3;
    case Engine::kShaNi4:
      return 4;
    case Engine::kShaNi6:
      return 6;
    case Engine::kShaNi8:
      return 8;
    case Engine::kAvx512x16:
      return 16;
    default:
      return 1;
  }
}

}  // namespace cfs::verity
