// SPDX-License-Identifier: Apache-2.0
// Thin Result-returning wrappers over the system calls the library uses. The only place that
// reads errno; every error names the operation and path. All fds are O_CLOEXEC; EINTR retried.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::sys {

Result<UniqueFd> open(const std::string& path, int flags, mode_t mode = 0);
Result<UniqueFd> openat(int dirfd, const std::string& path, int flags, mode_t mode = 0);
/// openat2(2) with RESOLVE_* flags (O_CLOEXEC added). ENOSYS when the kernel lacks openat2.
Result<UniqueFd> openat2(int dirfd, const std::string& path, int flags, std::uint64_t resolve);
/// Opens an input that must be a regular file (an image): O_NONBLOCK, so a FIFO or a device at
/// the path fails at once instead of waiting for a writer, then the type is checked. Errors:
/// "WHAT PATH: not a regular file (a FIFO)" (Errc::kInvalidInput), or the open's errno.
Result<UniqueFd> open_regular(const std::string& path, const std::string& what);
/// "a directory", "a FIFO", "a character device", ... for messages.
const char* file_type_name(mode_t mode) noexcept;
Result<struct stat> fstat(int fd, const std::string& what = "fstat");
Result<struct stat> fstatat(int dirfd, const std::string& path, int flags);
Result<struct stat> stat(const std::string& path);
Result<struct stat> lstat(const std::string& path);
/// fstatat, with nullopt instead of an error when nothing is there (ENOENT, or ENOTDIR: a
/// component of the path is not a directory).
Result<std::optional<struct stat>> fstatat_if_exists(int dirfd, const std::string& path, int flags);
Result<struct statvfs> fstatvfs(int fd, const std::string& what);

/// Reads until buf is full or EOF; returns the number of bytes read (short only at EOF).
Result<std::size_t> read_full(int fd, std::span<std::byte> buf);
Result<std::size_t> pread_full(int fd, std::span<std::byte> buf, std::uint64_t off);
/// One pread(2), retried only on EINTR: may return fewer bytes than asked before EOF (procfs,
/// FUSE direct I/O); 0 means EOF.
Result<std::size_t> pread_some(int fd, std::span<std::byte> buf, std::uint64_t off);
Status write_all(int fd, std::span<const std::byte> buf);
Status pwrite_all(int fd, std::span<const std::byte> buf, std::uint64_t off);

/// Whole file (or stream) into memory. For small files and tests; the path names errors.
Result<std::string> read_file(const std::string& path);
Result<std::string> read_fd(int fd, const std::string& what);
/// Creates or truncates path and writes data (not atomic: see AtomicFile for outputs).
Status write_file(const std::string& path, std::string_view data, mode_t mode = 0644);

Status fsync(int fd, const std::string& what);
Status fdatasync(int fd, const std::string& what);
Status ftruncate(int fd, std::uint64_t size, const std::string& what);
Status syncfs(int fd, const std::string& what);
Status renameat(int olddir, const std::string& oldpath, int newdir, const std::string& newpath);
Status unlinkat(int dirfd, const std::string& path, int flags);
/// mkdir -p relative to dirfd; existing directories are fine.
Status mkdirat_p(int dirfd, const std::string& path, mode_t mode);
Status mkdirat(int dirfd, const std::string& path, mode_t mode);
Status mknodat(int dirfd, const std::string& path, mode_t mode, dev_t dev);
Status symlinkat(const std::string& target, int dirfd, const std::string& path);
Status linkat(int olddir, const std::string& oldpath, int newdir, const std::string& newpath);
Result<std::string> readlinkat(int dirfd, const std::string& path);
/// Owner of path (flags: AT_SYMLINK_NOFOLLOW for the link itself); uid/gid -1 = unchanged.
Status fchownat(int dirfd, const std::string& path, uid_t uid, gid_t gid, int flags);
/// Mode of path, following a final symlink (Linux cannot change a symlink's mode).
Status fchmodat(int dirfd, const std::string& path, mode_t mode);
/// Times of path: times[0] atime, times[1] mtime (UTIME_NOW, UTIME_OMIT as for utimensat(2)).
Status utimensat(int dirfd, const std::string& path, const struct timespec times[2], int flags);

/// realpath(3): the canonical absolute path (every symlink resolved; the path must exist).
Result<std::string> real_path(const std::string& path);
/// `path` against the current directory, symlinks not resolved and the path need not exist
/// (unchanged if the current directory cannot be read): for a path a daemon will use after
/// it has changed directory to / (libfuse's daemonize).
std::string absolute_path(const std::string& path);
/// "/proc/self/fd/N": how a path-taking interface is pointed at an fd we hold.
std::string fd_path(int fd);

/// memfd with sealing allowed; seal_readonly() adds WRITE|SHRINK|GROW|SEAL so the contents can
/// never change again, through any fd or mapping.
Result<UniqueFd> memfd_create(const std::string& name);
Status seal_readonly(int memfd);
/// Copies src (from its offset 0 to EOF) into dst at dst's current offset (sendfile).
Status copy_all(int src_fd, int dst_fd, const std::string& what);

/// Xattrs of the inode an O_PATH or regular fd refers to, through /proc/self/fd/N (following
/// that magic link reaches the inode itself, so the xattrs of a symlink opened with
/// O_PATH | O_NOFOLLOW are its own, not its target's).
Result<std::vector<std::string>> list_xattrs(int fd, const std::string& what);
Result<std::string> get_xattr(int fd, const std::string& name, const std::string& what);
/// setxattr(2) flags: 0, XATTR_CREATE or XATTR_REPLACE.
Status set_xattr(int fd, const std::string& name, std::string_view value, int flags,
                 const std::string& what);
Status remove_xattr(int fd, const std::string& name, const std::string& what);

/// ioctl(fd, request, arg); EINTR retried. Returns the ioctl's non-negative result.
Result<int> ioctl(int fd, unsigned long request, void* arg, const std::string& what);

/// fcntl(F_DUPFD_CLOEXEC): a second fd for the same open file.
Result<UniqueFd> dup(int fd);

/// Grows this process's file descriptor table to at least `slots` descriptors (at most the soft
/// RLIMIT_NOFILE), so that later opens never grow it. The kernel grows the table of a process
/// whose threads share it only after an RCU grace period (expand_fdtable: synchronize_rcu), and
/// every thread opening a descriptor meanwhile waits too: 7-16 ms each time the table doubles on
/// a 2-core host (bench/README.md, session 12). A single-threaded process grows it without that
/// wait, and a table never shrinks: call this before starting threads. Best effort; returns the
/// number of slots now reserved (0 when nothing could be done).
unsigned reserve_fd_table(unsigned slots) noexcept;

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (to 2^20, the kernel's default
/// fs.nr_open, when the hard limit is unlimited). The usual soft default, 1024, is there for
/// programs that use select(); cfs polls, and needs more than that: an open store or repository
/// holds up to 256 fan-out directories (store/fanout_dirs.h), a lazy mount's fetch threads up to
/// 1,024 descriptors beside the files its users open. Children inherit the raised limit. Best
/// effort (a limit that cannot be raised stays); returns the soft limit now in force (0 when it
/// cannot be read).
std::uint64_t raise_fd_limit() noexcept;

/// Number of CPUs this process may run on (sched_getaffinity), at least 1.
unsigned available_cpus() noexcept;

/// CPU time this process (all its threads, those that ended too) has used so far, in user and
/// kernel mode (getrusage RUSAGE_SELF; a forked child starts again from 0).
struct CpuTime {
  double user_ms = 0;
  double sys_ms = 0;
};
CpuTime process_cpu_time() noexcept;

/// The process's umask, from /proc/self/status (reading it with umask(2) would have to set
/// it, racing with other threads creating files); nullopt where that file has no Umask line.
std::optional<mode_t> current_umask();

}  // namespace cfs::sys
