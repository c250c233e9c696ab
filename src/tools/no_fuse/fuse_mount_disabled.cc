// SPDX-License-Identifier: Apache-2.0
// Stand-in for the userspace mount in builds configured with -DCFS_BUILD_FUSE=OFF.
#include <cstdio>

#include "tools/command.h"
#include "tools/fuse_mount.h"

namespace cfs::tools {

int run_fuse_mount(int argc, char** argv) { return run_fuse_mount_then(argc, argv, {}); }

int run_fuse_mount_then(int, char**, const std::function<void()>&) {
  std::fputs("cfs: error: this cfs was built without the FUSE mount (CFS_BUILD_FUSE=OFF)\n",
             stderr);
  return kExitFailure;
}

}  // namespace cfs::tools
