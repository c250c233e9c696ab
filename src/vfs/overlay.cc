// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/overlay.h"

#include <cerrno>

namespace cfs::vfs {
namespace {

constexpr std::size_t kMetacopyMinSize = 4;   // OVL_METACOPY_MIN_SIZE
constexpr std::size_t kMetacopyMaxSize = 68;  // OVL_METACOPY_MAX_SIZE

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

std::optional<std::string> visible_xattr_name(std::string_view raw) {
  if (starts_with(raw, kEscapedPrefix)) {
    // ovl_xattr_unescape: "trusted.overlay.overlay.X" is listed as "trusted.overlay.X"; an
    // escaped name with an empty suffix is still private.
    std::string out(kOverlayPrefix);
    out.append(raw.substr(kEscapedPrefix.size()));
    return out;
  }
  if (starts_with(raw, kOverlayPrefix)) return std::nullopt;
  return std::string(raw);
}

std::optional<std::string> raw_xattr_name(std::string_view visible) {
  if (starts_with(visible, kOverlayPrefix)) {
    std::string out(kEscapedPrefix);
    out.append(visible.substr(kOverlayPrefix.size()));
    return out;
  }
  return std::string(visible);
}

Status check_metacopy_at_lookup(std::string_view value) {
  if (!value.empty() && value.size() < kMetacopyMinSize)
    return fail_errno("trusted.overlay.metacopy: too small xattr", EIO);
  return {};
}

Result<Metacopy> parse_metacopy(std::string_view value) {
  Metacopy m;
  m.raw_size = value.size();
  CFS_TRY(check_metacopy_at_lookup(value));
  if (!m.has_digest_flag()) return m;
  if (value.size() > kMetacopyMaxSize)
    return fail_errno("trusted.overlay.metacopy: value too large", ERANGE);
  auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(value[i]); };
  if (byte(0) != 0) return fail_errno("trusted.overlay.metacopy: unsupported version", EIO);
  if (byte(1) != value.size()) return fail_errno("trusted.overlay.metacopy: invalid size", EIO);
  m.digest_algo = byte(3);
  if (m.digest_algo == 0) return m;
  std::size_t want = m.digest_algo == 1 ? 32 : m.digest_algo == 2 ? 64 : 0;
  // The kernel compares algorithm and size against the file's real fs-verity digest, so an
  // unknown algorithm or a short digest can never match: fail the open with EIO.
  if (want == 0 || value.size() - kMetacopyMinSize != want)
    return fail_errno("trusted.overlay.metacopy: wrong digest size or algorithm", EIO);
  m.digest = {reinterpret_cast<const std::uint8_t*>(value.data()) + kMetacopyMinSize, want};
  return m;
}

Result<std::string_view> redirect_object_path(std::string_view redirect) {
  if (redirect.empty() || redirect.front() != '/')
    return fail_errno("trusted.overlay.redirect: metacopy with no lower data", EIO);
  while (!redirect.empty() && redirect.front() == '/') redirect.remove_prefix(1);
  return redirect;
}

}  // namespace cfs::vfs
