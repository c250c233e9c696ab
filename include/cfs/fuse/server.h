// SPDX-License-Identifier: Apache-2.0
// Serves a vfs::Filesystem over FUSE (libfuse3 low-level API, multi-threaded). Thin: every
// operation is a noexcept trampoline that calls the vfs layer and maps its errors to errno
// (bad_alloc -> ENOMEM, any other exception -> EIO). The image is immutable, so entries and
// attributes are cached by the kernel for a long time, negative lookups too, directory
// listings are cached, and file pages stay cached across opens when every byte was verified
// or comes from the image itself (FOPEN_KEEP_CACHE).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/vfs/filesystem.h"
#include "cfs/vfs/upper.h"

namespace cfs::fuse {

struct ServeOptions {
  std::string mountpoint;
  std::string fsname;              ///< shown as the mount source (the image path)
  bool foreground = false;         ///< -f: stay in the foreground (else daemonize once mounted)
  bool debug = false;              ///< -d: libfuse debug output (implies foreground)
  bool single_thread = false;      ///< -s
  unsigned max_threads = 0;        ///< 0 = libfuse's default
  std::vector<std::string> extra;  ///< further -o options for libfuse / the kernel
  /// Called in the calling process once the kernel mount is up, before it daemonizes: the
  /// place to report on stdout (the command returns as soon as the daemon has forked, and the
  /// daemon's stdout is /dev/null; a report from on_serving reached a file after the command
  /// had returned).
  std::function<void()> on_mounted;
  /// Called once the mount is up and the process is what will serve it: `daemonized` says
  /// whether stderr has been detached (log to syslog from then on).
  std::function<void(bool daemonized)> on_serving;
  /// Called on the calling thread once the server's SIGINT/SIGTERM/SIGHUP handlers are in place
  /// (from then on they stop the server, which unmounts), before anything is mounted: a caller
  /// that read those signals itself until then (tools/interrupt.h) hands them over here, so
  /// that no moment is left where they take their default action. false: the caller was
  /// interrupted meanwhile; nothing is mounted and serve() fails with ECANCELED.
  std::function<bool()> on_signals;
};

/// Mounts `fs` at opts.mountpoint and serves requests until the filesystem is unmounted
/// (fusermount3 -u, umount) or SIGINT/SIGTERM/SIGHUP arrives, then unmounts. Errors: ENODEV
/// when /dev/fuse is missing, mount failures (libfuse prints the kernel's reason to stderr).
Status serve(std::unique_ptr<vfs::Filesystem> fs, const ServeOptions& opts);

/// The same with a writable upper layer (vfs::MergedFs). Nothing is cached for long: entries and
/// attributes for a second, no directory listing or symlink caching, file pages only for data
/// served verified from the image.
Status serve(std::unique_ptr<vfs::MergedFs> fs, const ServeOptions& opts);

}  // namespace cfs::fuse
