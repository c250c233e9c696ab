// SPDX-License-Identifier: Apache-2.0
// The libfuse session shared by the read-only and the writable server: mount, signal handling,
// daemonizing, the (multi-threaded) loop and unmount.
#pragma once

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include "cfs/fuse/server.h"

namespace cfs::fuse {

/// Serves `ops` (userdata: `userdata`) at opts.mountpoint until unmounted or signalled.
Status run_session(const fuse_lowlevel_ops& ops, void* userdata, const ServeOptions& opts,
                   bool writable);

}  // namespace cfs::fuse
