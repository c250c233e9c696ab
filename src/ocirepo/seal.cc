// SPDX-License-Identifier: Apache-2.0
// Composefs seals: format, choice, and seals recorded in a repository (cfs/ocirepo/seal.h).
#include "cfs/ocirepo/seal.h"

#include <fmt/format.h>

#include "cfs/ocirepo/names.h"
#include "cfs/splitstream/format.h"
#include "cfs/tree/object_name.h"
#include "cfs/verity/measure.h"
#include "cfs/verity/signature.h"
#include "ocirepo/store.h"

namespace cfs::ocirepo {
namespace {

std::string referrer_prefix(const oci::ContentDigest& subject) {
  return std::string(kReferrerDir) + "/" + encode_tag(subject.str()) + "/";
}

verity::HashAlg other_alg(verity::HashAlg alg) {
  return alg == verity::HashAlg::kSha512 ? verity::HashAlg::kSha256 : verity::HashAlg::kSha512;
}

// One recorded seal, read back: the manifest from its stream, the signature from its blob.
Result<std::optional<Seal>> read_recorded(const repo::Repository& repo,
                                          const oci::ContentDigest& subject, const std::string& ref,
                                          verity::HashAlg alg) {
  const std::string what = "recorded seal streams/refs/" + ref;
  CFS_ASSIGN(auto found, repo.resolve_stream("refs/" + ref));
  CFS_ASSIGN(auto reader, detail::open_stream(repo, found.first, splitstream::kOciManifest, what));
  CFS_ASSIGN(std::string raw, detail::read_small_stream(repo, reader, oci::kMaxManifestSize, what));
  CFS_ASSIGN(auto parsed, parse_seal(raw, subject, alg, what));
  if (!parsed) return std::nullopt;
  Seal s{subject, parsed->manifest.digest, parsed->image, {}, std::move(raw)};
  if (parsed->signature) {
    const auto& d = *parsed->signature;
    auto blob = reader.named_ref(d.digest.str());
    if (!blob)
      return fail(Errc::kCorruptImage,
                  fmt::format("{}: no named ref to its signature {}", what, d.digest.str()));
    const std::string swhat = what + ": signature " + d.digest.str();
    CFS_ASSIGN(auto br, detail::open_stream(repo, *blob, splitstream::kOciBlob, swhat));
    CFS_ASSIGN(std::string sig, detail::read_small_stream(repo, br, kMaxSealSignatureSize, swhat));
    if (oci::sha256_of(sig) != d.digest || sig.size() != d.size)
      return fail(Errc::kDigestMismatch, swhat + ": the stored bytes are not that blob");
    s.signature.assign(sig.begin(), sig.end());
  }
  return std::make_optional(std::move(s));
}

}  // namespace

std::string merged_seal_annotation(verity::HashAlg alg) {
  return std::string("composefs.merged.erofs.v1.fsverity-") + verity::hash_alg_name(alg) + "-12";
}

Result<std::optional<SealManifest>> parse_seal(std::string raw, const oci::ContentDigest& subject,
                                               verity::HashAlg alg, const std::string& what) {
  CFS_ASSIGN(auto m, oci::parse_manifest(std::move(raw), what));
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
    SealManifest out{std::move(m), *digest, std::nullopt};
    if (layer.media_type == kSealSignatureType) {
      if (layer.size > kMaxSealSignatureSize)
        return fail(Errc::kInvalidInput,
                    what + ": signature of " + std::to_string(layer.size) + " bytes is too large");
      out.signature = layer;
    } else if (layer.media_type != kEmptyMediaType) {
      return fail(Errc::kInvalidInput, what + ": layer of media type " + layer.media_type +
                                           " is neither a signature nor empty");
    }
    return std::make_optional(std::move(out));
  }
  return std::nullopt;  // a seal of another algorithm only
}

Result<Seal> select_seal(std::vector<Seal> seals, const verity::Digest& computed,
                         const std::optional<std::string>& cert_file, const std::string& what) {
  std::optional<Error> first;
  std::size_t candidates = 0;
  for (auto& s : seals) {
    if (cert_file && s.signature.empty()) continue;
    ++candidates;
    if (s.image != computed) {
      if (!first)
        first = Error(Errc::kDigestMismatch, what + ": sealed composefs image " + s.image.str() +
                                                 " (seal " + s.artifact.str() +
                                                 ") is not the computed " + computed.str());
      continue;
    }
    if (cert_file) {
      auto ok = verity::verify_digest_signature(computed, s.signature, *cert_file,
                                                what + ": seal " + s.artifact.str());
      if (!ok) {
        if (!first) first = std::move(ok).error();
        continue;
      }
    }
    return std::move(s);
  }
  if (candidates == 0)
    return fail(Errc::kObjectMissing, what + ": no " + (cert_file ? "signed " : "") +
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

Status record_seal(repo::Repository& repo, const Seal& seal) {
  std::vector<std::pair<std::string, verity::Digest>> refs;
  std::optional<std::pair<std::string, verity::Digest>> blob;
  if (!seal.signature.empty()) {
    const std::string sig(seal.signature.begin(), seal.signature.end());
    const auto digest = oci::sha256_of(sig);
    CFS_ASSIGN(auto stream, detail::write_document(repo, splitstream::kOciBlob, sig, {}));
    refs.emplace_back(digest.str(), stream);
    blob.emplace(blob_stream_name(digest), stream);
  }
  CFS_ASSIGN(auto stream,
             detail::write_document(repo, splitstream::kOciManifest, seal.manifest, refs));
  CFS_TRY(repo.sync());
  if (blob) CFS_TRY(repo.link_stream(blob->first, blob->second));
  const std::string name = manifest_stream_name(seal.artifact);
  CFS_TRY(repo.link_stream(name, stream));
  return repo.set_ref(repo::Kind::kStream,
                      referrer_prefix(seal.subject) + encode_tag(seal.artifact.str()), name);
}

Result<std::vector<Seal>> recorded_seals(const repo::Repository& repo,
                                         const oci::ContentDigest& subject, verity::HashAlg alg) {
  CFS_ASSIGN(auto refs, repo.list_refs(repo::Kind::kStream));
  const std::string prefix = referrer_prefix(subject);
  std::vector<Seal> out;
  for (const auto& r : refs) {
    if (!r.name.starts_with(prefix)) continue;
    CFS_ASSIGN(auto s, read_recorded(repo, subject, r.name, alg));
    if (s) out.push_back(std::move(*s));
  }
  return out;
}

Result<Seal> require_seal(const repo::Repository& repo, const StoredImage& image,
                          const std::optional<std::string>& cert_file) {
  if (!image.image)
    return fail(Errc::kObjectMissing,
                image.manifest_stream_name + ": no merged image linked; pull it again");
  const std::string what = "image " + image.manifest.digest.str();
  std::optional<Error> missing;
  for (verity::HashAlg alg : {repo.algorithm(), other_alg(repo.algorithm())}) {
    CFS_ASSIGN(auto seals, recorded_seals(repo, image.manifest.digest, alg));
    if (seals.empty()) continue;
    // Measured from the object, not taken from its name: in a repository without verity
    // the name alone proves nothing.
    CFS_ASSIGN(auto fd, repo.open_object(*image.image));
    verity::Params p;
    p.alg = alg;
    CFS_ASSIGN(auto m, verity::measure_or_compute(fd.get(), p, repo.object_path(*image.image)));
    auto s = select_seal(std::move(seals), m.digest, cert_file, what);
    if (s || !s.error().is(Errc::kObjectMissing)) return s;
    if (!missing) missing = std::move(s).error();
  }
  if (missing) return fail(std::move(*missing));
  return fail(Errc::kObjectMissing,
              fmt::format("{}: no composefs seal is recorded in {} (pull it with --verify-seal)",
                          what, repo.path()));
}

}  // namespace cfs::ocirepo
