// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/sys.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace cfs::sys {
namespace {

// Following the /proc magic link of an O_PATH|O_NOFOLLOW fd reaches the inode itself, which is
// how the xattrs of a symlink (not of its target) are read.
std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

Result<UniqueFd> open(const std::string& path, int flags, mode_t mode) {
  return openat(AT_FDCWD, path, flags, mode);
}

Result<UniqueFd> openat(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail_errno("open " + path);
  return UniqueFd(fd);
}

Result<UniqueFd> openat2(int dirfd, const std::string& path, int flags, std::uint64_t resolve) {
  struct open_how how {};
  how.flags = static_cast<unsigned>(flags) | static_cast<unsigned>(O_CLOEXEC);
  how.resolve = resolve;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail_errno("open " + path);
  return UniqueFd(static_cast<int>(fd));
}

const char* file_type_name(mode_t mode) noexcept {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFLNK:
      return "a symlink";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFIFO:
      return "a FIFO";
    case S_IFSOCK:
      return "a socket";
    default:
      return "of unknown type";
  }
}

Result<UniqueFd> open_regular(const std::string& path, const std::string& what) {
  const std::string name = what.empty() ? path : what + " " + path;
  auto fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd) return fail(std::move(fd).error());
  CFS_ASSIGN(struct stat st, fstat(fd->get(), path));
  if (!S_ISREG(st.st_mode))
    return fail(Errc::kInvalidInput,
                name + ": not a regular file (" + file_type_name(st.st_mode) + ")");
  // Regular files ignore O_NONBLOCK; clear it anyway so the fd is an ordinary one.
  if (::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) & ~O_NONBLOCK) != 0)
    return fail_errno("fcntl " + path);
  return fd;
}

Result<struct stat> fstat(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno("stat " + what);
  return st;
}

Result<struct stat> fstatat(int dirfd, const std::string& path, int flags) {
  struct stat st {};
  if (::fstatat(dirfd, path.c_str(), &st, flags) != 0) return fail_errno("stat " + path);
  return st;
}

Result<std::optional<struct stat>> fstatat_if_exists(int dirfd, const std::string& path,
                                                     int flags) {
  struct stat st {};
  if (::fstatat(dirfd, path.c_str(), &st, flags) == 0) return std::optional<struct stat>(st);
  if (errno == ENOENT || errno == ENOTDIR) return std::optional<struct stat>();
  return fail_errno("stat " + path);
}

Result<struct statvfs> fstatvfs(int fd, const std::string& what) {
  struct statvfs sv {};
  if (::fstatvfs(fd, &sv) != 0) return fail_errno("statfs " + what);
  return sv;
}

Result<struct stat> stat(const std::string& path) { return fstatat(AT_FDCWD, path, 0); }
Result<struct stat> lstat(const std::string& path) {
  return fstatat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW);
}

Result<std::size_t> read_full(int fd, std::span<std::byte> buf) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + done, buf.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read");
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Result<int> ioctl(int fd, unsigned long request, void* arg, const std::string& what) {
  for (;;) {
    int r = ::ioctl(fd, request, arg);
    if (r >= 0) return r;
    if (errno != EINTR) return fail_errno(what);
  }
}

Result<std::size_t> pread_full(int fd, std::span<std::byte> buf, std::uint64_t off) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("pread");
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Result<std::size_t> pread_some(int fd, std::span<std::byte> buf, std::uint64_t off) {
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return fail_errno("pread");
  }
}

Status write_all(int fd, std::span<const std::byte> buf) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("write");
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Status pwrite_all(int fd, std::span<const std::byte> buf, std::uint64_t off) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("pwrite");
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Result<std::string> read_fd(int fd, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read " + what);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  CFS_ASSIGN(UniqueFd fd, open(path, O_RDONLY));
  return read_fd(fd.get(), path);
}

Status write_file(const std::string& path, std::string_view data, mode_t mode) {
  CFS_ASSIGN(UniqueFd fd, open(path, O_WRONLY | O_CREAT | O_TRUNC, mode));
  CFS_TRY_CTX(write_all(fd.get(), std::as_bytes(std::span(data.data(), data.size()))), path);
  CFS_TRY_CTX(fd.close(), path);
  return {};
}

Status fsync(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return fail_errno("fsync " + what);
  return {};
}

Status fdatasync(int fd, const std::string& what) {
  if (::fdatasync(fd) != 0) return fail_errno("fdatasync " + what);
  return {};
}

Status ftruncate(int fd, std::uint64_t size, const std::string& what) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return fail_errno("truncate " + what);
  return {};
}

Status syncfs(int fd, const std::string& what) {
  if (::syncfs(fd) != 0) return fail_errno("syncfs " + what);
  return {};
}

Status renameat(int olddir, const std::string& oldpath, int newdir, const std::string& newpath) {
  if (::renameat(olddir, oldpath.c_str(), newdir, newpath.c_str()) != 0)
    return fail_errno("rename " + oldpath + " -> " + newpath);
  return {};
}

Status unlinkat(int dirfd, const std::string& path, int flags) {
  if (::unlinkat(dirfd, path.c_str(), flags) != 0) return fail_errno("unlink " + path);
  return {};
}

Status mkdirat_p(int dirfd, const std::string& path, mode_t mode) {
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    if (slash > 0 && slash != pos) {
      std::string prefix = path.substr(0, slash);
      if (::mkdirat(dirfd, prefix.c_str(), mode) != 0 && errno != EEXIST)
        return fail_errno("mkdir " + prefix);
    }
    pos = slash + 1;
  }
  return {};
}

Status mkdirat(int dirfd, const std::string& path, mode_t mode) {
  if (::mkdirat(dirfd, path.c_str(), mode) != 0) return fail_errno("mkdir " + path);
  return {};
}

Status mknodat(int dirfd, const std::string& path, mode_t mode, dev_t dev) {
  if (::mknodat(dirfd, path.c_str(), mode, dev) != 0) return fail_errno("mknod " + path);
  return {};
}

Status symlinkat(const std::string& target, int dirfd, const std::string& path) {
  if (::symlinkat(target.c_str(), dirfd, path.c_str()) != 0) return fail_errno("symlink " + path);
  return {};
}

Status linkat(int olddir, const std::string& oldpath, int newdir, const std::string& newpath) {
  if (::linkat(olddir, oldpath.c_str(), newdir, newpath.c_str(), 0) != 0)
    return fail_errno("link " + oldpath + " -> " + newpath);
  return {};
}

Status fchownat(int dirfd, const std::string& path, uid_t uid, gid_t gid, int flags) {
  if (::fchownat(dirfd, path.c_str(), uid, gid, flags) != 0) return fail_errno("chown " + path);
  return {};
}

Status fchmodat(int dirfd, const std::string& path, mode_t mode) {
  if (::fchmodat(dirfd, path.c_str(), mode, 0) != 0) return fail_errno("chmod " + path);
  return {};
}

Status utimensat(int dirfd, const std::string& path, const struct timespec times[2], int flags) {
  if (::utimensat(dirfd, path.c_str(), times, flags) != 0) return fail_errno("utimens " + path);
  return {};
}

Result<std::string> readlinkat(int dirfd, const std::string& path) {
  std::string buf(4096, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, path.c_str(), buf.data(), buf.size());
    if (n < 0) return fail_errno("readlink " + path);
    if (static_cast<std::size_t>(n) < buf.size()) {
      buf.resize(static_cast<std::size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

Result<std::string> real_path(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (!real) return fail_errno("resolve " + path);
  std::string out(real);
  std::free(real);
  return out;
}

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.string();
}

std::string fd_path(int fd) { return proc_fd_path(fd); }

Result<UniqueFd> memfd_create(const std::string& name) {
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return fail_errno("memfd_create");
  return UniqueFd(fd);
}

Status seal_readonly(int memfd) {
  if (::fcntl(memfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return fail_errno("seal memfd");
  return {};
}

Status copy_all(int src_fd, int dst_fd, const std::string& what) {
  off_t off = 0;
  while (true) {
    ssize_t n = ::sendfile(dst_fd, src_fd, &off, 1 << 30);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("copy " + what);
    }
    if (n == 0) return {};
  }
}

Result<std::vector<std::string>> list_xattrs(int fd, const std::string& what) {
  std::string path = proc_fd_path(fd);
  std::vector<char> buf(1024);
  ssize_t n;
  for (;;) {
    n = ::listxattr(path.c_str(), buf.data(), buf.size());
    if (n >= 0) break;
    if (errno == ERANGE) {
      ssize_t need = ::listxattr(path.c_str(), nullptr, 0);
      if (need < 0) return fail_errno("listxattr " + what);
      buf.resize(static_cast<std::size_t>(need) + 1);
      continue;
    }
    if (errno == ENOTSUP) return std::vector<std::string>{};
    return fail_errno("listxattr " + what);
  }
  std::vector<std::string> names;
  std::size_t pos = 0;
  auto len = static_cast<std::size_t>(n);
  while (pos < len) {
    std::string name(buf.data() + pos);
    pos += name.size() + 1;
    if (!name.empty()) names.push_back(std::move(name));
  }
  return names;
}

Result<std::string> get_xattr(int fd, const std::string& name, const std::string& what) {
  std::string path = proc_fd_path(fd);
  std::string value(256, '\0');
  for (;;) {
    ssize_t n = ::getxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<std::size_t>(n));
      return value;
    }
    if (errno != ERANGE) return fail_errno("getxattr " + name + " " + what);
    ssize_t need = ::getxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (need < 0) return fail_errno("getxattr " + name + " " + what);
    value.resize(static_cast<std::size_t>(need) + 1);
  }
}

Status set_xattr(int fd, const std::string& name, std::string_view value, int flags,
                 const std::string& what) {
  if (::setxattr(proc_fd_path(fd).c_str(), name.c_str(), value.data(), value.size(), flags) != 0)
    return fail_errno("setxattr " + name + " " + what);
  return {};
}

Status remove_xattr(int fd, const std::string& name, const std::string& what) {
  if (::removexattr(proc_fd_path(fd).c_str(), name.c_str()) != 0)
    return fail_errno("removexattr " + name + " " + what);
  return {};
}

Result<UniqueFd> dup(int fd) {
  const int nfd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) return fail_errno("dup");
  return UniqueFd(nfd);
}

unsigned reserve_fd_table(unsigned slots) noexcept {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  const rlim_t cap = lim.rlim_cur == RLIM_INFINITY ? slots : std::min<rlim_t>(slots, lim.rlim_cur);
  if (cap == 0) return 0;
  UniqueFd any(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!any) return 0;
  // A descriptor at the table's last slot makes the kernel size the table for it; closing it
  // leaves the table as large (F_DUPFD takes the lowest free descriptor from there on, so no
  // open descriptor is replaced).
  UniqueFd high(::fcntl(any.get(), F_DUPFD_CLOEXEC, static_cast<int>(cap - 1)));
  return high ? static_cast<unsigned>(cap) : 0;
}

std::uint64_t raise_fd_limit() noexcept {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  const rlim_t want = lim.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : lim.rlim_max;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < want) {
    rlimit raised = lim;
    raised.rlim_cur = want;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(lim.rlim_cur);
}

unsigned available_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  int n = get_nprocs();
  return n > 0 ? static_cast<unsigned>(n) : 1U;
}

CpuTime process_cpu_time() noexcept {
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) != 0) return {};
  auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3;
  };
  return CpuTime{ms(ru.ru_utime), ms(ru.ru_stime)};
}

std::optional<mode_t> current_umask() {
  UniqueFd fd(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  const char* line = std::strstr(buf, "\nUmask:");
  if (line == nullptr) return std::nullopt;
  return static_cast<mode_t>(std::strtoul(line + 7, nullptr, 8));
}

}  // namespace cfs::sys
