// SPDX-License-Identifier: Apache-2.0
// Composefs seals (composefs-rs sealing spec, artifact mode): the format, the choice of the
// seal that vouches for an image, and seals recorded in a repository. The registry module
// moves seals over the network (cfs/registry/seal.h); `cfs oci mount --require-seal` checks
// the recorded ones without a network.
//
// A seal is an OCI artifact manifest:
//   artifactType application/vnd.composefs.metadata.v1, the empty config
//   (application/vnd.oci.empty.v1+json, "{}"), subject = the image manifest, and one layer:
//   the PKCS#7 signature (application/vnd.composefs.signature.v1+pkcs7), or when unsigned the
//   empty blob, annotated composefs.merged.erofs.v1.fsverity-<sha256|sha512>-12 = <hex>.
//
// In a repository (composefs-rs' referrer layout, ocirepo/names.h), a seal checked by
// `cfs oci pull --verify-seal` is recorded as
//   streams/oci-manifest-<artifact digest>   the seal manifest, raw ("ocimanif"); when signed,
//                                            named ref <signature digest> -> the blob stream
//   streams/oci-blob-<signature digest>      the signature, as pulled ("oci_blob")
//   streams/refs/oci-referrers/<enc subject>/<enc artifact>  -> the seal manifest stream
// (<enc> as tags are encoded). The empty config and empty layer are not stored: their bytes
// are "{}", fixed by their descriptors.
// Thread-safety: functions only; a Repository written by one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/digest.h"
#include "cfs/oci/image.h"
#include "cfs/ocirepo/images.h"
#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::ocirepo {

inline constexpr std::string_view kSealArtifactType = "application/vnd.composefs.metadata.v1";
inline constexpr std::string_view kSealSignatureType =
    "application/vnd.composefs.signature.v1+pkcs7";
inline constexpr std::string_view kEmptyMediaType = "application/vnd.oci.empty.v1+json";
/// Largest signature blob read back (a PKCS#7 of one digest is well under 4 KiB).
inline constexpr std::uint64_t kMaxSealSignatureSize = 64u << 10;
/// Directory of referrers below streams/refs/ (composefs-rs' name).
inline constexpr std::string_view kReferrerDir = "oci-referrers";

/// "composefs.merged.erofs.v1.fsverity-sha512-12": the annotation carrying the merged image's
/// digest for `alg`.
std::string merged_seal_annotation(verity::HashAlg alg);

struct Seal {
  oci::ContentDigest subject;           ///< the image manifest sealed
  oci::ContentDigest artifact;          ///< the seal's own manifest
  verity::Digest image;                 ///< the sealed composefs image digest
  std::vector<std::uint8_t> signature;  ///< DER PKCS#7; empty when unsigned
  std::string manifest;                 ///< the seal manifest's raw bytes
};

/// What one seal manifest says, parsed and checked against `subject`.
struct SealManifest {
  oci::Manifest manifest;
  verity::Digest image;
  /// The signature layer's descriptor (kSealSignatureType), nullopt when unsigned.
  std::optional<oci::Descriptor> signature;
};

/// Parses `raw`: nullopt when it is not a composefs seal, or a seal with no digest of `alg`;
/// an error (kInvalidInput naming `what` and the field) when it is a malformed one or has
/// another subject.
Result<std::optional<SealManifest>> parse_seal(std::string raw, const oci::ContentDigest& subject,
                                               verity::HashAlg alg, const std::string& what);

/// The seal among `seals` that vouches for `computed`: its digest equals it and, with
/// `cert_file`, its signature verifies with that PEM certificate's key. kObjectMissing when
/// there is no seal of computed's algorithm (with a certificate: no signed one);
/// kDigestMismatch when seals exist but none matches (naming the sealed and computed digests
/// or the signature failure). `what` names the image in errors.
Result<Seal> select_seal(std::vector<Seal> seals, const verity::Digest& computed,
                         const std::optional<std::string>& cert_file, const std::string& what);

/// The digest, in `alg`, of the repository's image images/<hex of `image`> (the kernel's
/// measurement when it has one, else computed): what a seal of `alg` must name.
Result<verity::Digest> repository_image_digest(const repo::Repository& repo,
                                               const verity::Digest& image, verity::HashAlg alg);

/// Records a checked seal (layout above); recording it again changes nothing.
Status record_seal(repo::Repository& repo, const Seal& seal);

/// Every seal recorded for the manifest `subject` that carries a digest of `alg`.
Result<std::vector<Seal>> recorded_seals(const repo::Repository& repo,
                                         const oci::ContentDigest& subject, verity::HashAlg alg);

/// `cfs oci mount --require-seal[=CERT]`: a recorded seal of `image`'s manifest names its
/// merged image (the repository's algorithm tried first, then the other one, measured from
/// the image object) and, with `cert_file`, is signed by that certificate's key.
Result<Seal> require_seal(const repo::Repository& repo, const StoredImage& image,
                          const std::optional<std::string>& cert_file);

}  // namespace cfs::ocirepo
