// SPDX-License-Identifier: Apache-2.0
// The loader graph (see cfs/registry/loader_graph.h).
#include "cfs/registry/loader_graph.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "cfs/util/mapped_file.h"
#include "cfs/util/sys.h"
#include "registry/elf.h"
#include "registry/loader.h"

namespace cfs::registry {
namespace {

tl::unexpected<Error> bad(const std::string& what, const std::string& field,
                          const std::string& why) {
  return fail(Errc::kInvalidInput, fmt::format("{}: {}: {}", what, field, why));
}

}  // namespace

std::size_t LoaderGraph::edges() const noexcept {
  std::size_t n = 0;
  for (const auto& [from, to] : loads) n += to.size();
  return n;
}

std::span<const std::uint32_t> LoaderGraph::of(std::uint32_t object) const noexcept {
  auto it = std::lower_bound(loads.begin(), loads.end(), object,
                             [](const auto& e, std::uint32_t o) { return e.first < o; });
  if (it == loads.end() || it->first != object) return {};
  return it->second;
}

std::string encode_loader_graph(const LoaderGraph& graph) {
  // By hand, members in the documented order (nlohmann::json sorts them).
  std::string out = fmt::format(R"({{"mediaType":"{}","version":{},"objects":{},"loads":[)",
                                kLoaderGraphMediaType, kLoaderGraphVersion, graph.objects);
  for (std::size_t i = 0; i < graph.loads.size(); ++i) {
    if (i) out += ',';
    out += '[' + std::to_string(graph.loads[i].first);
    for (std::uint32_t t : graph.loads[i].second) out += ',' + std::to_string(t);
    out += ']';
  }
  out += "]}";
  return out;
}

Result<LoaderGraph> parse_loader_graph(std::string_view json, std::size_t index_objects,
                                       const std::string& what) {
  if (json.size() > kMaxLoaderGraphSize)
    return bad(what, "document",
               fmt::format("{} bytes, more than the {} allowed", json.size(), kMaxLoaderGraphSize));
  // nlohmann::json keeps the last of repeated keys: the callback sees each key of the document
  // object (depth 1) and remembers a repeat.
  std::set<std::string> keys;
  std::string repeated;
  auto cb = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
        !keys.insert(parsed.get<std::string>()).second && repeated.empty())
      repeated = parsed.get<std::string>();
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), cb, false);
  if (j.is_discarded()) return bad(what, "document", "not JSON");
  if (!j.is_object()) return bad(what, "document", "not a JSON object");
  if (!repeated.empty()) return bad(what, repeated, "repeated member");
  for (const auto& [k, v] : j.items())
    if (k != "mediaType" && k != "version" && k != "objects" && k != "loads")
      return bad(what, k, "unknown member");
  for (const char* k : {"mediaType", "version", "objects", "loads"})
    if (!j.contains(k)) return bad(what, k, "missing");
  if (!j["mediaType"].is_string() || j["mediaType"].get<std::string>() != kLoaderGraphMediaType)
    return bad(what, "mediaType", fmt::format("not \"{}\"", kLoaderGraphMediaType));
  if (!j["version"].is_number_unsigned() ||
      j["version"].get<std::uint64_t>() != kLoaderGraphVersion)
    return bad(what, "version", fmt::format("not {}", kLoaderGraphVersion));
  if (!j["objects"].is_number_unsigned() || j["objects"].get<std::uint64_t>() != index_objects)
    return bad(what, "objects",
               fmt::format("not the object index's count, {}: the graph is another index's",
                           index_objects));
  const auto& loads = j["loads"];
  if (!loads.is_array()) return bad(what, "loads", "not an array");
  LoaderGraph g;
  g.objects = index_objects;
  std::size_t edges = 0;
  for (std::size_t i = 0; i < loads.size(); ++i) {
    const auto& e = loads[i];
    const std::string field = fmt::format("loads[{}]", i);
    if (!e.is_array() || e.size() < 2)
      return bad(what, field, "not an array of an object and the objects it loads");
    if (e.size() - 1 > kMaxObjectLoads)
      return bad(what, field,
                 fmt::format("{} objects loaded, more than the {} allowed", e.size() - 1,
                             kMaxObjectLoads));
    edges += e.size() - 1;
    if (edges > kMaxLoaderGraphEdges)
      return bad(what, field,
                 fmt::format("more than the {} edges allowed in all", kMaxLoaderGraphEdges));
    std::vector<std::uint32_t> list;
    list.reserve(e.size());
    for (std::size_t k = 0; k < e.size(); ++k) {
      const std::string f = fmt::format("{}[{}]", field, k);
      if (!e[k].is_number_unsigned()) return bad(what, f, "not an object position");
      const auto pos = e[k].get<std::uint64_t>();
      if (pos >= index_objects)
        return bad(
            what, f,
            fmt::format("{} is not a position in the index's {} objects", pos, index_objects));
      const auto p = static_cast<std::uint32_t>(pos);
      if (k == 0 && !g.loads.empty() && p <= g.loads.back().first)
        return bad(what, f, "objects not in ascending order, or listed twice");
      if (k > 0 && p == list.front()) return bad(what, f, "an object loading itself");
      if (k > 0 && std::find(list.begin() + 1, list.end(), p) != list.end())
        return bad(what, f, "loaded twice");
      list.push_back(p);
    }
    const std::uint32_t from = list.front();
    list.erase(list.begin());
    g.loads.emplace_back(from, std::move(list));
  }
  return g;
}

LoaderGraph build_loader_graph(const erofs::Image& image, const ocirepo::ObjectIndex& index,
                               const ObjectOpener& open, LoaderGraphStats* stats) {
  LoaderGraphStats st;
  LoaderGraph g;
  g.objects = index.objects.size();
  std::size_t edges = 0;
  for (std::size_t i = 0; i < index.objects.size(); ++i) {
    const auto& obj = index.objects[i];
    auto fd = open(obj.digest);
    if (!fd) {
      ++st.skipped;
      continue;
    }
    // Most objects are not ELF: four bytes tell, without mapping the file.
    std::byte magic[4];
    auto n = sys::pread_full(fd->get(), magic, 0);
    if (!n || *n != sizeof magic ||
        std::memcmp(magic,
                    "\x7f"
                    "ELF",
                    4) != 0)
      continue;
    const std::string what = "object " + obj.digest.hex();
    auto map = MappedFile::map_fd(fd->get(), what);
    if (!map) {
      ++st.skipped;
      continue;
    }
    auto info = detail::parse_elf_load_info(map->bytes(), what);
    if (!info) ++st.skipped;
    if (!info || !*info) continue;
    ++st.elf;
    std::vector<std::uint32_t> list;
    for (const auto& d : detail::loader_objects(image, **info)) {
      const auto* loc = index.find(d);
      if (!loc) continue;
      const auto pos = static_cast<std::uint32_t>(loc - index.objects.data());
      if (pos == i || std::find(list.begin(), list.end(), pos) != list.end()) continue;
      if (list.size() == kMaxObjectLoads || edges == kMaxLoaderGraphEdges) {
        ++st.skipped;
        break;
      }
      list.push_back(pos);
      ++edges;
    }
    if (!list.empty()) g.loads.emplace_back(static_cast<std::uint32_t>(i), std::move(list));
  }
  if (stats) *stats = st;
  return g;
}

std::vector<std::uint32_t> loader_closure(const LoaderGraph& graph, std::uint32_t start,
                                          std::size_t max) {
  std::vector<std::uint32_t> order{start};
  std::set<std::uint32_t> seen{start};
  // Each object is expanded once: the work is bounded by the graph's edges and by `max`.
  for (std::size_t k = 0; k < order.size() && order.size() <= max; ++k)
    for (std::uint32_t next : graph.of(order[k]))
      if (seen.insert(next).second) {
        order.push_back(next);
        if (order.size() > max) break;
      }
  order.erase(order.begin());
  return order;
}

}  // namespace cfs::registry
