// SPDX-License-Identifier: Apache-2.0
// Fuzzes the loader graph parser (registry/loader_graph.h) with untrusted documents: a lazy
// mount reads one from a registry (the lazy artifact's config). The first byte picks the index's
// object count the document must match (so that the corpus reaches past the "objects" check).
// Errors are expected; a graph that parses must encode to a document that parses to the same
// encoding, every position it holds must be inside the index, and a closure of any object must
// stay inside the index, each object once, within its bound.
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "cfs/registry/loader_graph.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::registry;
  if (size == 0) return 0;
  const std::size_t objects = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto g = parse_loader_graph(text, objects, "fuzz");
  if (!g) return 0;
  const std::string json = encode_loader_graph(*g);
  auto again = parse_loader_graph(json, objects, "again");
  FUZZ_CHECK(again.has_value(), "an encoded graph does not parse");
  FUZZ_CHECK(encode_loader_graph(*again) == json, "encoding is not stable");
  for (const auto& [from, to] : g->loads) {
    FUZZ_CHECK(from < objects, "an object outside the index");
    FUZZ_CHECK(to.size() <= kMaxObjectLoads, "more loads than allowed");
    for (auto t : to) FUZZ_CHECK(t < objects && t != from, "a load outside the index or itself");
    FUZZ_CHECK(g->of(from).size() == to.size(), "an object's loads are not found");
  }
  for (std::size_t start = 0; start < objects; ++start) {
    const auto c = loader_closure(*g, static_cast<std::uint32_t>(start), 16);
    FUZZ_CHECK(c.size() <= 16, "a closure past its bound");
    std::set<std::uint32_t> seen(c.begin(), c.end());
    FUZZ_CHECK(seen.size() == c.size() && !seen.count(static_cast<std::uint32_t>(start)),
               "a closure repeats an object or holds its start");
    for (auto k : c) FUZZ_CHECK(k < objects, "a closure outside the index");
  }
  return 0;
}
