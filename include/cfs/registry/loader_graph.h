// SPDX-License-Identifier: Apache-2.0
// The loader graph: for each object of an image that is a dynamically linked ELF file, the
// objects the dynamic loader opens for it (its interpreter, /etc/ld.so.cache for glibc's, its
// DT_NEEDED libraries as ld.so finds them in the merged image: registry/loader.h), computed by
// `cfs oci push`, which holds every object, and published with the lazy metadata. A lazy mount
// then knows a program's whole library closure at the program's first open and asks for all of
// it at once (one request of several ranges per layer blob) instead of one level per fetched and
// parsed library (docs/lazy.md, docs/design.md "The loader graph as the lazy artifact's config").
//
// One JSON document, zstd-compressed, media type kLoaderGraphZstdMediaType, the lazy artifact's
// config blob (an older cfs reads only the artifact's layers, so the same push still mounts):
//
//   {"mediaType": "application/vnd.cfs.loader-graph.v1+json",
//    "version": 1,
//    "objects": 5157,              the object index's objects (the graph is only valid with it)
//    "loads": [[12, 4051, 17, 830],   object 12 (a position in the index's objects) makes the
//              ...]}                   loader open 4051, 17, 830 in that order
//
// The parser is strict (unknown, repeated or missing members, wrong types, positions outside
// the index, an object listed twice or loading itself, more than the bounds) and names the
// field ("loads[3][2]"). Nothing in it is trusted for content: what it names is fetched ahead
// and verified like any object; a wrong graph only fetches the wrong objects early.
// Thread-safety: value types and functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/ocirepo/object_index.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::registry {

inline constexpr std::string_view kLoaderGraphMediaType =
    "application/vnd.cfs.loader-graph.v1+json";
inline constexpr std::string_view kLoaderGraphZstdMediaType =
    "application/vnd.cfs.loader-graph.v1+json+zstd";
inline constexpr std::uint64_t kLoaderGraphVersion = 1;
/// Largest graph document read (decoded), and largest blob fetched: the Debian image's is 13 KB
/// (701 ELF objects, 1,801 edges); this allows ~100 times that.
inline constexpr std::uint64_t kMaxLoaderGraphSize = 1ull << 20;
/// Largest compressed graph that `cfs oci push` also embeds in the artifact's config descriptor
/// ("data", base64), and a mount reads from there: the Debian image's is 3 KB.
inline constexpr std::uint64_t kMaxEmbeddedLoaderGraph = 64u << 10;
/// Most objects one ELF object makes the loader open (a list of more is refused).
inline constexpr std::size_t kMaxObjectLoads = 256;
/// Most edges of a graph in all.
inline constexpr std::size_t kMaxLoaderGraphEdges = 1u << 17;

struct LoaderGraph {
  /// The index's object count the positions refer to.
  std::size_t objects = 0;
  /// (object, the objects the loader opens for it in its order), by object, each object once.
  std::vector<std::pair<std::uint32_t, std::vector<std::uint32_t>>> loads;
  std::size_t edges() const noexcept;
  bool empty() const noexcept { return loads.empty(); }
  /// What the loader opens for `object`, empty when nothing (binary search).
  std::span<const std::uint32_t> of(std::uint32_t object) const noexcept;
};

/// The document (uncompressed). Deterministic: the same graph gives the same bytes.
std::string encode_loader_graph(const LoaderGraph& graph);

/// Parses a document strictly (see above); `index_objects` is the object index's count, which
/// "objects" must equal. Errors: kInvalidInput naming `what` and the field.
Result<LoaderGraph> parse_loader_graph(std::string_view json, std::size_t index_objects,
                                       const std::string& what);

/// Opens an object of the index for reading (an error: it gets no entry).
using ObjectOpener = std::function<Result<UniqueFd>(const verity::Digest&)>;

struct LoaderGraphStats {
  std::size_t elf = 0;      ///< objects that are dynamically linked ELF files
  std::size_t skipped = 0;  ///< objects not opened, malformed ELF, or edges past a bound
};

/// The graph of `index`'s objects (sorted and unique, as pushed) in `image`: what the loader
/// opens for each dynamically linked ELF object (registry/loader.h's loader_objects), as
/// positions in index.objects, without the object itself, repeats, or objects the index does
/// not list; at most kMaxObjectLoads per object and kMaxLoaderGraphEdges in all (edges beyond
/// are dropped and counted in stats: the graph is a hint). Objects whose first bytes are not
/// ELF are not mapped.
LoaderGraph build_loader_graph(const erofs::Image& image, const ocirepo::ObjectIndex& index,
                               const ObjectOpener& open, LoaderGraphStats* stats = nullptr);

/// The objects `start` makes the loader open, and they in turn, breadth first (the loader's
/// order), each once, without `start`; at most `max` of them.
std::vector<std::uint32_t> loader_closure(const LoaderGraph& graph, std::uint32_t start,
                                          std::size_t max);

}  // namespace cfs::registry
