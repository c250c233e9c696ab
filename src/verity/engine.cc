// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/engine.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "verity/sha256_internal.h"

namespace cfs::verity {
namespace {

// Measured on AMD Zen 4 (bench/README.md, CPU time of `cfs digest --threads=1` on 2 GiB):
// 2 lanes 0.65 s, 4 lanes 0.87 s, 3 lanes 1.0 s, 1 lane 1.05 s. With g++ 12 the 3- and 4-lane
// kernels spill xmm registers (SHA instructions can only use xmm0-15), which eats their gain.
constexpr Engine kDefaultShaNi = Engine::kShaNi2;

std::atomic<Engine>& forced() {
  static std::atomic<Engine> e{Engine::kAuto};
  return e;
}

Engine from_env() {
  const char* v = std::getenv("CFS_VERITY_ENGINE");
  if (v == nullptr) return Engine::kAuto;
  const std::string_view s(v);
  for (Engine e :
       {Engine::kPortable, Engine::kShaNi1, Engine::kShaNi2, Engine::kShaNi3, Engine::kShaNi4})
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
  }
  return "?";
}

}  // namespace cfs::verity
