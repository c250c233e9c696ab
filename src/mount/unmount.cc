// SPDX-License-Identifier: Apache-2.0
// Unmounting: only the overlay is attached, so one umount2() removes the whole composefs
// mount. The mountinfo check keeps `cfs umount` from unmounting something that is not one.
#include <sstream>
#include <string>

#include "cfs/mount/mount.h"
#include "cfs/util/sys.h"
#include "mount/kernel_internal.h"

namespace cfs::mount {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (std::size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

struct MountEntry {
  std::string fstype;
  std::string source;
};

// The last matching line is the top of the stack at that mount point.
Result<std::optional<MountEntry>> find_mount(const std::string& mount_point) {
  CFS_ASSIGN(std::string info, sys::read_file("/proc/self/mountinfo"));
  std::optional<MountEntry> found;
  std::istringstream lines(info);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, point;
    f >> id >> parent >> devno >> root >> point;
    if (unescape_mountinfo(point) != mount_point) continue;
    std::string word;
    while (f >> word && word != "-") {
    }
    MountEntry e;
    f >> e.fstype >> e.source;
    found = e;
  }
  return found;
}

}  // namespace

Status unmount(const std::string& target, bool lazy) {
  CFS_ASSIGN(std::string path, sys::real_path(target));
  CFS_ASSIGN(auto entry, find_mount(path));
  if (!entry) return fail(Errc::kInvalidInput, "unmount " + target + ": not a mount point");
  // Kernel composefs mounts are overlays; `cfs mount --fuse` mounts are fuse.composefs.
  if (entry->fstype != "overlay" && entry->fstype != "fuse.composefs")
    return fail(Errc::kInvalidInput, "unmount " + target + ": not a composefs mount (it is " +
                                         entry->fstype + " from " + entry->source + ")");
  CFS_TRY(kernel::umount(path, lazy));
  // A stacked EROFS (mount(2) on kernels that need attached layers) is the next one down.
  CFS_ASSIGN(auto below, find_mount(path));
  if (below && below->fstype == "erofs") CFS_TRY(kernel::umount(path, lazy));
  return {};
}

}  // namespace cfs::mount
