// SPDX-License-Identifier: Apache-2.0
// A registry image as an oci::ImageSource, so the OCI import pipeline (oci::resolve_image,
// oci::LayerInput, splitting, merging) reads `docker://` images exactly as it reads oci: and
// archive sources: nothing about manifests or layers is parsed here.
//
// Blobs stream: blob() starts a fetch on its own thread that fills a bounded buffer the
// pipeline drains, so decompression and splitting run while the bytes arrive and several
// layers download at once when the pipeline reads several. The client checks the digest as
// the bytes pass; a blob whose digest does not match fails on the read that would have
// returned its end, so a consumer that commits only after reading to the end never keeps
// wrong bytes. Network failures are retried inside the client (Range requests); with a
// download directory the bytes also land in DIR/<alg>/<hex>.partial first, so a later run
// resumes a blob an earlier one was killed in the middle of (blob_io.h).
// Thread-safety: as oci::ImageSource requires (blob() from several threads).
#pragma once

#include <memory>
#include <string_view>

#include "cfs/oci/source.h"
#include "cfs/registry/client.h"

namespace cfs::registry {

struct SourceOptions {
  /// Resumable downloads across runs; borrowed, must outlive the source.
  const DownloadDir* download_dir = nullptr;
  /// Bytes buffered ahead of the reader per blob.
  std::size_t buffer_bytes = 8u << 20;
};

/// `docker://...` through `client` (which must outlive the source).
Result<std::unique_ptr<oci::ImageSource>> open_registry_source(Client& client,
                                                               std::string_view reference,
                                                               const SourceOptions& options = {});

/// True for the references open_registry_source() takes (the `docker://` transport).
bool is_registry_reference(std::string_view reference);

}  // namespace cfs::registry
