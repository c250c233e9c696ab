// SPDX-License-Identifier: Apache-2.0
#include "cfs/overlay/xattr.h"

#include <cerrno>

namespace cfs::overlay {

std::string escaped_name(std::string_view key) {
  if (!needs_escape(key)) return std::string(key);
  std::string out(kEscapedPrefix);
  out.append(key.substr(kPrefix.size()));
  return out;
}

std::optional<std::string> visible_name(std::string_view raw) {
  if (raw.starts_with(kEscapedPrefix)) {
    // ovl_xattr_unescape: "trusted.overlay.overlay.X" is listed as "trusted.overlay.X".
    std::string out(kPrefix);
    out.append(raw.substr(kEscapedPrefix.size()));
    return out;
  }
  if (raw.starts_with(kPrefix)) return std::nullopt;
  return std::string(raw);
}

std::string raw_name(std::string_view visible) { return escaped_name(visible); }

Result<std::string_view> redirect_object_path(std::string_view redirect) {
  if (redirect.empty() || redirect.front() != '/')
    return fail_errno("trusted.overlay.redirect: metacopy with no lower data", EIO);
  while (!redirect.empty() && redirect.front() == '/') redirect.remove_prefix(1);
  return redirect;
}

std::string_view redirect_payload(std::string_view redirect) noexcept {
  if (!redirect.empty() && redirect.front() == '/') redirect.remove_prefix(1);
  return redirect;
}

}  // namespace cfs::overlay
