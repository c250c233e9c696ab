// SPDX-License-Identifier: Apache-2.0
// Image references in the containers-transports(5) `docker://` syntax. Content digests are
// oci::ContentDigest (cfs/oci/digest.h).
//
//   docker://HOST[:PORT]/NAME[:TAG][@DIGEST]
//
// As in containers/image, a first component without '.' or ':' that is not "localhost" is a
// Docker Hub name ("busybox" = "docker.io/library/busybox"), and the tag defaults to "latest"
// unless a digest is given. Thread-safety: value types.
#pragma once

#include <string>
#include <string_view>

#include "cfs/oci/digest.h"
#include "cfs/util/result.h"

namespace cfs::registry {

/// The distribution-spec 1.1 referrers fallback tag of a digest: "sha256-<hex>".
std::string referrers_tag(const oci::ContentDigest& d);

/// A parsed `docker://` reference.
struct Reference {
  std::string registry;    ///< "host", "host:port" or "[v6]:port"; Docker Hub is "docker.io"
  std::string repository;  ///< "cfs/test", "library/busybox"
  std::string tag;         ///< "latest" when neither tag nor digest was given
  std::string digest;      ///< "sha256:<hex>" or empty; when set it selects the manifest

  /// What GET /v2/<repository>/manifests/<...> asks for: the digest if set, else the tag.
  std::string manifest_reference() const { return digest.empty() ? tag : digest; }
  /// The host the API is served from (Docker Hub's is registry-1.docker.io).
  std::string api_host() const;
  /// "docker://registry/repository[:tag][@digest]".
  std::string str() const;
  /// The same repository, manifest selected by digest (the tag dropped).
  Reference with_digest(const std::string& d) const;
  /// The same repository with another tag and no digest.
  Reference with_tag(const std::string& t) const;
};

/// Parses "docker://..." (the prefix may be omitted). Errc::kInvalidInput with the reason.
Result<Reference> parse_reference(std::string_view text);

/// Validates a registry host as login/logout take it ("host[:port]", optionally with a
/// "/namespace/..." suffix as auth.json keys allow) and returns it normalised (no scheme, no
/// trailing '/', "index.docker.io"/"registry-1.docker.io" written "docker.io").
Result<std::string> normalize_registry_key(std::string_view text);

}  // namespace cfs::registry
