// SPDX-License-Identifier: Apache-2.0
// Composefs seals in a registry (composefs-rs sealing spec, artifact mode; docs/registry.md):
// the fs-verity digest of an image's merged composefs EROFS, optionally signed, attached to
// the image manifest as an OCI artifact
//
//   manifest  artifactType application/vnd.composefs.metadata.v1, the empty config
//             (application/vnd.oci.empty.v1+json, "{}"), subject = the image manifest
//   layer     the PKCS#7 signature (application/vnd.composefs.signature.v1+pkcs7), or when
//             unsigned the empty blob (application/vnd.oci.empty.v1+json), annotated
//             composefs.merged.erofs.v1.fsverity-<sha256|sha512>-12 = <lowercase hex>
//
// found through the referrers API or its sha256-<hex> fallback tag (Client::list_referrers).
// The signature is an fs-verity built-in signature of the digest (cfs/verity/signature.h), so
// the same bytes can be handed to the kernel.
// Thread-safety: functions only; see Client.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/registry/client.h"
#include "cfs/repo/repository.h"
#include "cfs/verity/digest.h"

namespace cfs::registry {

inline constexpr std::string_view kSealArtifactType = "application/vnd.composefs.metadata.v1";
inline constexpr std::string_view kSealSignatureType =
    "application/vnd.composefs.signature.v1+pkcs7";
inline constexpr std::string_view kEmptyMediaType = "application/vnd.oci.empty.v1+json";
/// Largest signature blob read back (a PKCS#7 of one digest is well under 4 KiB).
inline constexpr std::uint64_t kMaxSealSignatureSize = 64u << 10;

/// "composefs.merged.erofs.v1.fsverity-sha512-12": the annotation carrying the merged image's
/// digest for `alg`.
std::string merged_seal_annotation(verity::HashAlg alg);

struct Seal {
  oci::ContentDigest subject;           ///< the image manifest sealed
  oci::ContentDigest artifact;          ///< the seal's own manifest
  verity::Digest image;                 ///< the sealed composefs image digest
  std::vector<std::uint8_t> signature;  ///< DER PKCS#7; empty when unsigned
};

/// Attaches a seal of `image_digest` (signed when `signature` is not empty) to the manifest
/// `image` names. With `config`, that manifest's config must be this digest (the config's
/// diff_ids decide the layers the sealed image was merged from). Pushing the same seal again
/// changes nothing (same artifact digest).
Result<Seal> push_seal(Client& client, const Reference& image, const verity::Digest& image_digest,
                       std::span<const std::uint8_t> signature,
                       const std::optional<oci::ContentDigest>& config = std::nullopt);

/// Every seal of `alg` attached to the manifest `image` names (the subject digest is taken
/// from the registry), oldest listed first. Artifacts that are not composefs seals are
/// skipped; a composefs seal that is malformed is an error naming it.
Result<std::vector<Seal>> read_seals(Client& client, const Reference& image, verity::HashAlg alg);

/// The seal that vouches for `computed`: one whose digest equals it and, when `cert_file` is
/// given, whose signature verifies with that certificate. Errc::kObjectMissing when the image
/// has no seal of computed's algorithm (or, with a certificate, no signed one);
/// Errc::kDigestMismatch when seals exist but none matches (naming the sealed and the computed
/// digests, or the signature failure).
Result<Seal> verify_seal(Client& client, const Reference& image, const verity::Digest& computed,
                         const std::optional<std::string>& cert_file);

/// The digest, in `alg`, of the repository's image images/<hex of `image`> (the kernel's
/// measurement when it has one, else computed): what a seal of `alg` must name.
Result<verity::Digest> repository_image_digest(const repo::Repository& repo,
                                               const verity::Digest& image, verity::HashAlg alg);

/// verify_seal() for the repository image `image`: against the seals of the repository's
/// algorithm, or when the manifest has none of it, of the other one.
Result<Seal> verify_repository_seal(Client& client, const Reference& subject,
                                    const repo::Repository& repo, const verity::Digest& image,
                                    const std::optional<std::string>& cert_file);

}  // namespace cfs::registry
