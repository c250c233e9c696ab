// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/engine.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "verity/sha256_internal.h"

namespace cfs::verity {
namespace {

// Measured on AMD Zen 4 (bench/README.md, `cfs digest --threads=1` on 2 GiB in the page cache,
// best of 5): 1 lane 1.25 s, 2 lanes 0.91, 4 lanes 0.79, 6 lanes 0.76, 8 lanes 0.74. One
// sha256rnds2 chain waits ~4 cycles per instruction while the unit accepts one every ~2, so
// more independent chains keep it busy; past 4 lanes the states spill to the stack (SHA
// instructions only address xmm0-15), but the reloads are cheaper than the stalls they hide.
constexpr Engine kDefaultShaNi = Engine::kShaNi8;

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

bool set_engine(Engine e) noexcept {
  if (e != Engine::kAuto && e != Engine::kPortable && !sha_ni_available()) return false;
  forced().store(e, std::memory_order_relaxed);
  return true;
}

Engine active_engine() noexcept {
  Engine e = forced().load(std::memory_order_relaxed);
  if (e == Engine::kAuto) {
    static const Engine env = from_env();
    e = env;
  }
  if (e == Engine::kAuto) e = kDefaultShaNi;
  if (e != Engine::kPortable && !sha_ni_available()) e = Engine::kPortable;
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
    default:
      return 1;
  }
}

}  // namespace cfs::verity
