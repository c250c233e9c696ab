// SPDX-License-Identifier: Apache-2.0
// Options of a userspace composefs mount (what `-o basedir=…,verity=…` selects).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cfs::vfs {

/// overlayfs' verity=off|on|require, with the same meaning (overlayfs.md §5): off never
/// checks; on checks files whose metacopy carries a digest; require also refuses (EIO at open)
/// metacopy files without a digest. Files stored inline in the image are never affected.
enum class VerityMode { kOff, kOn, kRequire };

std::optional<VerityMode> parse_verity_mode(std::string_view s);
std::string_view to_string(VerityMode m);

struct Options {
  /// Object directories, searched in order (the data-only lower layers).
  std::vector<std::string> basedirs;
  VerityMode verity = VerityMode::kOn;
  /// Memory budget for Merkle trees of closed files kept for the next open (leaf hashes are
  /// 1/128 of the data size for SHA-256 and 4 KiB blocks). Trees of open files are always kept.
  std::size_t tree_cache_bytes = 64u << 20;
  /// Directory holding persistent Merkle trees ("<alg>-<digest>.tree"), or empty for none. A
  /// cached tree is re-verified against the image's digest before it is used.
  std::string tree_cache_dir;
};

}  // namespace cfs::vfs
