// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/sys_link.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cfs/util/decimal.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"

namespace cfs::sys {
namespace {

// statmount(2) and STATX_MNT_ID_UNIQUE (Linux 6.8; not in Debian 12's headers).
constexpr unsigned kStatxMntIdUnique = 0x00004000U;
constexpr long kSysStatmount = 457;  // the same number on every architecture
constexpr std::uint64_t kStatmountSbBasic = 0x1;
struct MntIdReq {
  std::uint32_t size;
  std::uint32_t spare;
  std::uint64_t mnt_id;
  std::uint64_t param;
};
static_assert(sizeof(MntIdReq) == 24);  // MNT_ID_REQ_SIZE_VER0

std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

Result<bool> flock(int fd, int operation, const std::string& what) {
  int rc;
  do {
    rc = ::flock(fd, operation);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return true;
  if (errno == EWOULDBLOCK && (operation & LOCK_NB) != 0) return false;
  return fail_errno("lock " + what);
}

Result<UniqueFd> reopen(int fd, int flags, const std::string& what) {
  int nfd;
  do {
    nfd = ::open(proc_fd_path(fd).c_str(), flags | O_CLOEXEC);
  } while (nfd < 0 && errno == EINTR);
  if (nfd < 0) return fail_errno("reopen " + what);
  return UniqueFd(nfd);
}

Result<bool> is_read_only_fs(int fd, const std::string& what) {
  struct statvfs sv {};
  if (::fstatvfs(fd, &sv) != 0) return fail_errno("statvfs " + what);
  return (sv.f_flag & ST_RDONLY) != 0;
}

bool can_write(int dirfd, const std::string& path) {
  return ::faccessat(dirfd, path.c_str(), W_OK, AT_EACCESS) == 0;
}

Result<MountIdentity> mount_identity(int dirfd, const std::string& path) {
  MountIdentity id;
  struct statx stx {};
  // Two calls: a kernel that knows STATX_MNT_ID_UNIQUE answers it instead of STATX_MNT_ID.
  if (::statx(dirfd, path.c_str(), AT_SYMLINK_NOFOLLOW, kStatxMntIdUnique, &stx) == 0 &&
      (stx.stx_mask & kStatxMntIdUnique) != 0)
    id.unique_id = stx.stx_mnt_id;
  stx = {};
  if (::statx(dirfd, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0)
    return fail_errno("statx " + path);
  if ((stx.stx_mask & STATX_MNT_ID) == 0)
    return fail(Errc::kUnsupportedFeature, "statx " + path + ": no mount ID (Linux < 5.8)");
  id.mount_id = stx.stx_mnt_id;
  id.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  return id;
}

std::optional<bool> unique_mount_exists(std::uint64_t unique_id) {
  MntIdReq req{};
  req.size = sizeof req;
  req.mnt_id = unique_id;
  req.param = kStatmountSbBasic;
  alignas(8) std::array<std::byte, 512> buf{};
  long rc = ::syscall(kSysStatmount, &req, buf.data(), buf.size(), 0);
  if (rc == 0) return true;
  if (errno == ENOENT) return false;
  return std::nullopt;  // ENOSYS (before 6.8), EPERM, ...
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool octal = s[i] == '\\' && i + 3 < s.size();
    for (std::size_t k = 1; octal && k <= 3; ++k) octal = s[i + k] >= '0' && s[i + k] <= '7';
    if (octal) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    std::size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) out.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

}  // namespace

Result<std::vector<MountInfo>> read_mountinfo(const std::string& path) {
  CFS_ASSIGN(std::string text, read_file(path));
  std::vector<MountInfo> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    auto f = split_spaces(std::string_view(text).substr(pos, nl - pos));
    pos = nl + 1;
    // id parent major:minor root mount-point options [optional...] - fstype source super-opts
    auto sep = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || sep == f.end() || f.end() - sep < 3) continue;
    auto id = parse_decimal_u64(f[0]);
    auto colon = f[2].find(':');
    if (!id || colon == std::string_view::npos) continue;
    auto major = parse_decimal_u64(f[2].substr(0, colon));
    auto minor = parse_decimal_u64(f[2].substr(colon + 1));
    // makedev takes 32-bit numbers: a larger one would be truncated to another device's.
    if (!major || !minor || *major > UINT32_MAX || *minor > UINT32_MAX) continue;
    MountInfo m;
    m.mount_id = *id;
    m.dev = makedev(static_cast<unsigned>(*major), static_cast<unsigned>(*minor));
    m.mount_point = unescape_octal(f[4]);
    m.fstype = std::string(sep[1]);
    m.source = unescape_octal(sep[2]);
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::optional<std::uint64_t>> process_start_time(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text) {
    if (text.error().is_errno(ENOENT) || text.error().is_errno(ESRCH))
      return std::optional<std::uint64_t>();
    return fail(std::move(text).error());
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields resume after
  // the last ')'. starttime is field 22, the 20th after comm.
  auto close = text->rfind(')');
  if (close == std::string::npos)
    return fail(Errc::kCorruptImage, "/proc/" + std::to_string(pid) + "/stat");
  auto f = split_spaces(std::string_view(*text).substr(close + 1));
  if (f.size() < 20) return fail(Errc::kCorruptImage, "/proc/" + std::to_string(pid) + "/stat");
  auto v = parse_decimal_u64(f[19]);
  if (!v) return fail(Errc::kCorruptImage, "/proc/" + std::to_string(pid) + "/stat");
  return std::optional<std::uint64_t>(*v);
}

Result<std::string> resolve_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) return fail_errno("resolve " + path);
  return std::string(buf);
}

Result<std::vector<std::pair<std::string, unsigned char>>> list_dir(int dirfd,
                                                                    const std::string& what) {
  std::vector<std::pair<std::string, unsigned char>> out;
  std::array<std::byte, 32768> buf;
  // getdents continues from the fd's offset: start from the beginning whatever was read.
  if (::lseek(dirfd, 0, SEEK_SET) != 0) return fail_errno("rewind " + what);
  for (;;) {
    CFS_ASSIGN(std::size_t n, getdents(dirfd, buf, what));
    if (n == 0) break;
    DirentCursor cur(std::span<const std::byte>(buf.data(), n));
    std::string_view name;
    unsigned char type = 0;
    std::uint64_t ino = 0;
    while (cur.next(name, type, ino))
      if (name != "." && name != "..") out.emplace_back(std::string(name), type);
  }
  return out;
}

}  // namespace cfs::sys
