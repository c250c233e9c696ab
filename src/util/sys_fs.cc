// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/sys_fs.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "cfs/util/sys.h"
#include "cfs/util/unique_fd.h"

namespace cfs::sys {
namespace {

// The *xattrat syscalls (Linux 6.13) are not in glibc 2.36; the numbers are the same on every
// architecture that uses the generic table and on x86_64.
#ifndef SYS_listxattrat
#define CFS_SYS_GETXATTRAT 464
#define CFS_SYS_LISTXATTRAT 465
#else
#define CFS_SYS_GETXATTRAT SYS_getxattrat
#define CFS_SYS_LISTXATTRAT SYS_listxattrat
#endif

struct XattrArgs {  // struct xattr_args from <linux/xattr.h> (6.13)
  std::uint64_t value;
  std::uint32_t size;
  std::uint32_t flags;
};

// Cleared on the first ENOSYS so older kernels pay for the failed probe once.
std::atomic<bool> g_have_xattrat{true};

ssize_t listxattrat(int dirfd, const char* name, char* list, std::size_t size) {
  return static_cast<ssize_t>(
      ::syscall(CFS_SYS_LISTXATTRAT, dirfd, name, AT_SYMLINK_NOFOLLOW, list, size));
}

ssize_t getxattrat(int dirfd, const char* name, const char* key, void* value, std::size_t size) {
  XattrArgs args{reinterpret_cast<std::uintptr_t>(value), static_cast<std::uint32_t>(size), 0};
  return static_cast<ssize_t>(
      ::syscall(CFS_SYS_GETXATTRAT, dirfd, name, AT_SYMLINK_NOFOLLOW, key, &args, sizeof args));
}

// An O_PATH fd of the entry itself (a symlink stays a symlink), for the xattr calls that work
// through /proc/self/fd (sys::list_xattrs and friends).
Result<UniqueFd> open_nofollow(int dirfd, const std::string& name, const std::string& what) {
  auto fd = openat(dirfd, name, O_PATH | O_NOFOLLOW);
  if (!fd) return fail(std::move(fd).error().with_context(what));
  return fd;
}

Result<std::vector<std::string>> split_names(const std::vector<char>& buf, std::size_t len) {
  std::vector<std::string> names;
  std::size_t pos = 0;
  while (pos < len) {
    std::size_t n = ::strnlen(buf.data() + pos, len - pos);
    if (n > 0) names.emplace_back(buf.data() + pos, n);
    pos += n + 1;
  }
  return names;
}

}  // namespace

Result<std::size_t> getdents(int dirfd, std::span<std::byte> buf, const std::string& what) {
  for (;;) {
    long n = ::syscall(SYS_getdents64, dirfd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return fail_errno("read directory " + what);
  }
}

bool DirentCursor::next(std::string_view& name, unsigned char& d_type, std::uint64_t& d_ino) {
  // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
  constexpr std::size_t kNameOff = 19;
  if (pos_ + kNameOff > buf_.size()) return false;
  const auto* rec = reinterpret_cast<const char*>(buf_.data() + pos_);
  std::uint16_t reclen;
  std::memcpy(&d_ino, rec, 8);
  std::memcpy(&reclen, rec + 16, 2);
  if (reclen <= kNameOff || pos_ + reclen > buf_.size()) return false;
  d_type = static_cast<unsigned char>(rec[18]);
  name = std::string_view(rec + kNameOff, ::strnlen(rec + kNameOff, reclen - kNameOff));
  pos_ += reclen;
  return true;
}

Result<std::vector<std::string>> list_xattrs_at(int dirfd, const std::string& name,
                                                const std::string& what) {
  std::vector<char> buf(256);
  if (g_have_xattrat.load(std::memory_order_relaxed)) {
    for (;;) {
      ssize_t n = listxattrat(dirfd, name.c_str(), buf.data(), buf.size());
      if (n >= 0) return split_names(buf, static_cast<std::size_t>(n));
      if (errno == ERANGE) {
        ssize_t need = listxattrat(dirfd, name.c_str(), nullptr, 0);
        if (need < 0) return fail_errno("listxattr " + what);
        buf.resize(static_cast<std::size_t>(need) + 1);
        continue;
      }
      if (errno == EOPNOTSUPP) return std::vector<std::string>{};
      if (errno == ENOSYS) {
        g_have_xattrat.store(false, std::memory_order_relaxed);
        break;
      }
      return fail_errno("listxattr " + what);
    }
  }
  CFS_ASSIGN(UniqueFd fd, open_nofollow(dirfd, name, what));
  return list_xattrs(fd.get(), what);
}

Result<std::string> get_xattr_at(int dirfd, const std::string& name, const std::string& key,
                                 const std::string& what) {
  std::string value(256, '\0');
  if (g_have_xattrat.load(std::memory_order_relaxed)) {
    for (;;) {
      ssize_t n = getxattrat(dirfd, name.c_str(), key.c_str(), value.data(), value.size());
      if (n >= 0) {
        value.resize(static_cast<std::size_t>(n));
        return value;
      }
      if (errno == ERANGE) {
        ssize_t need = getxattrat(dirfd, name.c_str(), key.c_str(), nullptr, 0);
        if (need < 0) return fail_errno("getxattr " + key + " " + what);
        value.resize(static_cast<std::size_t>(need) + 1);
        continue;
      }
      if (errno == ENOSYS) {
        g_have_xattrat.store(false, std::memory_order_relaxed);
        break;
      }
      return fail_errno("getxattr " + key + " " + what);
    }
  }
  CFS_ASSIGN(UniqueFd fd, open_nofollow(dirfd, name, what));
  return get_xattr(fd.get(), key, what);
}

void disable_xattrat_for_testing() { g_have_xattrat.store(false, std::memory_order_relaxed); }

Result<std::optional<std::string>> find_xattr_at(int dirfd, const std::string& name,
                                                 const std::string& key, const std::string& what) {
  auto v = get_xattr_at(dirfd, name, key, what);
  if (v) return std::optional<std::string>(std::move(*v));
  if (v.error().is_errno(ENODATA) || v.error().is_errno(EOPNOTSUPP))
    return std::optional<std::string>();
  return tl::unexpected(std::move(v).error());
}

Status set_xattr_at(int dirfd, const std::string& name, const std::string& key,
                    std::string_view value, int flags, const std::string& what) {
  CFS_ASSIGN(UniqueFd fd, open_nofollow(dirfd, name, what));
  return set_xattr(fd.get(), key, value, flags, what);
}

Status remove_xattr_at(int dirfd, const std::string& name, const std::string& key,
                       const std::string& what) {
  CFS_ASSIGN(UniqueFd fd, open_nofollow(dirfd, name, what));
  return remove_xattr(fd.get(), key, what);
}

Result<std::vector<std::string>> read_dir_names(int dirfd, const std::string& path) {
  CFS_ASSIGN(UniqueFd dir, openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  std::vector<std::string> names;
  std::vector<std::byte> buf(32768);
  for (;;) {
    CFS_ASSIGN(std::size_t n, getdents(dir.get(), buf, path));
    if (n == 0) return names;
    DirentCursor cur(std::span(buf.data(), n));
    std::string_view name;
    unsigned char type;
    std::uint64_t ino;
    while (cur.next(name, type, ino))
      if (name != "." && name != "..") names.emplace_back(name);
  }
}

Status remove_tree_at(int dirfd, const std::string& name) {
  CFS_ASSIGN(auto st, fstatat_if_exists(dirfd, name, AT_SYMLINK_NOFOLLOW));
  if (!st) return {};
  if (!S_ISDIR(st->st_mode)) return unlinkat(dirfd, name, 0);
  CFS_ASSIGN(UniqueFd dir, openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  CFS_ASSIGN(auto names, read_dir_names(dir.get(), "."));
  for (const auto& n : names) {
    auto r = remove_tree_at(dir.get(), n);
    if (!r) return fail(std::move(r).error().with_context(name));
  }
  return unlinkat(dirfd, name, AT_REMOVEDIR);
}

Status ficlone(int dst_fd, int src_fd) {
  if (::ioctl(dst_fd, FICLONE, src_fd) != 0) return fail_errno("reflink");
  return {};
}

Result<CopyRangeResult> copy_range(int src_fd, int dst_fd, std::uint64_t size,
                                   const std::string& what) {
  CopyRangeResult r;
  for (;;) {
    // Ask for at least 1 GiB so short files finish in one call and a file that grew since
    // stat is still copied to EOF.
    std::size_t want = static_cast<std::size_t>(
        std::max<std::uint64_t>(size > r.copied ? size - r.copied : 0, 1ULL << 30));
    ssize_t n = ::copy_file_range(src_fd, nullptr, dst_fd, nullptr, want, 0);
    if (n > 0) {
      r.copied += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n == 0) return r;
    int err = errno;
    if (err == EINTR) continue;
    if (r.copied == 0 && (err == ENOSYS || err == EXDEV || err == EOPNOTSUPP || err == EINVAL ||
                          err == EPERM || err == EBADF)) {
      r.unsupported = true;
      return r;
    }
    return fail_errno("copy " + what, err);
  }
}

Status fchmod(int fd, mode_t mode, const std::string& what) {
  if (::fchmod(fd, mode) != 0) return fail_errno("chmod " + what);
  return {};
}

Status set_direct_io(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return fail_errno("fcntl(F_GETFL)");
  if (::fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) != 0)
    return fail_errno("fcntl(F_SETFL, O_DIRECT)");
  return {};
}

void start_writeback(int fd) noexcept { (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); }

Result<bool> rename_noreplace(int olddir, const std::string& oldpath, int newdir,
                              const std::string& newpath) {
  if (::renameat2(olddir, oldpath.c_str(), newdir, newpath.c_str(), RENAME_NOREPLACE) == 0)
    return true;
  if (errno == EEXIST) return false;
  if (errno == EINVAL || errno == ENOSYS) {
    // Filesystems without RENAME_NOREPLACE: link() never replaces either.
    if (::linkat(olddir, oldpath.c_str(), newdir, newpath.c_str(), 0) == 0) {
      ::unlinkat(olddir, oldpath.c_str(), 0);
      return true;
    }
    if (errno == EEXIST) return false;
  }
  return fail_errno("rename " + oldpath + " -> " + newpath);
}

Result<std::optional<UniqueFd>> open_unnamed(int dirfd, const std::string& dir, int flags,
                                             mode_t mode) {
  int fd;
  do {
    fd = ::openat(dirfd, dir.c_str(), O_TMPFILE | O_CLOEXEC | flags, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) return std::optional<UniqueFd>(UniqueFd(fd));
  // EISDIR: a kernel older than 3.11 that read O_TMPFILE as O_DIRECTORY.
  if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) return std::nullopt;
  return fail_errno("create a temporary file in " + dir);
}

Result<bool> link_fd(int fd, int newdirfd, const std::string& newpath) {
  // AT_EMPTY_PATH saves resolving a /proc path per call where the kernel allows it (with
  // CAP_DAC_READ_SEARCH); without it the kernel answers ENOENT, and /proc is used from then on.
  static std::atomic<bool> empty_path_ok{true};
  if (empty_path_ok.load(std::memory_order_relaxed)) {
    if (::linkat(fd, "", newdirfd, newpath.c_str(), AT_EMPTY_PATH) == 0) return true;
    if (errno == EEXIST) return false;
    if (errno != ENOENT && errno != EPERM && errno != EINVAL) return fail_errno("link " + newpath);
    empty_path_ok.store(false, std::memory_order_relaxed);
  }
  const std::string from = "/proc/self/fd/" + std::to_string(fd);
  if (::linkat(AT_FDCWD, from.c_str(), newdirfd, newpath.c_str(), AT_SYMLINK_FOLLOW) == 0)
    return true;
  if (errno == EEXIST) return false;
  return fail_errno("link " + newpath);
}

Status lock_shared(int fd, const std::string& what) {
  int r;
  do {
    r = ::flock(fd, LOCK_SH);
  } while (r != 0 && errno == EINTR);
  if (r != 0) return fail_errno("lock " + what);
  return {};
}

Result<bool> try_lock_exclusive(int fd, const std::string& what) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
  if (errno == EWOULDBLOCK) return false;
  return fail_errno("lock " + what);
}

}  // namespace cfs::sys
