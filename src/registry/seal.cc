// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/seal.h"

#include <nlohmann/json.hpp>

#include "artifact.h"
#include "cfs/oci/image.h"

namespace cfs::registry {
namespace {

using detail::descriptor_json;
using detail::kEmptyBlob;
using detail::push_bytes;

// One seal artifact, read back and checked: its subject, its annotation, its signature blob.
Result<std::optional<Seal>> read_seal(Client& client, const Reference& image,
                                      const oci::ContentDigest& subject,
                                      const oci::ContentDigest& artifact, verity::HashAlg alg) {
  const std::string what = "seal " + artifact.str() + " of " + subject.str();
  CFS_ASSIGN(auto raw, client.get_manifest(image.with_digest(artifact.str())));
  std::string bytes = raw.bytes;
  CFS_ASSIGN(auto m, ocirepo::parse_seal(std::move(raw.bytes), subject, alg, what));
  if (!m) return std::nullopt;
  Seal s{subject, m->manifest.digest, m->image, {}, std::move(bytes)};
  if (m->signature) {
    StringBlobSink sink;
    CFS_TRY(
        client.fetch_blob(image, BlobFetch{m->signature->digest, m->signature->size, &sink}, {}));
    s.signature.assign(sink.out.begin(), sink.out.end());
  }
  return std::make_optional(std::move(s));
}

}  // namespace

Result<Seal> push_seal(Client& client, const Reference& image, const verity::Digest& image_digest,
                       std::span<const std::uint8_t> signature,
                       const std::optional<oci::ContentDigest>& config) {
  CFS_ASSIGN(auto subject, client.get_manifest(image));
  CFS_ASSIGN(auto kind, oci::manifest_kind(subject.bytes, subject.media_type));
  if (kind == oci::ManifestKind::kIndex)
    return fail(Errc::kInvalidInput,
                image.str() + " is an index: seal one platform's manifest (name it by digest)");
  if (config) {
    CFS_ASSIGN(auto m, oci::parse_manifest(subject.bytes, image.str()));
    if (m.config.digest != *config)
      return fail(Errc::kDigestMismatch, image.str() + ": its config is " + m.config.digest.str() +
                                             ", not the sealed image's " + config->str());
  }
  const auto empty = std::as_bytes(std::span(kEmptyBlob.data(), kEmptyBlob.size()));
  const bool signed_ = !signature.empty();
  const auto layer_bytes = signed_ ? std::as_bytes(signature) : empty;
  CFS_ASSIGN(auto layer, push_bytes(client, image, layer_bytes));

  auto layer_json =
      descriptor_json(signed_ ? kSealSignatureType : kEmptyMediaType, layer, layer_bytes.size());
  layer_json["annotations"] = {{merged_seal_annotation(image_digest.alg), image_digest.hex()}};
  CFS_ASSIGN(auto pushed, detail::put_artifact(client, image, subject, kSealArtifactType,
                                               nlohmann::json::array({layer_json})));
  return Seal{subject.digest, pushed.digest, image_digest,
              std::vector<std::uint8_t>(signature.begin(), signature.end()),
              std::move(pushed.bytes)};
}

Result<std::vector<Seal>> read_seals(Client& client, const Reference& image, verity::HashAlg alg) {
  CFS_ASSIGN(auto info, client.stat_manifest(image));
  CFS_ASSIGN(auto refs, client.list_referrers(image, info.digest, kSealArtifactType));
  std::vector<Seal> out;
  for (const auto& d : refs.manifests) {
    CFS_ASSIGN(auto s, read_seal(client, image, info.digest, d.digest, alg));
    if (s) out.push_back(std::move(*s));
  }
  return out;
}

Result<Seal> verify_seal(Client& client, const Reference& image, const verity::Digest& computed,
                         const std::optional<std::string>& cert_file) {
  CFS_ASSIGN(auto seals, read_seals(client, image, computed.alg));
  return ocirepo::select_seal(std::move(seals), computed, cert_file, image.str());
}

Result<Seal> verify_repository_seal(Client& client, const Reference& subject,
                                    const repo::Repository& repo, const verity::Digest& image,
                                    const std::optional<std::string>& cert_file) {
  const verity::HashAlg other = repo.algorithm() == verity::HashAlg::kSha512
                                    ? verity::HashAlg::kSha256
                                    : verity::HashAlg::kSha512;
  std::optional<Error> missing;
  for (verity::HashAlg alg : {repo.algorithm(), other}) {
    CFS_ASSIGN(auto digest, repository_image_digest(repo, image, alg));
    auto s = verify_seal(client, subject, digest, cert_file);
    if (s || !s.error().is(Errc::kObjectMissing)) return s;
    if (!missing) missing = std::move(s).error();
  }
  return fail(std::move(*missing));
}

}  // namespace cfs::registry
