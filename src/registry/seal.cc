// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/seal.h"

#include <nlohmann/json.hpp>

#include "cfs/oci/image.h"
#include "cfs/tree/object_name.h"
#include "cfs/verity/measure.h"
#include "cfs/verity/signature.h"

namespace cfs::registry {
namespace {

// The OCI empty descriptor's blob ("{}", image-spec manifest.md "Guidance for an Empty
// Descriptor").
constexpr std::string_view kEmptyBlob = "{}";

class StringSink final : public BlobSink {
 public:
  Status write(std::span<const std::byte> data) override {
    out.append(reinterpret_cast<const char*>(data.data()), data.size());
    return {};
  }
  Status restart() override {
    out.clear();
    return {};
  }
  std::string out;
};

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

// One seal artifact, read back and checked: its subject, its annotation, its signature blob.
Result<std::optional<Seal>> read_seal(Client& client, const Reference& image,
                                      const oci::ContentDigest& subject,
                                      const oci::ContentDigest& artifact, verity::HashAlg alg) {
  const std::string what = "seal " + artifact.str() + " of " + subject.str();
  CFS_ASSIGN(auto raw, client.get_manifest(image.with_digest(artifact.str())));
  CFS_ASSIGN(auto m, oci::parse_manifest(std::move(raw.bytes), what));
  if (m.artifact_type != kSealArtifactType) return std::nullopt;
  if (!m.subject || m.subject->digest != subject)
    return fail(Errc::kInvalidInput, what + ": its subject is not " + subject.str());
  const std::string key = merged_seal_annotation(alg);
  for (const auto& layer : m.layers) {
    auto a = layer.annotations.find(key);
    if (a == layer.annotations.end()) continue;
    auto digest = tree::parse_digest_hex(a->second, alg);
    if (!digest || digest->hex() != a->second)
      return fail(Errc::kInvalidInput,
                  what + ": annotation " + key + " is not a lowercase digest: " + a->second);
    Seal s{subject, m.digest, *digest, {}};
    if (layer.media_type == kSealSignatureType) {
      if (layer.size > kMaxSealSignatureSize)
        return fail(Errc::kInvalidInput,
                    what + ": signature of " + std::to_string(layer.size) + " bytes is too large");
      StringSink sink;
      CFS_TRY(client.fetch_blob(image, BlobFetch{layer.digest, layer.size, &sink}, {}));
      s.signature.assign(sink.out.begin(), sink.out.end());
    } else if (layer.media_type != kEmptyMediaType) {
      return fail(Errc::kInvalidInput, what + ": layer of media type " + layer.media_type +
                                           " is neither a signature nor empty");
    }
    return std::make_optional(std::move(s));
  }
  return std::nullopt;  // a seal of another algorithm only
}

}  // namespace

std::string merged_seal_annotation(verity::HashAlg alg) {
  return std::string("composefs.merged.erofs.v1.fsverity-") + verity::hash_alg_name(alg) + "-12";
}

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
  CFS_ASSIGN(auto empty_config, push_bytes(client, image, empty));
  const bool signed_ = !signature.empty();
  const auto layer_bytes = signed_ ? std::as_bytes(signature) : empty;
  CFS_ASSIGN(auto layer, push_bytes(client, image, layer_bytes));

  auto layer_json =
      descriptor_json(signed_ ? kSealSignatureType : kEmptyMediaType, layer, layer_bytes.size());
  layer_json["annotations"] = {{merged_seal_annotation(image_digest.alg), image_digest.hex()}};
  const nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"artifactType", kSealArtifactType},
      {"config", descriptor_json(kEmptyMediaType, empty_config, kEmptyBlob.size())},
      {"layers", nlohmann::json::array({layer_json})},
      {"subject", descriptor_json(subject.media_type, subject.digest, subject.bytes.size())},
  };
  const std::string bytes = manifest.dump();
  const auto digest = oci::sha256_of(bytes);
  CFS_ASSIGN(auto pushed,
             client.put_manifest(image.with_digest(digest.str()), kOciManifest, bytes));
  return Seal{subject.digest, pushed, image_digest,
              std::vector<std::uint8_t>(signature.begin(), signature.end())};
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
  std::optional<Error> first;
  std::size_t candidates = 0;
  for (auto& s : seals) {
    if (cert_file && s.signature.empty()) continue;
    ++candidates;
    if (s.image != computed) {
      if (!first)
        first = Error(Errc::kDigestMismatch, image.str() + ": sealed composefs image " +
                                                 s.image.str() + " (seal " + s.artifact.str() +
                                                 ") is not the computed " + computed.str());
      continue;
    }
    if (cert_file) {
      auto ok = verity::verify_digest_signature(computed, s.signature, *cert_file,
                                                image.str() + ": seal " + s.artifact.str());
      if (!ok) {
        if (!first) first = std::move(ok).error();
        continue;
      }
    }
    return std::move(s);
  }
  if (candidates == 0)
    return fail(Errc::kObjectMissing, image.str() + ": no " + (cert_file ? "signed " : "") +
                                          "composefs seal (" +
                                          merged_seal_annotation(computed.alg) + ") is attached");
  return fail(std::move(*first));
}

Result<verity::Digest> repository_image_digest(const repo::Repository& repo,
                                               const verity::Digest& image, verity::HashAlg alg) {
  if (alg == image.alg) {
    if (!repo.has_object(image))
      return fail(Errc::kObjectMissing, repo.path() + ": no image " + image.hex());
    return image;
  }
  CFS_ASSIGN(auto fd, repo.open_object(image));
  verity::Params p;
  p.alg = alg;
  CFS_ASSIGN(auto m, verity::measure_or_compute(fd.get(), p, repo.object_path(image)));
  return m.digest;
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
