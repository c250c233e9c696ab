// SPDX-License-Identifier: Apache-2.0
// Lazy metadata: what a lazy mount needs before any layer is downloaded, published next to an
// image by `cfs oci push` (docs/registry.md "Lazy metadata", docs/design.md for the trust
// argument). An OCI artifact whose subject is the image manifest:
//
//   manifest  artifactType kLazyArtifactType, subject = the image manifest
//   layer 0   the merged composefs EROFS, zstd-compressed (kErofsZstdMediaType), annotated
//             with the seal's key composefs.merged.erofs.v1.fsverity-<alg>-12 = <hex of the
//             fs-verity digest of the EROFS itself>
//   layer 1   the object index (ocirepo/object_index.h), zstd-compressed
//             (kObjectIndexZstdMediaType): where each object's bytes are in the layer blobs as
//             pushed
//   config    the empty descriptor, or (since session 13) the loader graph of the index's
//             objects (registry/loader_graph.h, kLoaderGraphZstdMediaType): what the dynamic
//             loader opens for each ELF object. Optional: an older cfs never reads the config,
//             so an image pushed with a graph still mounts with it.
//
// found like a seal, through the referrers API or its sha256-<hex> fallback tag. The two
// blobs are on the critical path of every lazy mount, and compressed they are 2.3x smaller
// (Debian: 3.1 MB -> 1.4 MB). Metadata pushed before (uncompressed: kErofsMediaType,
// ocirepo::kObjectIndexMediaType) is read as well.
// Thread-safety: functions only; see Client.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "cfs/oci/image.h"
#include "cfs/ocirepo/object_index.h"
#include "cfs/registry/client.h"
#include "cfs/registry/loader_graph.h"
#include "cfs/registry/seal.h"
#include "cfs/repo/repository.h"
#include "cfs/util/mapped_file.h"
#include "cfs/util/unique_fd.h"

namespace cfs::registry {

inline constexpr std::string_view kLazyArtifactType = "application/vnd.cfs.lazy-metadata.v1";
inline constexpr std::string_view kErofsMediaType = "application/vnd.cfs.composefs.erofs.v1";
inline constexpr std::string_view kErofsZstdMediaType =
    "application/vnd.cfs.composefs.erofs.v1+zstd";
inline constexpr std::string_view kObjectIndexZstdMediaType =
    "application/vnd.cfs.object-index.v1+json+zstd";
/// Since session 15 a mount needs no blob but the EROFS's before it serves (issue 15):
///  * the EROFS blob ends, after the EROFS's zstd frame, with a zstd skippable frame (magic
///    0x184D2A5E) holding the compact index (ocirepo::kCompactIndexMediaType) as one zstd frame,
///    announced by the EROFS layer's annotation kLazyIndexAnnotation (the frame's payload size
///    in decimal): the Debian image's 5,157 objects in 27 KB instead of a 431 KB index blob. A
///    zstd reader skips the frame: an older cfs, or `zstd -d`, decodes the same EROFS;
///  * the artifact manifest's annotation kLazyConfigAnnotation: the image config's bytes,
///    base64, checked against the image manifest's config descriptor (a mismatch is refused,
///    as a config blob's would be).
/// The v1 index layer stays (an older cfs reads it and ignores annotations, so it still mounts
/// the image the way it did); a mount without the annotations fetches the blobs as before.
inline constexpr std::string_view kLazyIndexAnnotation = "vnd.cfs.object-index.v2+zstd";
inline constexpr std::string_view kLazyConfigAnnotation = "vnd.cfs.image-config";
/// Since session 16 (issue 15) a push also attaches a second artifact, kLazySlimArtifactType,
/// that a mount takes when it is the newest lazy artifact listed: the same config and
/// annotations, and one layer kErofsSlimMediaType, the *slim EROFS blob*: a zstd skippable frame
/// (magic 0x184D2A5D) holding the redirect table (erofs/slim.h) as one zstd frame, the EROFS
/// with its redirects' hex zeroed as one zstd frame, and the compact index's frame. Annotated as
/// the v1 EROFS layer is (the fs-verity digest of the *rebuilt* EROFS, kLazyIndexAnnotation),
/// and with kRedirectTableAnnotation (the table frame's payload size). The Debian image's: 497 KB
/// instead of 973 KB. A cfs before it lists only v1 artifacts and mounts those as it did.
inline constexpr std::string_view kLazySlimArtifactType = "application/vnd.cfs.lazy-metadata.v2";
inline constexpr std::string_view kErofsSlimMediaType =
    "application/vnd.cfs.composefs.erofs-slim.v1+zstd";
inline constexpr std::string_view kRedirectTableAnnotation = "vnd.cfs.redirect-table.v1+zstd";
/// Largest redirect table (its zstd frame, and decoded) a push attaches and a mount reads: the
/// Debian image's is 15 KB (1 KB zstd) for 5,110 values, a 1 GiB EROFS's could need ~8 MiB.
inline constexpr std::uint64_t kMaxRedirectTable = 4u << 20;
/// Largest compact index (zstd) and config a push embeds; a reader refuses more.
inline constexpr std::uint64_t kMaxEmbeddedIndex = 1u << 20;
inline constexpr std::uint64_t kMaxEmbeddedConfig = 256u << 10;
/// Largest EROFS image fetched (metadata only: a 100k-file image is ~20 MiB).
inline constexpr std::uint64_t kMaxLazyErofsSize = 1ull << 30;
/// A zstd EROFS blob decodes to at most kLazyErofsRatio times its size, or kLazyErofsFloor,
/// whichever is more (lazy_erofs_limit): a mount holds the EROFS in memory, and without it a
/// registry could make a mount hold 1 GiB for a 20 KB blob of zeros (bench/lazy_erofs_mem.py).
/// Honest EROFSs compress 2x (the Debian image's, hex digests) to 12-14x (100k empty files or
/// directories); 20,000 symlinks with one 4 KB target, 580x (docs/design.md "A lazy EROFS is
/// bounded by its blob").
inline constexpr std::uint64_t kLazyErofsRatio = 1024;
inline constexpr std::uint64_t kLazyErofsFloor = 64ull << 20;
/// The most bytes the EROFS of a metadata blob of `blob_size` bytes may decode to (`zstd`: a
/// kErofsZstdMediaType or kErofsSlimMediaType blob; else its bytes are the EROFS).
std::uint64_t lazy_erofs_limit(std::uint64_t blob_size, bool zstd);

/// Attaches `erofs` (whose fs-verity digest is index.image) and `index` to the manifest
/// `image` names, with `graph` (of index's objects) as the artifact's config unless it is
/// null or empty. The index's layers must be that manifest's layers. `config`: the image
/// config's bytes when the caller has them (a push: checked against the manifest's config
/// descriptor), else they are fetched to embed them. Returns the artifact's digest; pushing the
/// same metadata again changes nothing.
Result<oci::ContentDigest> push_lazy_metadata(
    Client& client, const Reference& image, std::string_view erofs,
    const ocirepo::ObjectIndex& index, const LoaderGraph* graph = nullptr,
    std::optional<std::string_view> config = std::nullopt);

struct LazyFetchOptions {
  /// For an index: the platform (default: the running one).
  std::optional<oci::Platform> platform;
  /// Fail unless a seal vouches for the EROFS (with cert_file: a signed one).
  bool require_seal = false;
  std::optional<std::string> cert_file;
  /// Called as each step ends ("manifest", "referrers", "index", …), for timing a mount's
  /// start-up (CFS_LAZY_TRACE, docs/lazy.md); may be empty.
  std::function<void(std::string_view)> trace;
  /// The repository that remembers registries without the referrers API (REPO/cfs-registries,
  /// docs/lazy.md "The referrers listing"): on one, the fallback tag is asked first. nullptr:
  /// none (the API first, as always).
  repo::Repository* memo = nullptr;
};

/// The link to the registry as the metadata fetch saw it (zero: not measured). For a lazy
/// mount's neighbour budget (registry::batch_budget).
struct LinkEstimate {
  /// One small request's time, from sending it to its last byte (the lazy artifact's manifest):
  /// what a request costs beyond its bytes.
  double round_trip_s = 0;
  /// The EROFS and index blobs' bytes (as sent, compressed) over the time they took together,
  /// one round trip subtracted.
  double bytes_per_s = 0;
};

/// The merged EROFS as fetched: decoded straight into a memfd as it arrived (fs-verity-hashed on
/// the way), sealed read-only once whole, and mapped for readers. The image is held once: the
/// mount serves this memfd, and its registration writes the image object from it (an unsealed
/// artifact may carry up to kMaxLazyErofsSize; a std::string and a memfd copy of it were twice
/// that in memory).
struct FetchedErofs {
  UniqueFd fd;     ///< sealed memfd (F_SEAL_WRITE|SHRINK|GROW): its bytes never change
  MappedFile map;  ///< a read-only mapping of fd
  std::span<const std::byte> bytes() const noexcept { return map.bytes(); }
  std::size_t size() const noexcept { return map.size(); }
};

struct LazyMetadata {
  oci::Manifest manifest;       ///< the image manifest (raw bytes, digest checked)
  oci::ImageConfig config;      ///< its config (digest checked)
  oci::ContentDigest artifact;  ///< the lazy-metadata artifact used
  FetchedErofs erofs;           ///< the merged EROFS; its fs-verity digest is index.image
  ocirepo::ObjectIndex index;   ///< layers equal to the manifest's, in order
  /// The index document `index` was parsed from: the JSON one, or with compact_index the
  /// compact one (decoded from the EROFS blob's last frame), which only the EROFS completes.
  std::string index_json;
  bool compact_index = false;
  std::optional<Seal> seal;  ///< the seal that names the EROFS, when the image has one
  LoaderGraph loader_graph;  ///< the artifact's config, when it is one (else empty)
  /// The document `loader_graph` was parsed from, as fetched and decoded (else empty): what
  /// the registration keeps, so that the image mounted again from it has the graph too.
  std::string loader_graph_json;
  LinkEstimate link;  ///< measured while fetching this
};

/// Fetches and checks the lazy metadata of the image `reference` (docker://…):
///  * the manifest and config, verified as a pull verifies them;
///  * the newest lazy-metadata artifact whose subject is that manifest (kObjectMissing
///    "… has no lazy metadata: use cfs oci pull" when there is none);
///  * its EROFS and index blobs, digest-checked, the index parsed strictly and its layers
///    (digest, size, media type) and diff_ids equal to the manifest's and config's;
///  * the EROFS's fs-verity digest (the index's algorithm) equal to index.image and to the
///    artifact's annotation;
///  * if the image carries composefs seals (either algorithm), one must name this EROFS (and
///    with cert_file verify): a sealed image cannot be served from metadata the seal does not
///    cover (kDigestMismatch otherwise). require_seal / cert_file make a seal mandatory.
/// The objects are not checked here: every byte read through the index is checked against
/// the digests in the EROFS by the reader.
Result<LazyMetadata> fetch_lazy_metadata(Client& client, std::string_view reference,
                                         const LazyFetchOptions& options = {});

/// The image has no lazy-metadata artifact (pushed by another tool).
struct NoLazyMetadata {
  oci::ContentDigest manifest;
};
/// fetch_lazy_metadata, with "no artifact" as a value rather than an error, for callers that
/// fall back to a full pull (other failures, e.g. a missing seal, stay errors).
Result<std::variant<LazyMetadata, NoLazyMetadata>> find_lazy_metadata(
    Client& client, std::string_view reference, const LazyFetchOptions& options = {});

}  // namespace cfs::registry
