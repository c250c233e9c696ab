// SPDX-License-Identifier: Apache-2.0
// The mount module's system-call layer: the new mount API (fsopen/fsconfig/fsmount/
// move_mount/mount_setattr), legacy mount(2)/umount2 and loop devices (memfds are in
// cfs/util/sys.h, the fs-verity ioctls in cfs/verity/kernel.h). The only place in src/mount that
// reads errno; every error names the operation, and fsconfig errors carry the kernel's own message
// from the fs_context log.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::mount::kernel {

/// fsopen(fstype). ENODEV means the kernel lacks the filesystem; EPERM means not root.
Result<UniqueFd> fsopen(const std::string& fstype);
Status fsconfig_string(int fs_fd, const std::string& key, const std::string& value);
Status fsconfig_flag(int fs_fd, const std::string& key);
Status fsconfig_create(int fs_fd);
/// fsmount(); the result is a detached mount until move_mount() attaches it.
Result<UniqueFd> fsmount(int fs_fd, std::uint64_t attrs);
Status move_mount(int mnt_fd, const std::string& target);
/// Makes a detached mount idmapped with the user namespace open at userns_fd.
Status set_idmap(int mnt_fd, int userns_fd);

/// mount(2) with a legacy option string.
Status legacy_mount(const std::string& source, const std::string& target, const std::string& fstype,
                    unsigned long flags, const std::string& data);
Status umount(const std::string& target, bool lazy);
/// (major, minor) of the running kernel from uname(2); (0, 0) if unparsable.
std::pair<int, int> kernel_version();

/// A loop device bound read-only to a backing fd with LOOP_CONFIGURE (Linux 5.8), 4096-byte
/// logical blocks and autoclear: the device frees itself when its last user (our fd, then the
/// EROFS superblock) goes away. Keep `fd` open until the filesystem is mounted.
struct LoopDevice {
  UniqueFd fd;
  std::string path;
};
Result<LoopDevice> loop_attach(int backing_fd);

}  // namespace cfs::mount::kernel
