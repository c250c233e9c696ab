// SPDX-License-Identifier: Apache-2.0
// `cfs oci push NAME docker://…`: an image of the repository pushed to a registry.
// An image pulled with --keep-blobs (every compressed layer's blob kept as
// streams/oci-blob-<digest>, ocirepo/names.h) goes byte for byte: the kept blobs, the config
// and the original manifest, so the registry gets the manifest digest it was pulled with.
// Otherwise the repository has only the layers' splitstreams, so each layer tar is rebuilt
// bit-exact from its stream (what `cfs oci layer` writes), then sent uncompressed or
// recompressed (gzip or zstd) under a new manifest (OCI, the config unchanged byte for byte):
// the layer digests, and so the manifest digest, differ from the pulled image's unless the
// layers go uncompressed; the diff_ids and the config, and so the merged composefs image, stay
// the same. Every blob is checked (sha256 against the diff_id or the kept blob's digest)
// before it is sent.
//
// zstd:chunked (oci/zstd_chunked.h) is zstd with every regular file's data in a frame of its
// own and a table of contents. When every layer can be fetched a file at a time (uncompressed,
// or zstd:chunked as written here) the push also attaches the lazy metadata
// (registry/lazy_metadata.h): the merged EROFS and the object index, with offsets in the blobs
// just pushed.
// Thread-safety: as Client; the repository is only read.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "cfs/oci/decompress.h"
#include "cfs/registry/client.h"
#include "cfs/registry/layout.h"
#include "cfs/repo/repository.h"

namespace cfs::registry {

struct RepoPushOptions {
  /// nullopt: the original blobs and manifest when the image has them all, else gzip. A
  /// compression given: layers rebuilt and recompressed, a new manifest, whatever was kept.
  std::optional<oci::Compression> compression;
  /// With kZstd: zstd:chunked layers.
  bool zstd_chunked = false;
  /// Attach the lazy metadata; nullopt: when every layer is range-fetchable. true when one is
  /// not (gzip, plain zstd) is kInvalidInput before anything is sent.
  std::optional<bool> lazy_metadata;
  unsigned jobs = 4;  ///< layers rebuilt and sent at once
};

struct RepoPush : LayoutPush {
  std::optional<oci::ContentDigest> lazy_metadata;  ///< the artifact, when attached
  std::uint64_t indexed_objects = 0;                ///< objects its index places
  std::uint64_t elf_objects = 0;  ///< of them, dynamically linked ELF files (the loader graph)
  std::uint64_t loads = 0;        ///< the loader graph's edges
};

/// Pushes the repository image `name` (tag or manifest digest) to `dest` (its tag or digest).
/// Layer files are built in unnamed temporary files below REPO/cfs-downloads. The lazy
/// metadata goes last, after the image manifest.
Result<RepoPush> push_from_repository(Client& client, const repo::Repository& repo,
                                      std::string_view name, const Reference& dest,
                                      const RepoPushOptions& options);

}  // namespace cfs::registry
