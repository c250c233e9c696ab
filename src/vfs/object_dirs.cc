// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/object_dirs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <cerrno>

#include "cfs/util/sys.h"

namespace cfs::vfs {
namespace {

// O_NONBLOCK: opening a FIFO planted in the store must not hang a FUSE worker; O_NOCTTY for
// the same reason with terminals. Non-regular files are rejected right after the open.
constexpr int kObjectFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

Status check_regular(int fd, const std::string& rel) {
  CFS_ASSIGN(struct stat st, sys::fstat(fd, rel));
  if (!S_ISREG(st.st_mode)) return fail_errno("object " + rel + ": not a regular file", ENOENT);
  return {};
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

Result<UniqueFd> ObjectDirs::open_object(std::string_view rel_view) const {
  std::string rel(rel_view);
  if (rel.empty()) return fail_errno("object path is empty", ENOENT);
  for (const auto& dir : dirs_) {
    auto fd = use_openat2_ ? open_in(dir.get(), rel) : open_in_fallback(dir.get(), rel);
    if (fd) return fd;
    if (!fd.error().is_errno(ENOENT)) return fd;
  }
  return fail_errno("object " + rel, ENOENT);
}

Result<UniqueFd> ObjectDirs::open_in(int dirfd, const std::string& rel) const {
  auto fd =
      sys::openat2(dirfd, rel, kObjectFlags,
                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
  if (!fd) {
    if (fd.error().is_errno(ENOSYS)) return open_in_fallback(dirfd, rel);
    // A symlink anywhere on the path: the kernel returns ENOENT for a final symlink (it is not
    // a regular file) and ELOOP in the middle; both mean "no object here".
    if (fd.error().is_errno(ELOOP)) return fail_errno("object " + rel + ": symlink", ENOENT);
    return fd;
  }
  CFS_TRY(check_regular(fd->get(), rel));
  return fd;
}

Result<UniqueFd> ObjectDirs::open_in_fallback(int dirfd, const std::string& rel) const {
  UniqueFd cur;
  int at = dirfd;
  std::size_t pos = 0;
  for (;;) {
    std::size_t slash = rel.find('/', pos);
    std::string comp =
        rel.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (comp == "..") return fail_errno("object " + rel + ": escapes the object directory", EXDEV);
    bool last = slash == std::string::npos;
    if (!comp.empty() && comp != ".") {
      auto next = sys::openat(at, comp, last ? kObjectFlags : O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (!next) {
        if (next.error().is_errno(ELOOP) || next.error().is_errno(ENOTDIR))
          return fail_errno("object " + rel + ": symlink", ENOENT);
        return fail(std::move(next).error());
      }
      cur = std::move(*next);
      at = cur.get();
    }
    if (last) break;
    pos = slash + 1;
  }
  if (at == dirfd) return fail_errno("object " + rel + ": not a regular file", ENOENT);
  CFS_TRY(check_regular(cur.get(), rel));
  return cur;
}

}  // namespace cfs::vfs
