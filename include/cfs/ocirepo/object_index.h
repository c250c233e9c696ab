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

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/erofs/reader.h"
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
/// A lazy mount also refuses an index larger than object_index_size_bound() of its image.
inline constexpr std::uint64_t kMaxObjectIndexSize = 256ull << 20;
/// Most layers an index lists (the parser refuses more): the size bound of an index read back
/// from a repository, where the manifest is not at hand, allows for this many. Images have
/// far fewer (Docker stops at 127, containers/storage's overlay driver at ~500).
inline constexpr std::uint64_t kMaxIndexLayers = 4096;
/// Bytes the size bound allows for each layer entry: two digests of the widest algorithm
/// (sha512, 135 characters each), a 20-digit size, the members' names, and a media type of up
/// to ~600 characters as written (RFC 6838 allows 255).
inline constexpr std::uint64_t kIndexLayerAllowance = 1024;

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
/// `readable`: how many bytes from json.data() may be read (>= json.size(), e.g. a string's
/// capacity()); with kObjectIndexPadding more than json.size() the document is read where it
/// is, not copied first (the Debian index: 1.1 MB copied into new pages on a lazy mount's path).
Result<ObjectIndex> parse_object_index(std::string_view json, const std::string& what,
                                       std::size_t readable = 0);
/// The bytes after a document that parse_object_index reads in place (simdjson's padding).
inline constexpr std::size_t kObjectIndexPadding = 64;

/// The size bound (issue 15): an index is parsed only after its image is fetched and checked,
/// and only when its size is at most the bound below, so a registry (or a tampered
/// registration) cannot make a lazy mount spend the parser's 2-6 bytes of working memory per
/// index byte on a document its image cannot need. An honest index lists each external object
/// of the image once (cfs oci push drops objects of files no longer in the merged image), so
/// the number of objects bounds its size.
///
/// At most how many distinct external objects the composefs image `erofs` can name: its inode
/// count (superblock), and at most one per digest of its bytes (each object's fs-verity digest
/// is stored in it, in a metacopy xattr), so that a superblock claiming more inodes than the
/// image holds cannot raise the bound beyond its size. kCorruptImage when `erofs` has no
/// composefs superblock. O(1): nothing is walked.
Result<std::uint64_t> max_image_objects(std::span<const std::byte> erofs, verity::HashAlg alg);

/// The largest index encode_object_index() writes for an image of `objects` external objects
/// in `layers` layers with `alg` digests: the header with a 20-digit version, `layers` times
/// kIndexLayerAllowance, and per object its members with every number at its widest (20
/// digits; the layer below `layers`). Saturates at UINT64_MAX.
std::uint64_t object_index_size_bound(verity::HashAlg alg, std::uint64_t objects,
                                      std::uint64_t layers);

/// The size check before parsing: kInvalidInput "WHAT: SIZE bytes, more than the BOUND an
/// index of an image of at most OBJECTS objects in LAYERS layers can take" when `size` is
/// larger than object_index_size_bound(alg, objects, layers) (or kMaxObjectIndexSize).
Status check_object_index_size(std::uint64_t size, verity::HashAlg alg, std::uint64_t objects,
                               std::uint64_t layers, const std::string& what);

/// Keeps the objects the composefs image `erofs` names (a regular file's fs-verity digest):
/// a lower layer's file that an upper layer replaced or deleted is not in the merged image, so a
/// lazy mount never asks for its object, and the size bound counts the image's objects only.
/// `objects` stays in its order. kCorruptImage when `erofs` cannot be read.
Status keep_image_objects(std::vector<ObjectLocation>& objects, std::span<const std::byte> erofs);

/// Sorts `objects` by digest and keeps the first location of each (the caller lists layers
/// bottom-up, so an object keeps its lowest layer).
void sort_and_dedup(std::vector<ObjectLocation>& objects);

/// The compact index (issue 15): the same table as the JSON document above, small enough to
/// travel at the end of the lazy-metadata artifact's EROFS blob (registry/lazy_metadata.h), so
/// a lazy mount needs no blob GET for it. No object digest is written: each object is named by the
/// nid of a regular file of the merged EROFS that holds it, and the reader takes the digest
/// from that file's metacopy xattr (the EROFS is fetched and checked before the index is read).
/// Binary, little-endian, integers as LEB128 varints (minimal: no redundant 0x80 bytes):
///
///   "cfs-oidx"           magic (8 bytes)
///   varint version       2
///   byte algorithm       1 sha256, 2 sha512
///   image                the EROFS's fs-verity digest (raw bytes of the algorithm's size)
///   varint layers        then per layer: str digest, str diffId, varint size,
///                        str mediaType, byte flags (bit 0 rangeFetchable; others 0)
///                        (str = varint length + bytes)
///   varint objects N     then five columns of N entries each, in nid order:
///     nid                  the first nid, then the (non-zero) step from the previous one
///     layer << 1 | zstd    the layer's index, bit 0 set for a zstd frame
///     offset               zigzag of (offset - end of the previous object of the same layer)
///     size                 the object's size
///     length               for zstd objects only (in their order): bytes in the blob
///
/// and nothing after. The parser is as strict as the JSON one (errors name the field:
/// "objects[3].nid"), and a nid that is not a regular file with a metacopy digest of the
/// algorithm, or two nids of one object, are errors. An index that names the wrong file for a
/// location can only make a read fail: the bytes are checked against the file's digest.
/// The Debian image: 5,157 objects in 43 KB (27 KB zstd), against 1.1 MB of JSON (431 KB zstd).
inline constexpr std::string_view kCompactIndexMediaType = "application/vnd.cfs.object-index.v2";
inline constexpr std::string_view kCompactIndexMagic = "cfs-oidx";
inline constexpr std::uint64_t kCompactIndexVersion = 2;

/// The compact document of `index` (sorted and unique, as the JSON's) for the composefs image
/// `erofs` (whose fs-verity digest is index.image). kInvalidInput naming the object when one is
/// not the object of any regular file of the image; kCorruptImage when `erofs` cannot be read.
Result<std::string> encode_compact_index(const ObjectIndex& index, const erofs::Image& erofs);

/// Reads a compact document against the image `erofs` it was made for (the caller has checked
/// the image: its fs-verity digest is compared to the index's `image` after this returns, as
/// for a JSON index). The result is what parse_object_index() returns for the JSON document of
/// the same index (objects sorted by digest). Errors are kInvalidInput naming `what` and the
/// field, kUnsupportedFeature for another version.
/// `image`: the fs-verity digest of `erofs` when known: a document of another image (same
/// algorithm) is then refused before any nid is read (kDigestMismatch "the EROFS's fs-verity
/// digest is …, the index names …"), since its nids mean nothing in this one.
Result<ObjectIndex> parse_compact_index(std::string_view doc, const erofs::Image& erofs,
                                        const std::string& what,
                                        const std::optional<verity::Digest>& image = std::nullopt);

/// The largest compact document of an image of at most `objects` objects in `layers` layers
/// (every varint at its widest, kIndexLayerAllowance per layer): the size bound a lazy mount
/// decodes a compact index under, as object_index_size_bound() for a JSON one.
std::uint64_t compact_index_size_bound(verity::HashAlg alg, std::uint64_t objects,
                                       std::uint64_t layers);

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
