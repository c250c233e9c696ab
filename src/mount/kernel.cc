// SPDX-License-Identifier: Apache-2.0
#include "mount/kernel_internal.h"

// glibc 2.36's <sys/mount.h> clashes with <linux/mount.h>, so the mount syscalls are called
// through syscall(2) with the kernel's own constants.
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "cfs/util/sys.h"

namespace cfs::mount::kernel {
namespace {

// Reads the messages the kernel queued on an fs_context ("e overlayfs: conflicting ...").
// Reading drains them; errors while reading just end the log.
std::string drain_log(int fs_fd) {
  std::string log;
  char buf[1024];
  while (true) {
    ssize_t n = ::read(fs_fd, buf, sizeof buf);
    if (n <= 0) break;
    std::string line(buf, static_cast<std::size_t>(n));
    // "e ", "w ", "i " prefixes mark severity; keep the text.
    if (line.size() > 2 && line[1] == ' ') line = line.substr(2);
    if (!log.empty()) log += "; ";
    log += line;
  }
  return log;
}

Error fsconfig_error(int fs_fd, std::string what, int err) {
  std::string log = drain_log(fs_fd);
  if (!log.empty()) what += " (kernel: " + log + ")";
  return Error::from_errno(std::move(what), err);
}

int sys_fsconfig(int fd, unsigned cmd, const char* key, const char* value, int aux) {
  return static_cast<int>(::syscall(SYS_fsconfig, fd, cmd, key, value, aux));
}

}  // namespace

Result<UniqueFd> fsopen(const std::string& fstype) {
  int fd = static_cast<int>(::syscall(SYS_fsopen, fstype.c_str(), FSOPEN_CLOEXEC));
  if (fd < 0) return fail_errno("fsopen " + fstype);
  return UniqueFd(fd);
}

Status fsconfig_string(int fs_fd, const std::string& key, const std::string& value) {
  if (sys_fsconfig(fs_fd, FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0) != 0)
    return fail(fsconfig_error(fs_fd, "fsconfig " + key + "=" + value, errno));
  return {};
}

Status fsconfig_flag(int fs_fd, const std::string& key) {
  if (sys_fsconfig(fs_fd, FSCONFIG_SET_FLAG, key.c_str(), nullptr, 0) != 0)
    return fail(fsconfig_error(fs_fd, "fsconfig " + key, errno));
  return {};
}

Status fsconfig_create(int fs_fd) {
  if (sys_fsconfig(fs_fd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return fail(fsconfig_error(fs_fd, "create superblock", errno));
  return {};
}

Result<UniqueFd> fsmount(int fs_fd, std::uint64_t attrs) {
  int fd = static_cast<int>(
      ::syscall(SYS_fsmount, fs_fd, FSMOUNT_CLOEXEC, static_cast<unsigned>(attrs)));
  if (fd < 0) return fail_errno("fsmount");
  return UniqueFd(fd);
}

Status move_mount(int mnt_fd, const std::string& target) {
  if (::syscall(SYS_move_mount, mnt_fd, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return fail_errno("move_mount to " + target);
  return {};
}

Status set_idmap(int mnt_fd, int userns_fd) {
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<__u64>(userns_fd);
  if (::syscall(SYS_mount_setattr, mnt_fd, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return fail_errno("mount_setattr MOUNT_ATTR_IDMAP");
  return {};
}

Status legacy_mount(const std::string& source, const std::string& target, const std::string& fstype,
                    unsigned long flags, const std::string& data) {
  if (::syscall(SYS_mount, source.c_str(), target.c_str(), fstype.c_str(), flags, data.c_str()) !=
      0)
    return fail_errno("mount -t " + fstype + " -o " + data + " " + target);
  return {};
}

Status umount(const std::string& target, bool lazy) {
  // umount2 flags from <sys/mount.h>, which clashes with <linux/mount.h>.
  constexpr int kMntDetach = 2;
  constexpr int kUmountNofollow = 8;
  int flags = kUmountNofollow | (lazy ? kMntDetach : 0);
  if (::syscall(SYS_umount2, target.c_str(), flags) != 0) return fail_errno("umount " + target);
  return {};
}

std::pair<int, int> kernel_version() {
  struct utsname u {};
  if (::uname(&u) != 0) return {0, 0};
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return {0, 0};
  return {major, minor};
}

Result<LoopDevice> loop_attach(int backing_fd) {
  CFS_ASSIGN(UniqueFd ctl, cfs::sys::open("/dev/loop-control", O_RDWR));
  // Another process may grab the free device between GET_FREE and CONFIGURE: retry.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int nr = ::ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    if (nr < 0) return fail_errno("ioctl LOOP_CTL_GET_FREE");
    std::string path = "/dev/loop" + std::to_string(nr);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_errno("open " + path);
    UniqueFd dev(fd);
    struct loop_config cfg {};
    cfg.fd = static_cast<std::uint32_t>(backing_fd);
    cfg.block_size = 4096;
    cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    if (::ioctl(dev.get(), LOOP_CONFIGURE, &cfg) == 0) return LoopDevice{std::move(dev), path};
    if (errno != EBUSY) return fail_errno("ioctl LOOP_CONFIGURE " + path);
  }
  return fail_errno("ioctl LOOP_CONFIGURE: every free loop device was taken", EBUSY);
}

}  // namespace cfs::mount::kernel
