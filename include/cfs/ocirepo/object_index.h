// SPDX-License-Identifier: Apache-2.0
// The object index: where each object of an image lives inside the registry blobs it was
// pushed as, so a lazy mount can fetch one file with one HTTP Range request and check it
// against the fs-verity digest the image records (docs/registry.md "Lazy metadata").
//
// One JSON document, media type kObjectIndexMediaType:
//
//   {"mediaType": "application/vnd.cfs.object-index.v1+json",
//    "version": 1,
//    "algorithm": "sha512",                  object and image digests: fs-verity, 4 KiB blocks
//    "image": "<hex>",                       the merged composefs EROFS the objects belong to
//    "layers": [{"digest": "sha256:…",       the blob as pushed (the image manifest's layer i)
//                "diffId": "sha256:…",       the uncompressed tar
//                "size": 1234,               blob bytes
//                "mediaType": "…",           as in the manifest
//                "rangeFetchable": true}],   false: no object points into it (e.g. gzip)
//    "objects": [{"digest": "<hex>",          fs-verity digest (the algorithm above)
//                 "layer": 0,                 index into layers
//                 "offset": 1536,             first byte in the blob
//                 "length": 4096,             bytes in the blob
//                 "size": 4096,               the object's size (uncompressed)
//                 "compression": "none"}]}    "none": the tar member's data, length == size;
//                                             "zstd": one zstd frame whose content is exactly
//                                             the object (zstd:chunked layers)
//
// Objects are sorted by digest and unique (an object in several layers is listed once). The
// parser is strict: unknown or repeated members, wrong types, another version, digests that are not
// lowercase hex of the algorithm's size, ranges outside the blob, objects in a layer that is
// not range-fetchable are errors naming the field ("objects[3].offset"). Nothing in an index is
// trusted for content: a lazy reader verifies every byte against the image's digests, so a
// wrong offset makes a read fail, never return wrong data.
// Thread-safety: value types and pure functions, except the builder (reads a repository).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/digest.h"
#include "cfs/ocirepo/images.h"
#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::ocirepo {

inline constexpr std::string_view kObjectIndexMediaType =
    "application/vnd.cfs.object-index.v1+json";
inline constexpr std::uint64_t kObjectIndexVersion = 1;
/// Largest index parsed (a million SHA-512 objects take ~250 MiB; images have far fewer).
inline constexpr std::uint64_t kMaxObjectIndexSize = 256ull << 20;

enum class ObjectCompression { kNone, kZstd };
/// "none" / "zstd".
std::string_view compression_name(ObjectCompression c) noexcept;

struct IndexedLayer {
  oci::ContentDigest digest;
  oci::ContentDigest diff_id;
  std::uint64_t size = 0;
  std::string media_type;
  bool range_fetchable = true;
};

struct ObjectLocation {
  verity::Digest digest;
  std::uint32_t layer = 0;
  std::uint64_t offset = 0;  ///< in the blob
  std::uint64_t length = 0;  ///< in the blob
  std::uint64_t size = 0;    ///< of the object
  ObjectCompression compression = ObjectCompression::kNone;
};

struct ObjectIndex {
  verity::HashAlg algorithm = verity::HashAlg::kSha256;
  verity::Digest image;
  std::vector<IndexedLayer> layers;
  std::vector<ObjectLocation> objects;  ///< sorted by digest, unique

  /// Where `d` is, or nullptr (an object the index does not place: not lazily fetchable).
  const ObjectLocation* find(const verity::Digest& d) const noexcept;
};

/// The JSON document (compact, members in the order above).
std::string encode_object_index(const ObjectIndex& index);
/// Parses and checks a document; errors are kInvalidInput naming `what` and the field.
Result<ObjectIndex> parse_object_index(std::string_view json, const std::string& what);

/// Sorts `objects` by digest and keeps the first location of each (the caller lists layers
/// bottom-up, so an object keeps its lowest layer).
void sort_and_dedup(std::vector<ObjectLocation>& objects);

/// An external object of a stored layer and where its bytes are in the layer tar that
/// `cfs oci layer` writes (the data of its tar member).
struct TarObject {
  verity::Digest digest;
  std::uint64_t tar_offset = 0;
  std::uint64_t size = 0;
};

/// The external objects of a stored layer in tar order (repeats included), from its
/// splitstream alone (no object is opened).
Result<std::vector<TarObject>> layer_tar_objects(const repo::Repository& repo,
                                                 const StoredLayer& layer);

}  // namespace cfs::ocirepo
