// SPDX-License-Identifier: Apache-2.0
// The libfuse session shared by the read-only and the writable server: mount, signal handling,
// daemonizing, the (multi-threaded) loop and unmount.
#pragma once

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include <new>

#include "cfs/fuse/server.h"
#include "cfs/util/result.h"
#include "cfs/vfs/filesystem.h"

namespace cfs::fuse {

/// Replies with the errno of a library error (EIO when it has none).
inline void reply_error(fuse_req_t req, const Error& e) {
  int err = vfs::errno_for(e);
  fuse_reply_err(req, err > 0 ? err : EIO);
}

/// Runs one operation; a request must always get exactly one reply, exceptions included.
template <class Fn>
void trampoline(fuse_req_t req, Fn&& fn) noexcept {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (...) {
    fuse_reply_err(req, EIO);
  }
}

/// Serves `ops` (userdata: `userdata`) at opts.mountpoint until unmounted or signalled.
Status run_session(const fuse_lowlevel_ops& ops, void* userdata, const ServeOptions& opts,
                   bool writable);

}  // namespace cfs::fuse
