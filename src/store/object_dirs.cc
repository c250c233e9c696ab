// SPDX-License-Identifier: Apache-2.0
#include "cfs/store/object_dirs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <cerrno>

#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/util/sys.h"

namespace cfs::store {
namespace {

// O_PATH: nothing is opened for I/O until it is known to be a regular file.
constexpr int kProbeFlags = O_PATH | O_NOFOLLOW;

// Errors carrying this errno and a message saying what stands at the object path are the
// "something is there, but not an object" kind: they win over a plain "missing".
constexpr int kRefused = ENOENT;

std::string where(const std::string& rel, const std::string& dir) {
  return "object " + rel + " in " + dir;
}

}  // namespace

Result<ObjectDirs> ObjectDirs::open(const std::vector<std::string>& dirs) {
  ObjectDirs out;
  for (const auto& d : dirs) {
    CFS_ASSIGN(UniqueFd fd, sys::open(d, O_PATH | O_DIRECTORY));
    out.dirs_.push_back(std::move(fd));
    out.names_.push_back(d);
  }
  return out;
}

Result<UniqueFd> ObjectDirs::reopen_regular(UniqueFd path_fd, std::size_t i,
                                            const std::string& rel) const {
  CFS_ASSIGN(struct stat st, sys::fstat(path_fd.get(), rel));
  if (!S_ISREG(st.st_mode))
    return fail_errno(
        where(rel, names_[i]) + ": not a regular file (" + sys::file_type_name(st.st_mode) + ")",
        kRefused);
  // The regular file found, not whatever the path names by now.
  return sys::open(sys::fd_path(path_fd.get()), O_RDONLY | O_NOCTTY);
}

Result<UniqueFd> ObjectDirs::open_object(std::string_view rel_view) const {
  std::string rel(rel_view);
  if (rel.empty()) return fail_errno("object path is empty", ENOENT);
  std::optional<Error> refused;
  for (std::size_t i = 0; i < dirs_.size(); ++i) {
    auto fd = use_openat2_ ? open_in(i, rel) : open_in_fallback(i, rel);
    if (fd) return fd;
    if (!fd.error().is_errno(ENOENT)) return fd;
    if (!refused && fd.error().context().starts_with("object ")) refused = std::move(fd).error();
  }
  if (refused) return fail(std::move(*refused));
  std::string dirs;
  for (const auto& n : names_) dirs += (dirs.empty() ? "" : ", ") + n;
  return fail_errno("object " + rel + ": missing (not in " + dirs + ")", ENOENT);
}

Result<UniqueFd> ObjectDirs::open_in(std::size_t i, const std::string& rel) const {
  auto fd =
      sys::openat2(dirs_[i].get(), rel, kProbeFlags,
                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
  if (!fd) {
    if (fd.error().is_errno(ENOSYS)) return open_in_fallback(i, rel);
    if (fd.error().is_errno(ELOOP))
      return fail_errno(where(rel, names_[i]) + ": a symlink on the path (never followed)",
                        kRefused);
    if (fd.error().is_errno(EXDEV))
      return fail_errno("object " + rel + ": leaves the object directory " + names_[i], EXDEV);
    if (fd.error().is_errno(ENOENT) || fd.error().is_errno(ENOTDIR))
      return fail_errno("missing", ENOENT);
    return fd;
  }
  // O_PATH with O_NOFOLLOW opens a final symlink itself rather than failing.
  return reopen_regular(std::move(*fd), i, rel);
}

Result<UniqueFd> ObjectDirs::open_in_fallback(std::size_t i, const std::string& rel) const {
  const int dirfd = dirs_[i].get();
  UniqueFd cur;
  int at = dirfd;
  std::size_t pos = 0;
  for (;;) {
    std::size_t slash = rel.find('/', pos);
    std::string comp =
        rel.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (comp == "..")
      return fail_errno("object " + rel + ": leaves the object directory " + names_[i], EXDEV);
    bool last = slash == std::string::npos;
    if (!comp.empty() && comp != ".") {
      auto next = sys::openat(at, comp, last ? kProbeFlags : O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (!next) {
        if (next.error().is_errno(ELOOP) || next.error().is_errno(ENOTDIR)) {
          // A symlink where a directory should be, or a file in the middle of the path.
          auto st = sys::fstatat(at, comp, AT_SYMLINK_NOFOLLOW);
          if (st && S_ISLNK(st->st_mode))
            return fail_errno(where(rel, names_[i]) + ": a symlink on the path (never followed)",
                              kRefused);
          return fail_errno("missing", ENOENT);
        }
        if (next.error().is_errno(ENOENT)) return fail_errno("missing", ENOENT);
        return fail(std::move(next).error());
      }
      cur = std::move(*next);
      at = cur.get();
    }
    if (last) break;
    pos = slash + 1;
  }
  if (at == dirfd)
    return fail_errno(where(rel, names_[i]) + ": not a regular file (a directory)", kRefused);
  return reopen_regular(std::move(cur), i, rel);
}

Result<Backing> open_backing(std::string_view metacopy, std::optional<std::string_view> redirect,
                             bool decode, const ObjectOpener& open) {
  CFS_TRY(overlay::Metacopy::check_at_lookup(metacopy));
  // metacopy=on: a metacopy file whose data cannot be found below fails the lookup with EIO.
  if (!redirect) return fail_errno("metacopy file without redirect", EIO);
  Backing b;
  CFS_ASSIGN(std::string_view rel, overlay::redirect_object_path(*redirect));
  b.object = rel;
  std::optional<Result<overlay::Metacopy>> meta;
  if (decode) meta = overlay::Metacopy::decode(metacopy);
  std::optional<verity::Digest> digest;
  if (meta && *meta) digest = (*meta)->digest;
  // The kernel looks the data up first (ENOENT/EXDEV), then validates verity
  // (ovl_verify_lowerdata: ovl_maybe_lookup_lowerdata, then ovl_maybe_validate_verity).
  CFS_ASSIGN(b.fd, open(rel, digest));
  CFS_ASSIGN(struct stat st, sys::fstat(b.fd.get(), b.object));
  b.size = static_cast<std::uint64_t>(st.st_size);
  if (meta) {
    if (!*meta) return fail(std::move(*meta).error().with_context("object " + b.object));
    b.digest = digest;
  }
  return b;
}

Result<Backing> ObjectDirs::open_backing(std::string_view metacopy,
                                         std::optional<std::string_view> redirect,
                                         bool decode) const {
  return store::open_backing(metacopy, redirect, decode,
                             [this](std::string_view rel, const std::optional<verity::Digest>&) {
                               return open_object(rel);
                             });
}

}  // namespace cfs::store
