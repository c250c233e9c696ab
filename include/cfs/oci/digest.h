// SPDX-License-Identifier: Apache-2.0
// OCI content digests ("sha256:<hex>", image-spec descriptor.md): parsing with the grammar's
// checks (a digest names files in layouts, so nothing but lowercase hex of the right length is
// accepted for the algorithms cfs verifies), and streaming hashing of blobs.
// Thread-safety: value types; one thread per Hasher.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "cfs/oci/byte_source.h"
#include "cfs/util/result.h"

namespace cfs::oci {

struct ContentDigest {
  std::string algorithm;  ///< "sha256" or "sha512"
  std::string hex;        ///< lowercase, 64 or 128 digits
  std::string str() const { return algorithm + ":" + hex; }
  bool empty() const noexcept { return hex.empty(); }
  friend bool operator==(const ContentDigest&, const ContentDigest&) = default;
  friend auto operator<=>(const ContentDigest&, const ContentDigest&) = default;

  /// Parses "algorithm:encoded". Other registered or well-formed algorithms are refused with
  /// kUnsupportedFeature, malformed text with kInvalidInput (both naming the text).
  static Result<ContentDigest> parse(std::string_view text);
};

/// Streaming SHA-256 / SHA-512 (OpenSSL).
class ContentHasher {
 public:
  explicit ContentHasher(std::string_view algorithm = "sha256");
  ~ContentHasher();
  ContentHasher(ContentHasher&&) noexcept;
  ContentHasher& operator=(ContentHasher&&) noexcept;
  void update(std::span<const std::byte> data);
  std::uint64_t size() const noexcept { return size_; }
  ContentDigest finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  std::string alg_;
  std::uint64_t size_ = 0;
};

ContentDigest sha256_of(std::span<const std::byte> data);
inline ContentDigest sha256_of(std::string_view s) {
  return sha256_of(std::as_bytes(std::span(s.data(), s.size())));
}

/// Passes a stream through unchanged while hashing and counting it.
class HashingSource final : public ByteSource {
 public:
  explicit HashingSource(ByteSource& in, std::string_view algorithm = "sha256")
      : in_(in), hasher_(algorithm) {}
  Result<std::size_t> read(std::span<std::byte> buf) override;
  std::uint64_t size() const noexcept { return hasher_.size(); }
  /// The digest of everything read (call once, at the end).
  ContentDigest finish() { return hasher_.finish(); }

 private:
  ByteSource& in_;
  ContentHasher hasher_;
};

}  // namespace cfs::oci
