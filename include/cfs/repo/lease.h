// SPDX-License-Identifier: Apache-2.0
// Mount leases: a record in REPO/cfs-mounts/ for every mount cfs makes from a repository, so
// that `cfs repo gc` keeps the objects of every image mounted now, whatever its refs say
// (docs/repository.md "Mounts and GC").
//
// A lease names the image, the mount point, the mount namespace, the boot, and once the mount
// exists the mount's identity (mount ID and device number, as /proc/PID/mountinfo shows them)
// and, for FUSE, the server process (pid and start time). Protocol, under the repository's
// shared lock (so no GC runs in between):
//   begin()  writes a pending lease (no mount identity yet),
//   mount,
//   complete() rewrites it with the mount identity, or drop() removes it if the mount failed.
// The lock is then released: a mount does not hold the repository open.
//
// A lease is stale, and GC removes it, when the boot changed, its namespace is gone, no mount
// with its mount ID and device number exists in its namespace (unmounted by any means, even a
// plain umount), or its FUSE server died (a dead FUSE mount serves nothing). A pending lease
// (the mounting process died between mount and complete) is live as long as something is
// mounted on its mount point. Mount IDs are reused after an unmount (and so are the device
// numbers of overlays), so a kernel mount's lease also records the mount ID Linux >= 6.8 never
// reuses, and statmount(2) decides; on older kernels a reused ID and device number make a stale
// lease look live until that other mount goes, which only delays collection.
//
// Thread-safety: free functions; no shared state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::repo {

enum class MountKind { kKernel, kFuse };

struct Lease {
  std::string id;     ///< file name in cfs-mounts/
  std::string image;  ///< image hex digest
  MountKind kind = MountKind::kKernel;
  std::string mountpoint;    ///< absolute, canonical (as mountinfo shows it)
  std::uint64_t mnt_ns = 0;  ///< inode of /proc/self/ns/mnt of the mounting process
  std::string boot_id;
  std::optional<std::uint64_t> mount_id;  ///< set by complete()
  std::optional<std::uint64_t> dev;       ///< st_dev of the mount, makedev(major, minor)
  /// Kernel mounts on Linux >= 6.8: the mount ID that is never reused (STATX_MNT_ID_UNIQUE).
  std::optional<std::uint64_t> unique_id;
  std::optional<pid_t> pid;                ///< FUSE server
  std::optional<std::uint64_t> pid_start;  ///< its start time (/proc/PID/stat field 22)
  std::int64_t created = 0;                ///< seconds since the epoch
};

/// Writes a pending lease for mounting `image` on `mountpoint` (made canonical here). The
/// repository must be open for writing (shared lock).
Result<Lease> begin_lease(Repository& repo, const verity::Digest& image, MountKind kind,
                          const std::string& mountpoint);
/// Records the mount now on lease.mountpoint (the topmost one, found in mountinfo; a FUSE
/// mount point must not be stat'ed by its own server) and, for FUSE, this process as server.
Status complete_lease(Repository& repo, Lease& lease);
/// Removes a lease (the mount failed, or GC found it stale).
Status drop_lease(Repository& repo, const Lease& lease);

/// What mounting an image of the repository takes, with its lease begun.
struct MountPlan {
  verity::Digest image;
  std::string image_path;   ///< REPO/objects/XX/<rest>
  std::string objects_dir;  ///< REPO/objects: the only object directory (basedir)
  /// A secure repository: the image's digest is checked and every file must pass fs-verity
  /// (kernel verity=require; the FUSE mount verifies in userspace in any case).
  bool require_verity = false;
  Lease lease;
};

/// Resolves `name`, checks the image object against its name (the kernel's fs-verity
/// measurement in a secure repository, else computed) and, with `lease`, begins the lease.
/// `checked_copy`: the caller serves its own copy of the image, whose digest it has checked
/// (a lazy mount's fetched bytes), not this file, so an insecure repository's digest pass over
/// the file would only repeat that check. The caller mounts, then calls complete_lease() (or
/// drop_lease() on failure) before closing the repository.
Result<MountPlan> prepare_mount(Repository& repo, std::string_view name, MountKind kind,
                                const std::string& mountpoint, bool lease = true,
                                bool checked_copy = false);

/// The plan of prepare_mount(..., checked_copy=true) for an image that is not in the repository
/// yet: a lazy mount serves the checked bytes it holds and registers the image after it serves
/// (registry::complete_registration), keeping the repository open (gc needs it exclusively)
/// until then. Begins the lease.
Result<MountPlan> prepare_unregistered_mount(Repository& repo, const verity::Digest& image,
                                             MountKind kind, const std::string& mountpoint);

/// Every lease of the repository. Unreadable lease files are returned with an empty image
/// (GC treats them as stale, fsck reports them).
Result<std::vector<Lease>> list_leases(const Repository& repo);

/// Whether the mount a lease describes still exists (see the rules above). `why` says why not.
bool lease_live(const Lease& lease, std::string* why = nullptr);

}  // namespace cfs::repo
