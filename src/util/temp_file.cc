// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/temp_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <random>

#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"

namespace cfs::temp {

std::string random_name(std::string_view prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string name(prefix);
  for (int i = 0; i < 6; ++i) name.push_back(kChars[rng() % (sizeof kChars - 1)]);
  return name;
}

Result<UniqueFd> create_named(int dirfd, std::string_view prefix, int flags, mode_t mode,
                              std::string& name, const std::string& where) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    name = random_name(prefix);
    auto fd = sys::openat(dirfd, name, flags | O_CREAT | O_EXCL, mode);
    if (fd) {
      // Between the create and the lock a repair could take the file for a leftover; the
      // writer then fails cleanly at its rename (ENOENT) and nothing is published.
      auto locked = sys::lock_shared(fd->get(), name);
      if (!locked) {
        (void)sys::unlinkat(dirfd, name, 0);
        return fail(std::move(locked).error().with_context(where));
      }
      return fd;
    }
    if (!fd.error().is_errno(EEXIST)) return fail(std::move(fd).error().with_context(where));
  }
  return fail_errno("create a temporary file in " + where, EEXIST);
}

Result<bool> remove_if_stale(int dirfd, const std::string& name) {
  auto fd = sys::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    // Gone, or a symlink (ELOOP): not a temp file any writer made.
    if (fd.error().is_errno(ENOENT) || fd.error().is_errno(ELOOP)) return false;
    return fail(std::move(fd).error());
  }
  CFS_ASSIGN(struct stat st, sys::fstat(fd->get(), name));
  if (!S_ISREG(st.st_mode)) return false;
  CFS_ASSIGN(bool free, sys::try_lock_exclusive(fd->get(), name));
  if (!free) return false;
  // Holding the exclusive lock: no writer can own this name any more.
  auto st2 = sys::unlinkat(dirfd, name, 0);
  if (!st2) {
    if (st2.error().is_errno(ENOENT)) return false;
    return fail(std::move(st2).error());
  }
  return true;
}

}  // namespace cfs::temp
