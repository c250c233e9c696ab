// SPDX-License-Identifier: Apache-2.0
// Where images come from: an interface every transport implements (a registry client too),
// the local transports, and the resolution of a reference to one image.
//
//   oci:DIR[:TAG]             an OCI image layout (index.json, blobs/<alg>/<hex>)
//   oci-archive:FILE[:TAG]    the same, as a tar archive
//   docker-archive:FILE[:REF] `docker save` / `podman save` output (manifest.json, legacy
//                             layer.tar members or blobs/); REF is a RepoTags entry
// A TAG is the text after the last ':' if it has no '/' (composefs-rs' rule); without one, a
// layout or archive must hold exactly one image (or one index entry per platform).
//
// resolve_image() fetches the manifest (choosing the platform in an index), checks every
// document against the digest and size its descriptor gives, parses the config and pairs each
// layer descriptor with its diff_id. Blobs are never trusted: LayerInput hashes them while
// they stream. Archives are indexed once (a tar scan over headers) and read in place.
// Thread-safety: a source may be used by several threads at once for blob() (layers are
// imported concurrently); resolve() and manifest() from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/digest.h"
#include "cfs/oci/image.h"
#include "cfs/util/result.h"

namespace cfs::oci {

/// A manifest or index as a transport returns it: exact bytes and their media type.
struct RawManifest {
  std::string bytes;
  std::string media_type;  ///< from the descriptor or transport; may be empty
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  /// The reference as given ("oci:/srv/img:latest").
  virtual const std::string& name() const noexcept = 0;
  /// The manifest or index the reference names, and its digest when the transport knows it
  /// from elsewhere (an index.json entry, a registry header) so it can be checked.
  virtual Result<std::pair<RawManifest, std::optional<Descriptor>>> top() = 0;
  /// A manifest or index by digest (an index's entries). The caller checks the digest.
  virtual Result<RawManifest> manifest(const Descriptor& d) = 0;
  /// A blob's bytes (the caller hashes them); ByteSource::known_size() gives its length where the
  /// transport knows it (a file, an archive member, a Content-Length), so a length that
  /// contradicts the descriptor is refused before reading. blob_size(): the length alone.
  virtual Result<std::unique_ptr<ByteSource>> blob(const ContentDigest& d) = 0;
  virtual Result<std::uint64_t> blob_size(const ContentDigest& d) = 0;
};

/// Opens oci:, oci-archive: or docker-archive: (kInvalidInput for anything else, naming the
/// forms accepted: these and `other_forms`, the caller's other transports, e.g. "docker://...").
Result<std::unique_ptr<ImageSource>> open_source(std::string_view reference,
                                                 std::string_view other_forms = {});

struct LayerRef {
  Descriptor blob;        ///< as the manifest gives it (media type, digest, size)
  ContentDigest diff_id;  ///< from the config; for artifacts the blob digest
};

struct ResolvedImage {
  std::optional<Index> index;  ///< the index the manifest was chosen from, if any
  Manifest manifest;
  ImageConfig config;  ///< empty diff_ids for artifacts
  std::vector<LayerRef> layers;
};

/// Resolves the source's reference to one image for `platform` (default: the running one):
/// resolve_manifest(), then resolve_config().
Result<ResolvedImage> resolve_image(ImageSource& source,
                                    const std::optional<Platform>& platform = std::nullopt);
/// The first half of resolve_image(): the manifest (through an index), checked and parsed;
/// `config` and `layers` stay empty.
Result<ResolvedImage> resolve_manifest(ImageSource& source,
                                       const std::optional<Platform>& platform = std::nullopt);
/// The second half: reads the config `image.manifest` names (checked against its descriptor),
/// parses it and pairs each layer with its diff_id. Touches only `image.config` and
/// `image.layers` (and only once all is checked), so a caller may read `image.manifest` from
/// another thread meanwhile (a lazy mount asks for its metadata while the config downloads).
Status resolve_config(ImageSource& source, ResolvedImage& image);
/// resolve_config() with the config's bytes at hand (e.g. carried by a lazy-metadata artifact):
/// checked against the manifest's config descriptor (digest and size; kDigestMismatch naming
/// `name`) unless `verified` says the caller has, then parsed and paired as there.
Status adopt_config(ResolvedImage& image, std::string config, const std::string& name,
                    bool verified = false);

/// Reads a whole (small) blob and checks it against its descriptor's digest and size.
Result<std::string> read_verified(ImageSource& source, const Descriptor& d, std::uint64_t max_size,
                                  const std::string& what);

}  // namespace cfs::oci
