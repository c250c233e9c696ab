// SPDX-License-Identifier: Apache-2.0
// The object directories (basedirs) a composefs mount serves file data from: the data-only
// lower layers of the kernel mount. A redirect is resolved inside each directory in order,
// the first hit wins, and it can never leave the directory: no "..", no symlinks, no magic
// links, no mount crossing (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV, like the kernel's LOOKUP_BENEATH |
// LOOKUP_NO_SYMLINKS | LOOKUP_NO_XDEV data lookup). Kernels without openat2 get a
// component-by-component walk with O_NOFOLLOW that rejects "..".
// Thread-safety: immutable after open(); open_object() may be called concurrently.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::vfs {

class ObjectDirs {
 public:
  ObjectDirs() = default;

  /// Opens each directory (O_PATH). Errors name the directory.
  static Result<ObjectDirs> open(const std::vector<std::string>& dirs);

  /// Opens the object at `rel` (a redirect with its leading slashes removed) read-only.
  /// ENOENT if no directory holds a regular file there (also for a symlink, a directory or a
  /// special file, as the kernel requires a regular file); EXDEV if the path would escape.
  Result<UniqueFd> open_object(std::string_view rel) const;

  std::size_t size() const noexcept { return dirs_.size(); }

  /// Forces the openat2-less fallback (tests).
  void set_use_openat2(bool on) noexcept { use_openat2_ = on; }

 private:
  Result<UniqueFd> open_in(int dirfd, const std::string& rel) const;
  Result<UniqueFd> open_in_fallback(int dirfd, const std::string& rel) const;

  std::vector<UniqueFd> dirs_;
  std::vector<std::string> names_;
  bool use_openat2_ = true;
};

}  // namespace cfs::vfs
