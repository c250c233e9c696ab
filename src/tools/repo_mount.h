// SPDX-License-Identifier: Apache-2.0
// `cfs mount` of a repository image (see repo_mount.cc).
#pragma once

#include <string>

namespace cfs::tools {

/// True when a `cfs mount` command line names a repository image: --repo is given, or no
/// object directory is given and IMAGE is not a file (a name in the default repository).
bool wants_repo_mount(int argc, char** argv);
/// `cfs mount --repo R [--fuse] [-o OPTS] NAME MOUNTPOINT`. `shown_name`, when given, is the
/// name --json and -v report instead of NAME (`cfs oci mount` passes the image's digest as NAME).
int run_repo_mount(int argc, char** argv, const std::string& shown_name = "");

}  // namespace cfs::tools
