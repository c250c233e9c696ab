// SPDX-License-Identifier: Apache-2.0
// `cfs oci push NAME docker://…`: an image of the repository pushed to a registry. The
// repository keeps layers as splitstreams, not as the compressed blobs they came in, so each
// layer tar is rebuilt bit-exact from its stream (what `cfs oci layer` writes; its sha256 is
// checked against the diff_id before anything is sent), then sent uncompressed or recompressed
// (gzip or zstd), under a new manifest (OCI, the config unchanged byte for byte). The layer
// digests, and so the manifest digest, differ from the pulled image's unless the layers go
// uncompressed; the diff_ids and the config, and so the merged composefs image, stay the same.
// Thread-safety: as Client; the repository is only read.
#pragma once

#include <string_view>

#include "cfs/oci/decompress.h"
#include "cfs/registry/client.h"
#include "cfs/registry/layout.h"
#include "cfs/repo/repository.h"

namespace cfs::registry {

struct RepoPushOptions {
  oci::Compression compression = oci::Compression::kGzip;
  unsigned jobs = 4;  ///< layers rebuilt and sent at once
};

/// Pushes the repository image `name` (tag or manifest digest) to `dest` (its tag or digest).
/// Layer files are built in unnamed temporary files below REPO/cfs-downloads.
Result<LayoutPush> push_from_repository(Client& client, const repo::Repository& repo,
                                        std::string_view name, const Reference& dest,
                                        const RepoPushOptions& options);

}  // namespace cfs::registry
