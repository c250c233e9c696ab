// SPDX-License-Identifier: Apache-2.0
// The object directories (basedirs) a composefs mount serves file data from: the data-only
// lower layers of the kernel mount. The one resolver for reading objects: the FUSE mount, the
// up-front store check of both mounts and `cfs fsck` all go through it, so "fsck clean" means
// "the mount serves it".
//
// A redirect is resolved inside each directory in order, the first hit wins, and it can never
// leave the directory: no "..", no symlinks, no magic links, no mount crossing (openat2
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV, like the
// kernel's LOOKUP_BENEATH | LOOKUP_NO_SYMLINKS | LOOKUP_NO_XDEV data lookup). Kernels without
// openat2 get a component-by-component walk with O_NOFOLLOW that rejects "..". Whatever is
// found is first opened O_PATH, so a FIFO or a device node planted in a store is never opened
// for reading (no hang, no device side effect); only a regular file is reopened read-only.
// Thread-safety: immutable after open(); the const methods may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::store {

/// The data of a metacopy file, found as both mounts find it.
struct Backing {
  UniqueFd fd;         ///< the object, open read-only
  std::string object;  ///< its path below the object directory (the redirect without '/')
  std::uint64_t size = 0;
  /// The digest the metacopy records (only when open_backing() was asked to decode it).
  std::optional<verity::Digest> digest;
};

/// Opens the object at `rel` (a redirect without its leading slashes) read-only. `digest` is
/// the metacopy's when open_backing() decodes it (a source that fetches objects needs it), else
/// nullopt. Errors as ObjectDirs::open_object().
using ObjectOpener = std::function<Result<UniqueFd>(std::string_view rel,
                                                    const std::optional<verity::Digest>& digest)>;

/// ObjectDirs::open_backing() with the object opened by `open`: the same checks in the same
/// order. The metacopy header is decoded before the object is opened (so `open` gets the
/// digest) but a decode error is still returned after the object's own errors, as the kernel
/// orders them.
Result<Backing> open_backing(std::string_view metacopy, std::optional<std::string_view> redirect,
                             bool decode, const ObjectOpener& open);

class ObjectDirs {
 public:
  ObjectDirs() = default;

  /// Opens each directory (O_PATH). Errors name the directory.
  static Result<ObjectDirs> open(const std::vector<std::string>& dirs);

  /// Opens the object at `rel` (a redirect with its leading slashes removed) read-only.
  /// ENOENT when no directory holds a regular file there; the message says what was found
  /// instead (a symlink on the path, a directory, a FIFO, a device) or that nothing was.
  /// EXDEV when the path would leave the directory.
  Result<UniqueFd> open_object(std::string_view rel) const;

  /// What a metacopy file's data resolves to, with the checks in the kernel's order
  /// (ovl_lookup, then ovl_maybe_lookup_lowerdata and ovl_validate_verity at open): the value's
  /// lookup check (1..3 bytes: EIO), a redirect that exists and is absolute (EIO), the object
  /// (open_object: ENOENT, EXDEV), then with `decode` the metacopy header (EIO, ERANGE) and its
  /// digest. Errors are errno errors naming the object.
  Result<Backing> open_backing(std::string_view metacopy, std::optional<std::string_view> redirect,
                               bool decode) const;

  std::size_t size() const noexcept { return dirs_.size(); }
  const std::vector<std::string>& names() const noexcept { return names_; }

  /// Forces the openat2-less fallback (tests).
  void set_use_openat2(bool on) noexcept { use_openat2_ = on; }

 private:
  Result<UniqueFd> open_in(std::size_t i, const std::string& rel) const;
  Result<UniqueFd> open_in_fallback(std::size_t i, const std::string& rel) const;
  Result<UniqueFd> reopen_regular(UniqueFd path_fd, std::size_t i, const std::string& rel) const;

  std::vector<UniqueFd> dirs_;
  std::vector<std::string> names_;
  bool use_openat2_ = true;
};

}  // namespace cfs::store
