// SPDX-License-Identifier: Apache-2.0
// The userspace (FUSE) composefs mount front end, shared by the `composefs-fuse` program name,
// `cfs fuse-mount`, and `cfs mount --fuse` (the mount command forwards its argv here).
#pragma once

#include <functional>

namespace cfs::tools {

/// argv[0] is the program or command name; a `--fuse` argument is ignored. Usage:
///   IMAGE MOUNTPOINT [-o OPTS] [-f] [-d] [-s]   or   -o source=IMAGE,... MOUNTPOINT
/// Exit status 0 / 1 (failure) / 2 (usage).
int run_fuse_mount(int argc, char** argv);
/// The same; `on_mounted` runs in the calling process once the mount is up, before it
/// daemonizes (fuse::ServeOptions::on_mounted: report on stdout there), `on_ready` in the
/// serving process once the mount is live (fuse::ServeOptions::on_serving).
int run_fuse_mount_then(int argc, char** argv, const std::function<void()>& on_ready,
                        const std::function<void()>& on_mounted = {});

}  // namespace cfs::tools
