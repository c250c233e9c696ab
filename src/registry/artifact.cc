// SPDX-License-Identifier: Apache-2.0
#include "artifact.h"

#include "cfs/registry/seal.h"

namespace cfs::registry::detail {

nlohmann::json descriptor_json(std::string_view media_type, const oci::ContentDigest& d,
                               std::uint64_t size) {
  return {{"mediaType", media_type}, {"digest", d.str()}, {"size", size}};
}

Result<oci::ContentDigest> push_bytes(Client& client, const Reference& repo,
                                      std::span<const std::byte> bytes) {
  MemoryBlobSource src(bytes);
  const auto d = oci::sha256_of(bytes);
  CFS_TRY(client.push_blob(repo, d, src));
  return d;
}

Result<PushedArtifact> put_artifact(Client& client, const Reference& image, const Manifest& subject,
                                    std::string_view artifact_type, nlohmann::json layers,
                                    std::optional<nlohmann::json> config,
                                    nlohmann::json annotations) {
  if (!config) {
    const auto empty = std::as_bytes(std::span(kEmptyBlob.data(), kEmptyBlob.size()));
    CFS_ASSIGN(auto empty_config, push_bytes(client, image, empty));
    config = descriptor_json(kEmptyMediaType, empty_config, kEmptyBlob.size());
  }
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"artifactType", artifact_type},
      {"config", std::move(*config)},
      {"layers", std::move(layers)},
      {"subject", descriptor_json(subject.media_type, subject.digest, subject.bytes.size())},
  };
  if (!annotations.is_null()) manifest["annotations"] = std::move(annotations);
  std::string bytes = manifest.dump();
  const auto digest = oci::sha256_of(bytes);
  CFS_ASSIGN(auto pushed,
             client.put_manifest(image.with_digest(digest.str()), kOciManifest, bytes));
  return PushedArtifact{pushed, std::move(bytes)};
}

}  // namespace cfs::registry::detail
