// SPDX-License-Identifier: Apache-2.0
// Stand-in for the userspace mount in builds configured with -DCFS_BUILD_FUSE=OFF.
#include <cstdio>

#include "tools/command.h"
#include "tools/fuse_mount.h"

namespace cfs::tools {

int run_fuse_mount(int, char**) {
  std::fputs("cfs: error: this cfs was built without the FUSE mount (CFS_BUILD_FUSE=OFF)\n",
             stderr);
  return kExitFailure;
}

}  // namespace cfs::tools
