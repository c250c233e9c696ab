// SPDX-License-Identifier: Apache-2.0
#include "cfs/overlay/metacopy.h"

#include <cerrno>
#include <cstring>

namespace cfs::overlay {
namespace {

std::uint8_t byte(std::string_view v, std::size_t i) { return static_cast<std::uint8_t>(v[i]); }

// The algorithm a header names, if cfs knows it (FS_VERITY_HASH_ALG_SHA256/512).
std::optional<verity::HashAlg> known_alg(std::uint8_t id) {
  if (id == static_cast<std::uint8_t>(verity::HashAlg::kSha256)) return verity::HashAlg::kSha256;
  if (id == static_cast<std::uint8_t>(verity::HashAlg::kSha512)) return verity::HashAlg::kSha512;
  return std::nullopt;
}

verity::Digest digest_of(verity::HashAlg alg, std::string_view value) {
  verity::Digest d = verity::Digest::zero(alg);
  std::memcpy(d.bytes.data(), value.data() + kMetacopyMinSize, d.size);
  return d;
}

}  // namespace

MetacopyBytes Metacopy::encode(const verity::Digest& digest) noexcept {
  MetacopyBytes out;
  out.size = kMetacopyMinSize + digest.size;
  out.bytes[0] = static_cast<char>(kMetacopyVersion);
  out.bytes[1] = static_cast<char>(out.size);
  out.bytes[2] = 0;  // flags
  out.bytes[3] = static_cast<char>(digest.alg);
  std::memcpy(out.bytes.data() + kMetacopyMinSize, digest.bytes.data(), digest.size);
  return out;
}

Status Metacopy::check_at_lookup(std::string_view value) {
  if (!value.empty() && value.size() < kMetacopyMinSize)
    return fail_errno("trusted.overlay.metacopy: too small xattr", EIO);
  return {};
}

Result<Metacopy> Metacopy::decode(std::string_view value) {
  CFS_TRY(check_at_lookup(value));
  Metacopy m;
  // OVL_HAS_DIGEST: the kernel reads the header only when there is more than the header.
  if (value.size() <= kMetacopyMinSize) return m;
  if (value.size() > kMetacopyMaxSize)
    return fail_errno("trusted.overlay.metacopy: value too large", ERANGE);
  if (byte(value, 0) != kMetacopyVersion)
    return fail_errno("trusted.overlay.metacopy: unsupported version", EIO);
  if (byte(value, 1) != value.size())
    return fail_errno("trusted.overlay.metacopy: invalid size", EIO);
  if (byte(value, 3) == 0) return m;
  // The kernel compares algorithm and size against the file's real fs-verity digest, so an
  // unknown algorithm or a digest of the wrong size can never match: the open fails.
  auto alg = known_alg(byte(value, 3));
  if (!alg || value.size() - kMetacopyMinSize != verity::digest_size(*alg))
    return fail_errno("trusted.overlay.metacopy: wrong digest size or algorithm", EIO);
  m.digest = digest_of(*alg, value);
  return m;
}

std::optional<verity::Digest> Metacopy::read_digest(std::string_view value) noexcept {
  constexpr std::size_t kSha256Value = kMetacopyMinSize + 32;
  constexpr std::size_t kSha512Value = kMetacopyMinSize + 64;
  if (value.size() == kSha256Value) return digest_of(verity::HashAlg::kSha256, value);
  if (value.size() == kSha512Value && byte(value, 0) == kMetacopyVersion &&
      byte(value, 1) == kSha512Value &&
      byte(value, 3) == static_cast<std::uint8_t>(verity::HashAlg::kSha512))
    return digest_of(verity::HashAlg::kSha512, value);
  return std::nullopt;
}

}  // namespace cfs::overlay
