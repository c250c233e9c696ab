// SPDX-License-Identifier: Apache-2.0
// System-call wrappers for repositories: advisory locks, reopening, mount identities (unnamed
// files and linking them are in sys_fs.h). Like sys.h, the only places that read errno; every error
// names the path.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::sys {

/// flock(2) with LOCK_SH / LOCK_EX / LOCK_UN, optionally | LOCK_NB. Returns false (not an
/// error) when LOCK_NB is given and another holder conflicts.
Result<bool> flock(int fd, int operation, const std::string& what);

/// Reopens an open file through /proc/self/fd with new flags (e.g. O_RDONLY after writing, so
/// no writable fd blocks FS_IOC_ENABLE_VERITY).
Result<UniqueFd> reopen(int fd, int flags, const std::string& what);

/// True if the filesystem of fd is mounted read-only (fstatvfs ST_RDONLY).
Result<bool> is_read_only_fs(int fd, const std::string& what);

/// faccessat(dirfd, path, W_OK) with the effective ids: true if writable.
bool can_write(int dirfd, const std::string& path);

/// The mount a path is on, as the kernel names it: the mount ID of /proc/PID/mountinfo's first
/// field (statx STATX_MNT_ID, Linux 5.8) and the st_dev of the mounted filesystem.
struct MountIdentity {
  std::uint64_t mount_id = 0;
  std::uint64_t dev = 0;  ///< makedev(major, minor)
  /// STATX_MNT_ID_UNIQUE (Linux 6.8): never reused while the system runs, unlike mount_id.
  std::optional<std::uint64_t> unique_id;
};
Result<MountIdentity> mount_identity(int dirfd, const std::string& path);

/// Whether the mount with this unique ID exists in the caller's mount namespace (statmount(2),
/// Linux 6.8); nullopt when the kernel cannot tell.
std::optional<bool> unique_mount_exists(std::uint64_t unique_id);

/// One line of /proc/PID/mountinfo.
struct MountInfo {
  std::uint64_t mount_id = 0;
  std::uint64_t dev = 0;    ///< makedev(major, minor)
  std::string mount_point;  ///< unescaped
  std::string fstype;
  std::string source;
};
/// Parses a mountinfo file (e.g. "/proc/self/mountinfo"), in file order (the last entry for a
/// mount point is the topmost). ENOENT when the process is gone.
Result<std::vector<MountInfo>> read_mountinfo(const std::string& path);

/// Start time of a process in clock ticks after boot (/proc/PID/stat field 22): with the pid it
/// identifies the process across pid reuse. nullopt when there is no such process.
Result<std::optional<std::uint64_t>> process_start_time(pid_t pid);

/// realpath(3).
Result<std::string> resolve_path(const std::string& path);

/// Whole directory listing (name, d_type), "." and ".." excluded, in getdents order.
Result<std::vector<std::pair<std::string, unsigned char>>> list_dir(int dirfd,
                                                                    const std::string& what);

}  // namespace cfs::sys
