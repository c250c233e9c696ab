// SPDX-License-Identifier: Apache-2.0
// Planning the ranges of one request of several ranges (registry::detail::plan_ranges, a lazy
// mount's merge_ranges): run for every loader closure and group of ELF hints, on the fetch
// thread. BM_OneRange: objects a tar header apart wanted in blob order, one range of 10, 100 and
// 1000 members (the case that was cubic in the members: session 16). BM_Closure: wanted in runs
// of the blob order from random places (as a closure's libraries are), ranges of a few members,
// the reorder bound cutting them (a closure is at most kMaxLoaderClosure objects, 128).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "cfs/registry/lazy.h"
#include "registry/range_plan.h"

namespace {

using cfs::registry::detail::RangeObject;

std::vector<RangeObject> closure_like(std::size_t n) {
  std::mt19937_64 rng(n);
  std::vector<RangeObject> blob;
  std::uint64_t at = 512;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t len = 500 + rng() % 20000;
    blob.push_back({at, len});
    at += len + 512 + (rng() % 8 == 0 ? 20000 : 0);  // a header, sometimes a file not wanted
  }
  std::vector<RangeObject> wanted;
  while (!blob.empty()) {
    const std::size_t from = rng() % blob.size();
    const std::size_t run = std::min<std::size_t>(blob.size() - from, 1 + rng() % 8);
    wanted.insert(wanted.end(), blob.begin() + static_cast<std::ptrdiff_t>(from),
                  blob.begin() + static_cast<std::ptrdiff_t>(from + run));
    blob.erase(blob.begin() + static_cast<std::ptrdiff_t>(from),
               blob.begin() + static_cast<std::ptrdiff_t>(from + run));
  }
  return wanted;
}

void plan(benchmark::State& state, const std::vector<RangeObject>& objects) {
  std::size_t ranges = 0;
  for (auto _ : state) {
    auto plan = cfs::registry::detail::plan_ranges(objects, 0, cfs::registry::kRangeGapBytes,
                                                   cfs::registry::kRangeReorderBytes);
    ranges = plan.size();
    benchmark::DoNotOptimize(plan);
  }
  state.counters["ranges"] = static_cast<double>(ranges);
}

void BM_OneRange(benchmark::State& state) {
  std::vector<RangeObject> objects;
  for (std::int64_t i = 0; i < state.range(0); ++i)
    objects.push_back({512 + 2048 * static_cast<std::uint64_t>(i), 1536});
  plan(state, objects);
}
BENCHMARK(BM_OneRange)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

void BM_Closure(benchmark::State& state) {
  plan(state, closure_like(static_cast<std::size_t>(state.range(0))));
}
BENCHMARK(BM_Closure)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
