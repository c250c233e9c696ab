// SPDX-License-Identifier: Apache-2.0
// Internal: OCI artifacts attached to an image manifest (seals, lazy metadata): a manifest
// with the empty config, some layers, and a subject, pushed by digest so the client adds it to
// the subject's referrers (or its fallback index).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "cfs/registry/client.h"

namespace cfs::registry::detail {

/// The OCI empty descriptor's blob ("{}", image-spec manifest.md "Guidance for an Empty
/// Descriptor").
inline constexpr std::string_view kEmptyBlob = "{}";

nlohmann::json descriptor_json(std::string_view media_type, const oci::ContentDigest& d,
                               std::uint64_t size);

/// Uploads `bytes` (unless the repository has them) and returns their digest.
Result<oci::ContentDigest> push_bytes(Client& client, const Reference& repo,
                                      std::span<const std::byte> bytes);

struct PushedArtifact {
  oci::ContentDigest digest;
  std::string bytes;  ///< the manifest as pushed
};

/// Pushes the artifact manifest {artifactType, config, `layers`, subject} for the image manifest
/// `subject` of `image`'s repository; the config is the empty descriptor unless `config` (a
/// descriptor of a blob pushed already) is given; `annotations` (an object) when not null.
Result<PushedArtifact> put_artifact(Client& client, const Reference& image, const Manifest& subject,
                                    std::string_view artifact_type, nlohmann::json layers,
                                    std::optional<nlohmann::json> config = std::nullopt,
                                    nlohmann::json annotations = nullptr);

}  // namespace cfs::registry::detail
