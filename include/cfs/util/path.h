// SPDX-License-Identifier: Apache-2.0
// Walking the components of a '/'-separated path the way composefs' lookup_path() and the
// kernel's path walk treat separators: empty components ("//", a leading or trailing '/') are
// skipped; "." and ".." are returned as names (callers decide what they mean).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace cfs {

/// The next non-empty component of `path` at or after `pos`, advancing `pos` past it; nullopt
/// when none is left: for (std::size_t pos = 0; auto name = next_component(path, pos);) ...
inline std::optional<std::string_view> next_component(std::string_view path,
                                                      std::size_t& pos) noexcept {
  while (pos < path.size() && path[pos] == '/') ++pos;
  if (pos >= path.size()) return std::nullopt;
  std::size_t end = path.find('/', pos);
  if (end == std::string_view::npos) end = path.size();
  std::string_view name = path.substr(pos, end - pos);
  pos = end;
  return name;
}

}  // namespace cfs
