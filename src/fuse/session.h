// SPDX-License-Identifier: Apache-2.0
// The libfuse session shared by the read-only and the writable server: mount, signal handling,
// daemonizing, the (multi-threaded) loop and unmount.
#pragma once

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include <new>
#include <string>

#include "cfs/fuse/server.h"
#include "cfs/util/result.h"
#include "cfs/vfs/filesystem.h"

namespace cfs::fuse {

/// Replies with the errno of a library error (EIO when it has none).
inline void reply_error(fuse_req_t req, const Error& e) {
  int err = vfs::errno_for(e);
  fuse_reply_err(req, err > 0 ? err : EIO);
}

/// Answers getxattr/listxattr: the size probe (size 0), ERANGE, or the data.
inline void reply_xattr_data(fuse_req_t req, const std::string& data, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, data.size());
  if (data.size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, data.data(), data.size());
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
