// SPDX-License-Identifier: Apache-2.0
// `cfs fsck` as library calls: an image's structure and every object it references, checked
// the way the mounts read them (store::ObjectDirs, overlay::Metacopy::decode, the inode size),
// and an object store's contents (store::walk, store::verify_object). "Clean" means the mounts
// serve every file; a report with an error is incomplete.
// Thread-safety: each call is independent; the work spreads over the CPUs internally.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cfs/util/result.h"

namespace cfs::fsck {

struct Finding {
  /// image | metacopy | missing | refused | corrupt | conflict | stray
  std::string kind;
  std::string object;  ///< object path ("ab/cd…") or store-relative path; "" for image findings
  std::string detail;  ///< the reason (and the first file in the image that names the object)
};

struct Report {
  std::vector<Finding> findings;
  std::vector<std::string> removed;  ///< temps removed by repair (store-relative paths)
  std::uint64_t checked = 0;         ///< objects checked
  /// An operational failure (unreadable image or store, I/O error): the check is incomplete,
  /// whatever the findings say.
  std::optional<Error> error;
};

struct Options {
  /// Store checks: remove the temps of interrupted writers (never one a live writer holds).
  bool repair = false;
  /// Called after each object, from any thread: (done, total).
  std::function<void(std::uint64_t, std::uint64_t)> progress;
};

/// The image at `path`: structure, then (with basedirs) every object a metacopy file names.
/// verify_digests = false checks presence, type and size only (the store check that came
/// first has verified every object's digest against its name).
Report check_image(const std::string& path, const std::vector<std::string>& basedirs,
                   bool verify_digests, const Options& opts = {});

/// The object store at `dir`: every object's digest equals its name; temps and strays listed.
Report check_store(const std::string& dir, const Options& opts = {});

/// Adds `from` to `into`; image findings get `image` as a prefix.
void merge(Report& into, Report&& from, const std::string& image);

}  // namespace cfs::fsck
