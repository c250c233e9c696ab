// SPDX-License-Identifier: Apache-2.0
// The userspace composefs mount as one call, from the same options model as the kernel mount
// (mount::Options, Dialect::kFuse): what `cfs mount --fuse` and composefs-fuse run.
// Order of work, as mount::mount_image(): validate the options, check the mount point, open
// the image once and check it against digest= (serving exactly the checked bytes), check that
// the object directories hold its objects, build the filesystem (with the writable upper layer
// when asked) and serve it. While it serves, every verification failure and every missing or
// refused object is logged (path in the image, object, reason) to stderr in the foreground and
// to syslog once daemonized, at most a few per second.
#pragma once

#include <memory>
#include <string>

#include "cfs/erofs/reader.h"
#include "cfs/fuse/server.h"
#include "cfs/mount/options.h"
#include "cfs/util/result.h"
#include "cfs/vfs/object_provider.h"
#include "cfs/vfs/options.h"

namespace cfs::fuse {

/// The vfs options the FUSE mount serves with (basedirs, verity mode, tree cache).
vfs::Options vfs_options(const mount::Options& opts);

/// Mounts `image` (or opts.source when empty) on `mountpoint` and serves it until unmounted.
/// `serve` carries -f/-d/-s and the caller's on_serving (run after the mount's own); the rest
/// (mount point, fsname, threads, libfuse and mount attribute options) is filled in from the
/// arguments and `opts`. Errors name the failing step; nothing is left mounted on failure.
Status mount_image(const std::string& image, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve);

/// Worker threads of a mount whose objects may be fetched (opts.threads unless larger): an
/// open waiting for its fetch holds one libfuse worker, and libfuse starts another while none
/// is idle, so lookups and reads of present files keep being served by the rest.
inline constexpr unsigned kFetchingMountThreads = 64;

/// The same with the objects coming from `objects` instead of opts.basedirs (which are then
/// ignored): no up-front check that every object is present (the provider fetches what is
/// missing), objects->start() once the mount serves, at least kFetchingMountThreads workers.
Status mount_image(const std::string& image, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve,
                   std::shared_ptr<vfs::ObjectProvider> objects);

/// The same with the image already open (`name` for messages and the fsname): bytes the caller
/// has checked itself, e.g. the sealed copy of a lazy mount's fetched image, so opts.digest is
/// not consulted.
Status mount_image(erofs::Image image, const std::string& name, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve,
                   std::shared_ptr<vfs::ObjectProvider> objects);

}  // namespace cfs::fuse
