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
  // overlayfs (ovl_get_redirect_xattr) refuses an absolute redirect with an empty component
  // ("//ab/..", "/ab//cd", a trailing '/', "/") as invalid: EINVAL at lookup. A dump payload
  // that starts with '/' gives such a value ('/' + payload), so these images exist.
  std::string_view rest = redirect.substr(1);
  for (std::size_t start = 0;;) {
    const std::size_t slash = rest.find('/', start);
    const std::size_t end = slash == std::string_view::npos ? rest.size() : slash;
    if (end == start)
      return fail_errno("trusted.overlay.redirect: invalid redirect (empty path component)",
                        EINVAL);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return rest;
}

std::string_view redirect_payload(std::string_view redirect) noexcept {
  if (!redirect.empty() && redirect.front() == '/') redirect.remove_prefix(1);
  return redirect;
}

}  // namespace cfs::overlay
