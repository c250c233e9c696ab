// SPDX-License-Identifier: Apache-2.0
// Memory and time per node of the writable FUSE mount's node table (vfs::NodeTable): what one
// name the kernel holds costs the server (docs/fuse.md "Memory"). Heap bytes come from glibc's
// own count (mallinfo2: bytes in use), measured around filling a table shaped like /usr: 200
// directories of 250 names each, names of 20 bytes (longer than the 15 bytes std::string keeps
// inline). Then every node is forgotten and the bytes still held are reported (0 expected).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cfs/vfs/node_table.h"

namespace {

constexpr int kDirs = 200;
constexpr int kPerDir = 250;

std::string name_of(int i) { return "file-name-" + std::to_string(1000000000 + i); }

void BM_NodeTableFill(benchmark::State& state) {
  double per_node = 0, left = 0;
  for (auto _ : state) {
    const std::size_t before = mallinfo2().uordblks;
    auto* table = new cfs::vfs::NodeTable();
    std::vector<cfs::vfs::MergedNode> nodes;
    nodes.reserve(kDirs * (kPerDir + 1));
    for (int d = 0; d < kDirs; ++d) {
      const auto dir = table->lookup(cfs::vfs::kMergedRoot, name_of(d));
      nodes.push_back(dir);
      for (int f = 0; f < kPerDir; ++f) nodes.push_back(table->lookup(dir, name_of(f)));
    }
    const std::size_t reserved = nodes.capacity() * sizeof(cfs::vfs::MergedNode);
    const std::size_t filled = mallinfo2().uordblks;
    per_node = static_cast<double>(filled - before - reserved) / static_cast<double>(nodes.size());
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) table->forget(*it, 1);
    benchmark::DoNotOptimize(table->size());
    left = static_cast<double>(table->size());
    delete table;
  }
  state.counters["heap_bytes_per_node"] = per_node;
  state.counters["nodes_left_after_forget"] = left;
  state.SetItemsProcessed(state.iterations() * kDirs * (kPerDir + 1));
}
BENCHMARK(BM_NodeTableFill)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
