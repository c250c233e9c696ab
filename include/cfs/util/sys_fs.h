// SPDX-License-Identifier: Apache-2.0
// System-call wrappers for directory scanning and object copying (the part of the sys layer
// the scan and store modules need): raw getdents64, xattrs by (dirfd, name) without opening
// the entry, reflink/copy_file_range and no-replace rename (the fs-verity ioctls are in
// cfs/verity/kernel.h).
// Like sys.h, these are the only places that read errno; every error names the path.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::sys {

/// One getdents64 call into buf; returns the number of bytes filled (0 at end of directory).
/// Entries are `struct linux_dirent64` records (see DirentCursor).
Result<std::size_t> getdents(int dirfd, std::span<std::byte> buf, const std::string& what);

/// Walks the records getdents() produced. Names are NUL-terminated in the buffer.
class DirentCursor {
 public:
  explicit DirentCursor(std::span<const std::byte> filled) : buf_(filled) {}
  /// Advances to the next record; false at the end (or on a malformed record length).
  bool next(std::string_view& name, unsigned char& d_type, std::uint64_t& d_ino);

 private:
  std::span<const std::byte> buf_;
  std::size_t pos_ = 0;
};

/// xattr names of the entry `name` in dirfd, not following a final symlink (so a symlink's
/// own xattrs are listed). Uses listxattrat(2) (Linux 6.13) and falls back to an O_PATH fd
/// read through /proc/self/fd. Filesystems without xattr support give an empty list.
Result<std::vector<std::string>> list_xattrs_at(int dirfd, const std::string& name,
                                                const std::string& what);
/// The value of one xattr of the entry `name` in dirfd (same resolution as list_xattrs_at).
Result<std::string> get_xattr_at(int dirfd, const std::string& name, const std::string& key,
                                 const std::string& what);
/// The same, with nullopt when the entry has no such xattr (ENODATA) or its filesystem has no
/// xattrs at all.
Result<std::optional<std::string>> find_xattr_at(int dirfd, const std::string& name,
                                                 const std::string& key, const std::string& what);
/// For tests: the *_xattr_at calls take the O_PATH fallback from now on, as on kernels without
/// the *xattrat syscalls (before 6.13).
void disable_xattrat_for_testing();
/// setxattr/removexattr on the entry `name` in dirfd, not following a final symlink (through an
/// O_PATH fd, see sys::set_xattr). flags: 0, XATTR_CREATE or XATTR_REPLACE.
Status set_xattr_at(int dirfd, const std::string& name, const std::string& key,
                    std::string_view value, int flags, const std::string& what);
Status remove_xattr_at(int dirfd, const std::string& name, const std::string& key,
                       const std::string& what);

/// Names in the directory `path` (relative to dirfd; a final symlink is not followed), without
/// "." and "..", in the order the filesystem returns them.
Result<std::vector<std::string>> read_dir_names(int dirfd, const std::string& path);
/// rm -r of the entry `name` in dirfd without following symlinks; absent is fine.
Status remove_tree_at(int dirfd, const std::string& name);

/// ioctl(FICLONE): shares src's extents with dst. Errors are returned, never fatal: callers
/// fall back to copying.
Status ficlone(int dst_fd, int src_fd);

/// Result of copy_range(): bytes copied, or `unsupported` when copy_file_range cannot be used
/// between these files (ENOSYS, EXDEV, EOPNOTSUPP, EINVAL, EPERM, EBADF) so a plain copy must
/// be used instead.
struct CopyRangeResult {
  std::uint64_t copied = 0;
  bool unsupported = false;
};
/// copy_file_range(2) in a loop from both files' current offsets until EOF of src (a file that
/// grew since `size`, its expected size, was taken is still copied whole).
Result<CopyRangeResult> copy_range(int src_fd, int dst_fd, std::uint64_t size,
                                   const std::string& what);

Status fchmod(int fd, mode_t mode, const std::string& what);

/// Turns O_DIRECT on or off for an open file (fcntl F_SETFL). Fails on filesystems that do not
/// support direct I/O (tmpfs before 6.6, FUSE without it).
Status set_direct_io(int fd, bool on);

/// Starts the writeback of fd's dirty pages without waiting (sync_file_range
/// SYNC_FILE_RANGE_WRITE), so that a later fsync of it, and of other files started alike, waits
/// for writes already under way and shares their journal commit. A hint only: the fsync reports
/// any error. (Per file, each call is one request to the disk: for a few files about to be
/// fsynced anyway, not for a store's many; cfs/util/background_sync.h.)
void start_writeback(int fd) noexcept;

/// renameat2(RENAME_NOREPLACE). Returns false (not an error) when newpath already exists.
Result<bool> rename_noreplace(int olddir, const std::string& oldpath, int newdir,
                              const std::string& newpath);

/// openat(dirfd, dir, O_TMPFILE | flags, mode): an unnamed file in that directory, which
/// disappears by itself if the process dies before link_fd() names it. nullopt when the kernel
/// or the filesystem has no O_TMPFILE (EOPNOTSUPP, EISDIR, EINVAL): use a named temp instead.
Result<std::optional<UniqueFd>> open_unnamed(int dirfd, const std::string& dir, int flags,
                                             mode_t mode);

/// Gives the file open at fd (an O_TMPFILE file too) the name newdirfd/newpath: linkat with
/// AT_EMPTY_PATH where the process may (CAP_DAC_READ_SEARCH), else through /proc/self/fd with
/// AT_SYMLINK_FOLLOW, which needs no privilege. Returns false (not an error) when newpath
/// already exists.
Result<bool> link_fd(int fd, int newdirfd, const std::string& newpath);

/// flock(LOCK_SH): a writer's mark on a temp file it still owns. Held until every fd of this
/// open file description is closed, so a killed writer's temp files are unlocked.
Status lock_shared(int fd, const std::string& what);
/// flock(LOCK_EX | LOCK_NB): false (not an error) when anyone holds a lock on the file.
Result<bool> try_lock_exclusive(int fd, const std::string& what);

}  // namespace cfs::sys
