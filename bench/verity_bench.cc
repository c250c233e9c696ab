// SPDX-License-Identifier: Apache-2.0
// Hashing throughput of each SHA-256 engine on in-memory data (no I/O): Merkle leaves of 4 KiB
// blocks, whole trees on 1 and 2 threads, and the per-file cost of a 4 KiB file; SHA-512 trees
// with the default engine (avx512-16 runs SHA-512's 8-lane kernel) and the portable one (OpenSSL).
// The first rows (engine 0) are the default engine of this host, labelled with the engine it
// resolves to. Run: build/bench/verity_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "cfs/verity/digest.h"
#include "cfs/verity/engine.h"
#include "cfs/verity/merkle.h"

namespace {

using cfs::verity::Engine;

const std::vector<std::byte>& data(std::size_t n) {
  static std::vector<std::byte> buf;
  if (buf.size() < n) {
    std::mt19937_64 rng(1);
    buf.resize(n);
    for (auto& b : buf) b = static_cast<std::byte>(rng());
  }
  return buf;
}

// "auto (avx512-16)" for the default, so a run says which engine the tools use on this host.
std::string label(Engine e) {
  const std::string name(cfs::verity::engine_name(cfs::verity::active_engine()));
  return e == Engine::kAuto ? "auto (" + name + ")" : name;
}

void BM_Tree(benchmark::State& state) {
  const auto engine = static_cast<Engine>(state.range(0));
  const auto threads = static_cast<unsigned>(state.range(1));
  const std::size_t size = static_cast<std::size_t>(state.range(2));
  if (!cfs::verity::set_engine(engine)) {
    state.SkipWithError("engine not supported on this CPU");
    return;
  }
  const auto& buf = data(size);
  cfs::verity::Params p;
  if (state.range(3) == 512) p.alg = cfs::verity::HashAlg::kSha512;
  for (auto _ : state) {
    auto t = cfs::verity::build_merkle_tree(std::span(buf.data(), size), p, threads);
    benchmark::DoNotOptimize(t);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
  state.SetLabel(label(engine) + (state.range(3) == 512 ? " sha512" : " sha256"));
  cfs::verity::set_engine(Engine::kAuto);
}

void BM_SmallFileDigest(benchmark::State& state) {
  const auto engine = static_cast<Engine>(state.range(0));
  if (!cfs::verity::set_engine(engine)) {
    state.SkipWithError("engine not supported on this CPU");
    return;
  }
  const auto& buf = data(4096);
  cfs::verity::Params p;
  for (auto _ : state) benchmark::DoNotOptimize(cfs::verity::digest_bytes({buf.data(), 4096}, p));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(label(engine));
  cfs::verity::set_engine(Engine::kAuto);
}

void tree_args(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) b->Args({static_cast<int>(Engine::kAuto), threads, 64 << 20, 256});
  for (Engine e : cfs::verity::kAllEngines)
    for (int threads : {1, 2}) b->Args({static_cast<int>(e), threads, 64 << 20, 256});
  for (Engine e : {Engine::kAuto, Engine::kPortable})
    for (int threads : {1, 2}) b->Args({static_cast<int>(e), threads, 64 << 20, 512});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_Tree)->Apply(tree_args);
BENCHMARK(BM_SmallFileDigest)->Apply([](benchmark::internal::Benchmark* b) {
  for (Engine e : cfs::verity::kAllEngines) b->Arg(static_cast<int>(e));
});

}  // namespace

BENCHMARK_MAIN();
