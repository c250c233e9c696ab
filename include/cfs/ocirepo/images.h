// SPDX-License-Identifier: Apache-2.0
// OCI images stored in a repository (names: ocirepo/names.h), read back: by tag or manifest
// digest, listed, tagged, merged again (compute-id, dump) and checked (oci fsck).
// Thread-safety: free functions; a Repository may be shared by readers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cfs/oci/digest.h"
#include "cfs/oci/image.h"
#include "cfs/oci/merge.h"
#include "cfs/repo/repository.h"
#include "cfs/tree/tree.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::ocirepo {

struct StoredLayer {
  oci::ContentDigest diff_id;
  verity::Digest stream;  ///< the layer stream object (the config stream's named ref)
  oci::Descriptor blob;   ///< the manifest's descriptor of the layer
  /// streams/oci-blob-<blob digest> (the manifest stream's named ref <blob digest>): the
  /// compressed blob as pulled with --keep-blobs. nullopt when not kept, and for an
  /// uncompressed layer, whose blob is the tar the layer stream rebuilds.
  std::optional<verity::Digest> blob_stream;
  /// The original blob can be sent: kept, or the layer is uncompressed.
  bool has_original_blob() const noexcept { return blob_stream || blob.digest == diff_id; }
};

struct StoredImage {
  std::string manifest_stream_name;  ///< "oci-manifest-sha256:…"
  verity::Digest manifest_stream;
  verity::Digest config_stream;
  oci::Manifest manifest;   ///< raw bytes as stored
  oci::ImageConfig config;  ///< raw bytes as stored
  std::vector<StoredLayer> layers;
  std::optional<verity::Digest> image;  ///< composefs.image.v1 of the config stream
};

/// NAME is a tag (streams/refs/oci/<encoded>) or a manifest digest "sha256:<hex>"
/// (streams/oci-manifest-sha256:<hex>). Both documents are read from their streams and parsed;
/// errors name the stream. Nothing is verified here beyond what parsing needs (fsck does).
Result<StoredImage> open_image(const repo::Repository& repo, std::string_view name);

struct TaggedImage {
  std::string tag;
  std::string manifest_stream_name;  ///< target of the tag ("" when the ref is broken)
};
/// Every tag under streams/refs/oci/, sorted.
Result<std::vector<TaggedImage>> list_tags(const repo::Repository& repo);

/// Points `tag` at the stored manifest `image` (a tag or a manifest digest), replacing it.
Status tag_image(repo::Repository& repo, std::string_view image, std::string_view tag);
Status untag_image(repo::Repository& repo, std::string_view tag);

/// The merged tree of a stored image, from its layer streams (no object is read).
Result<Tree> merged_tree(const repo::Repository& repo, const StoredImage& image,
                         const oci::MergeOptions& options = {});

/// The id of the merged image: the fs-verity digest (repository algorithm) of the format-1
/// image of merged_tree(). Computed, not read from the stored link.
Result<verity::Digest> compute_image_id(const repo::Repository& repo, const StoredImage& image,
                                        const oci::MergeOptions& options = {});

struct OciFsckReport {
  std::size_t images = 0;
  std::size_t layers = 0;
  std::vector<std::string> errors;  ///< "<tag>: <what is wrong>"
  bool ok() const noexcept { return errors.empty(); }
};

/// Checks one tagged image (or all): the manifest and config bytes against their digests, the
/// config against the manifest, every layer stream reassembled against its diff_id and every
/// kept blob against its digest and size (objects
/// opened as the repository opens them: verity-checked when secure), the linked image present
/// and equal to the image computed again from the layers.
Result<OciFsckReport> fsck(const repo::Repository& repo, const std::optional<std::string>& tag);

}  // namespace cfs::ocirepo
