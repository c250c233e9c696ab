// SPDX-License-Identifier: Apache-2.0
// Options of a userspace composefs mount (what `-o basedir=…,verity=…` selects).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/overlay/verity_mode.h"

namespace cfs::vfs {

class ObjectProvider;

/// overlayfs' verity=off|on|require, with the same meaning (one enum for both mounts).
using VerityMode = overlay::VerityMode;

/// A file the mount could not serve: its backing object is missing or refused, its metacopy is
/// malformed, or its data failed verification. Reported for operators (the FUSE server logs
/// each one); what the caller of the failing operation gets is unchanged.
struct Problem {
  std::uint64_t ino = 0;  ///< the file (Filesystem::path_of() finds its path)
  std::string object;     ///< the object it names ("ab/cdef…"), empty when none could be read
  std::string reason;     ///< the error, naming the check that failed
};

struct Options {
  /// Object directories, searched in order (the data-only lower layers).
  std::vector<std::string> basedirs;
  /// Where objects come from instead of `basedirs` (object_provider.h); nullptr: basedirs.
  std::shared_ptr<ObjectProvider> objects;
  VerityMode verity = VerityMode::kOn;
  /// Memory budget for Merkle trees of closed files kept for the next open (leaf hashes are
  /// 1/128 of the data size for SHA-256 and 4 KiB blocks). Trees of open files are always kept.
  std::size_t tree_cache_bytes = 64u << 20;
  /// Objects up to this size whose tree an open_file(…, copy) builds are read whole into the
  /// caller's memory and hashed from there, so that the caller can serve that verified copy
  /// without reading and hashing the bytes again (the read-only FUSE server stores it in the
  /// kernel's page cache). 0: never.
  std::uint64_t copy_max_bytes = 8u << 20;
  /// Directory holding persistent Merkle trees ("<alg>-<digest>.tree"), or empty for none. A
  /// cached tree is re-verified against the image's digest before it is used.
  std::string tree_cache_dir;
  /// Called for every Problem, from any thread, concurrently; may be empty.
  std::function<void(const Problem&)> on_problem;
};

}  // namespace cfs::vfs
