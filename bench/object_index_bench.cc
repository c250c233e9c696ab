// SPDX-License-Identifier: Apache-2.0
// Parsing a lazy image's object index (ocirepo::parse_object_index): a lazy mount does it once
// before it serves, so its time is on the mount's critical path (docs/design.md, "The object
// index is read with simdjson's On Demand API"). The document is the file CFS_OBJECT_INDEX names
// (e.g. a lazy repository's cfs-lazy/<hex>.index), or else one shaped like the Debian image's:
// 5,189 SHA-512 objects in three layers, as the encoder writes it.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "cfs/ocirepo/object_index.h"

namespace {

std::string debian_like() {
  using namespace cfs::ocirepo;
  ObjectIndex ix;
  ix.algorithm = cfs::verity::HashAlg::kSha512;
  ix.image = cfs::verity::Digest::zero(ix.algorithm);
  for (char c : {'a', 'b', 'c'}) {
    auto d = *cfs::oci::ContentDigest::parse("sha256:" + std::string(64, c));
    ix.layers.push_back({d, d, 1ull << 30, "application/vnd.oci.image.layer.v1.tar+zstd", true});
  }
  std::uint64_t x = 0x9e3779b97f4a7c15;
  for (std::uint32_t i = 0; i < 5189; ++i) {
    ObjectLocation o;
    o.digest = cfs::verity::Digest::zero(ix.algorithm);
    for (std::size_t b = 0; b < o.digest.size; ++b) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift: digests spread like real ones
      o.digest.bytes[b] = static_cast<std::uint8_t>(x);
    }
    o.layer = i % 3;
    o.offset = 512ull * i;
    o.length = 1000 + x % 100000;
    o.size = o.length * 3;
    o.compression = ObjectCompression::kZstd;
    ix.objects.push_back(o);
  }
  sort_and_dedup(ix.objects);
  return encode_object_index(ix);
}

std::string document() {
  const char* path = std::getenv("CFS_OBJECT_INDEX");
  if (!path) return debian_like();
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void BM_ParseObjectIndex(benchmark::State& state) {
  static const std::string text = document();
  std::size_t objects = 0;
  for (auto _ : state) {
    auto ix = cfs::ocirepo::parse_object_index(text, "index");
    if (!ix) {
      state.SkipWithError(ix.error().message().c_str());
      return;
    }
    objects = ix->objects.size();
    benchmark::DoNotOptimize(ix->objects.data());
  }
  state.counters["objects"] = static_cast<double>(objects);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}
BENCHMARK(BM_ParseObjectIndex)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
