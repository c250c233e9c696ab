// SPDX-License-Identifier: Apache-2.0
// Copying a registry image into an OCI image layout directory, byte for byte (what `skopeo
// copy --all docker://REF oci:DIR:TAG` produces, without any conversion). The developer
// command `cfs registry fetch` uses it; skopeo and umoci read the result.
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

}  // namespace cfs::registry
