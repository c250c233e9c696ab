// SPDX-License-Identifier: Apache-2.0
// Stand-ins for the registry commands in builds configured with -DCFS_BUILD_REGISTRY=OFF.
#include <cstdio>

#include "tools/command.h"

namespace cfs::tools {
namespace {

int run_disabled(int, char**) {
  std::fputs(
      "cfs: error: this cfs was built without the registry client (CFS_BUILD_REGISTRY=OFF)\n",
      stderr);
  return kExitFailure;
}

}  // namespace

CFS_REGISTER_COMMAND("registry", "talk to an OCI registry (not built in)", run_disabled);
CFS_REGISTER_COMMAND("login", "store registry credentials (not built in)", run_disabled);
CFS_REGISTER_COMMAND("logout", "remove stored registry credentials (not built in)", run_disabled);

}  // namespace cfs::tools
