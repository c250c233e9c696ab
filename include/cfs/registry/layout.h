// SPDX-License-Identifier: Apache-2.0
// Copying images between a registry and an OCI image layout directory, byte for byte (what
// `skopeo copy --all` does, without any conversion): `cfs registry fetch` and `cfs oci push`.
// skopeo and umoci read and write the same layouts.
#pragma once

#include <cstddef>
#include <string>

#include "cfs/registry/client.h"

namespace cfs::registry {

struct LayoutCopy {
  oci::ContentDigest manifest;  ///< digest of the manifest (or index) `ref` names
  std::string media_type;
  std::size_t manifests = 0;  ///< manifests stored (more than one for an index)
  std::size_t blobs = 0;      ///< configs and layers stored
};

/// Copies `ref` into the layout DIR (created if needed): its manifest, for an index every
/// manifest it lists (all platforms), and their configs and layers under DIR/blobs/<alg>/<hex>;
/// then index.json names the top manifest `tag` (org.opencontainers.image.ref.name; an entry
/// of the same name is replaced; empty = unnamed). DIR/blobs is the download directory
/// (blob_io.h): blobs are fetched in parallel, largest first, resumably, and blobs already
/// present are verified instead of fetched. index.json is written last, so it never names an
/// incomplete image.
Result<LayoutCopy> copy_to_layout(Client& client, const Reference& ref, const std::string& dir,
                                  const std::string& tag);

struct LayoutPush {
  oci::ContentDigest manifest;  ///< digest of the top manifest (or index) pushed
  std::string media_type;
  std::size_t manifests = 0;       ///< manifests put (more than one for an index)
  std::size_t blobs_uploaded = 0;  ///< configs and layers sent (or mounted)
  std::size_t blobs_existed = 0;   ///< configs and layers the registry already had
};

/// Pushes the image the layout DIR names `tag` (org.opencontainers.image.ref.name; empty: the
/// only image of the layout) to `dest`, byte for byte: for an index every manifest it lists,
/// for each manifest its config and layers (`jobs` at a time, skipped when the registry has
/// them), each manifest after its blobs, the top one last under dest's tag (or digest).
/// Documents are parsed by the oci module and checked against their descriptors' digests;
/// the registry checks every blob's digest.
Result<LayoutPush> push_from_layout(Client& client, const std::string& dir, const std::string& tag,
                                    const Reference& dest, unsigned jobs);

}  // namespace cfs::registry
