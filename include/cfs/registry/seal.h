// SPDX-License-Identifier: Apache-2.0
// Composefs seals in a registry (composefs-rs sealing spec, artifact mode; docs/registry.md;
// the format and the choice of seal: cfs/ocirepo/seal.h): pushed as an OCI artifact whose
// subject is the image manifest, found through the referrers API or its sha256-<hex> fallback
// tag (Client::list_referrers). The signature is an fs-verity built-in signature of the digest
// (cfs/verity/signature.h), so the same bytes can be handed to the kernel.
// Thread-safety: functions only; see Client.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/ocirepo/seal.h"
#include "cfs/registry/client.h"
#include "cfs/repo/repository.h"
#include "cfs/verity/digest.h"

namespace cfs::registry {

using ocirepo::kEmptyMediaType;
using ocirepo::kMaxSealSignatureSize;
using ocirepo::kSealArtifactType;
using ocirepo::kSealSignatureType;
using ocirepo::merged_seal_annotation;
using ocirepo::repository_image_digest;
using ocirepo::Seal;

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

/// verify_seal() for the repository image `image`: against the seals of the repository's
/// algorithm, or when the manifest has none of it, of the other one.
Result<Seal> verify_repository_seal(Client& client, const Reference& subject,
                                    const repo::Repository& repo, const verity::Digest& image,
                                    const std::optional<std::string>& cert_file);

}  // namespace cfs::registry
