// SPDX-License-Identifier: Apache-2.0
// Image references in the containers-transports(5) `docker://` syntax and content digests
// (`sha256:<hex>`, the OCI descriptor digest, not an fs-verity digest).
//
//   docker://HOST[:PORT]/NAME[:TAG][@DIGEST]
//
// As in containers/image, a first component without '.' or ':' that is not "localhost" is a
// Docker Hub name ("busybox" = "docker.io/library/busybox"), and the tag defaults to "latest"
// unless a digest is given. Thread-safety: value types.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "cfs/util/result.h"

namespace cfs::registry {

/// Hash algorithms of OCI content digests (image-spec descriptor.md registers these two).
enum class DigestAlg { kSha256, kSha512 };

/// A content digest "ALG:HEX" with lowercase hex of the right length.
struct ContentDigest {
  DigestAlg alg = DigestAlg::kSha256;
  std::string hex;

  /// "sha256:<hex>".
  std::string str() const;
  /// "sha256-<hex>": the distribution-spec 1.1 referrers fallback tag of this digest.
  std::string fallback_tag() const;
  bool operator==(const ContentDigest&) const = default;
};

/// Parses "sha256:<64 hex>" or "sha512:<128 hex>"; Errc::kInvalidInput names the text.
Result<ContentDigest> parse_digest(std::string_view text);

/// Streaming hash of a blob (OpenSSL). Move-only.
class ContentHasher {
 public:
  explicit ContentHasher(DigestAlg alg = DigestAlg::kSha256);
  ContentHasher(ContentHasher&&) noexcept;
  ContentHasher& operator=(ContentHasher&&) noexcept;
  ContentHasher(const ContentHasher&) = delete;
  ContentHasher& operator=(const ContentHasher&) = delete;
  ~ContentHasher();

  void update(std::span<const std::byte> data);
  /// The digest of everything passed to update(); the hasher is reset afterwards.
  ContentDigest finish();
  DigestAlg alg() const noexcept { return alg_; }

 private:
  DigestAlg alg_;
  void* ctx_;  // EVP_MD_CTX*, kept out of the header
};

/// The digest of bytes held in memory.
ContentDigest digest_of(std::span<const std::byte> data, DigestAlg alg = DigestAlg::kSha256);
ContentDigest digest_of(std::string_view data, DigestAlg alg = DigestAlg::kSha256);

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
