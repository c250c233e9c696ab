// SPDX-License-Identifier: Apache-2.0
// The libfuse session shared by the read-only and the writable server: mount, signal handling,
// daemonizing, the (multi-threaded) loop and unmount.
#pragma once

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include <cstddef>
#include <new>
#include <span>
#include <string>
#include <vector>

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

/// getxattr: the value of a lookup result.
inline void reply_xattr_value(fuse_req_t req, const Result<std::string>& value, size_t size) {
  if (!value) return reply_error(req, value.error());
  reply_xattr_data(req, *value, size);
}

/// listxattr: the names, NUL-terminated. Privileged namespaces are listed only to callers that
/// could read them (the kernel's trusted handler does the same for overlayfs; VFS already
/// refuses the get for others).
inline void reply_xattr_names(fuse_req_t req, const Result<std::vector<std::string>>& names,
                              size_t size) {
  if (!names) return reply_error(req, names.error());
  const bool privileged = fuse_req_ctx(req)->uid == 0;
  std::string out;
  for (const auto& n : *names) {
    if (!privileged && n.starts_with("trusted.")) continue;
    out += n;
    out.push_back('\0');
  }
  reply_xattr_data(req, out, size);
}

inline void reply_readlink(fuse_req_t req, const Result<std::string>& target) {
  if (!target) return reply_error(req, target.error());
  fuse_reply_readlink(req, target->c_str());
}

/// read: the bytes (a view into the thread's ReadBuffer) or the error.
inline void reply_data(fuse_req_t req, const Result<std::span<const std::byte>>& data) {
  if (!data) return reply_error(req, data.error());
  fuse_reply_buf(req, reinterpret_cast<const char*>(data->data()), data->size());
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

/// FORGET and BATCH_FORGET get no reply but fuse_reply_none, whatever happens.
template <class Fn>
void forget_trampoline(fuse_req_t req, Fn&& fn) noexcept {
  try {
    fn();
  } catch (...) {
    // Nothing to tell the kernel: at worst a node stays in the table until unmount.
  }
  fuse_reply_none(req);
}

/// Serves `ops` (userdata: `userdata`) at opts.mountpoint until unmounted or signalled.
/// `session` (when set) receives the session before the first request is read (for
/// notifications such as fuse_lowlevel_notify_store).
Status run_session(const fuse_lowlevel_ops& ops, void* userdata, const ServeOptions& opts,
                   bool writable, fuse_session** session = nullptr);

}  // namespace cfs::fuse
