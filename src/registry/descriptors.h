// SPDX-License-Identifier: Apache-2.0
// What the transport needs from manifests: descriptors listed by an index or a manifest (to
// fetch an image's blobs), a manifest's subject, parsed by the oci module's parsers (the one
// owner of those formats); and the two indexes the client itself writes (the referrers
// fallback index, a layout's index.json). Raw bytes are never re-serialised otherwise.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/registry/client.h"
#include "cfs/util/result.h"

namespace cfs::registry::detail {

/// Whether a media type names an index / manifest list.
bool is_index_type(std::string_view media_type);

/// Descriptors of an index's "manifests", or of a manifest's "config" followed by its
/// "layers". Errc::kInvalidInput names `what` and the member that is wrong.
Result<std::vector<Descriptor>> manifest_children(std::string_view bytes,
                                                  std::string_view media_type,
                                                  const std::string& what);

/// The referrer descriptor of a manifest that has a "subject": nullopt when it has none.
/// Its artifactType is the manifest's, else its config's media type; its annotations the
/// manifest's.
Result<std::optional<std::pair<oci::ContentDigest, Descriptor>>> referrer_of(
    std::string_view bytes, std::string_view media_type, const oci::ContentDigest& digest);

/// `index` (empty: a new one) with `d` appended unless a descriptor of that digest is there.
/// Returns nullopt when nothing changed; kInvalidInput when `index` is not an image index.
Result<std::optional<std::string>> add_to_index(std::string_view index, const Descriptor& d);

/// The OCI image layout index.json `existing` (empty: new) with `d` listed under the
/// org.opencontainers.image.ref.name `ref_name` (replacing an entry of that name).
Result<std::string> layout_index_with(std::string_view existing, const Descriptor& d,
                                      const std::string& ref_name);

}  // namespace cfs::registry::detail
