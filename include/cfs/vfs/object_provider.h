// SPDX-License-Identifier: Apache-2.0
// Where a mount's file data comes from. The vfs layer resolves a metacopy file (its checks,
// store::open_backing's order) and then asks an ObjectProvider for the object; verification
// stays in the vfs layer (the digest check at open, every block at read), whatever the
// provider. Two providers exist: the object directories of a store (store_provider(), what
// both mounts always did) and the registry module's lazy provider, which fetches a missing
// object from a registry, verifies it whole and stores it before it is served
// (cfs/registry/lazy.h).
// Thread-safety: open_object() is called from every FUSE worker thread at once.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "cfs/store/object_dirs.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"
#include "cfs/verity/merkle.h"
#include "cfs/vfs/tree_cache.h"

namespace cfs::vfs {

class ObjectProvider {
 public:
  virtual ~ObjectProvider() = default;
  /// Opens object `rel` ("ab/cdef…", the redirect without its leading '/') read-only.
  /// `digest`: the fs-verity digest the image records for it (nullopt when it records none or
  /// verity is off). Errors: ENOENT (missing), EXDEV (the path leaves the object directory),
  /// as store::ObjectDirs::open_object(); a provider that fetches adds its own (EIO when the
  /// fetch failed, timed out or brought data that is not the object). May block: FUSE serves
  /// other requests on other threads meanwhile.
  virtual Result<UniqueFd> open_object(std::string_view rel,
                                       const std::optional<verity::Digest>& digest) const = 0;
  /// The Merkle tree of object `digest` when the provider built it from the very bytes it stored
  /// (a fetch hashes what it receives to verify it), handed over once, so that the open need
  /// not read the whole object back to build it again; no tree (the default) when it has none.
  /// The vfs adopts it only when it gives `digest`, and checks every block read against it, as
  /// against a tree it built. With it, the provider may hand over the bytes it hashed into it
  /// (all of them, as they were hashed: the provider vouches for that, as for the tree): an open
  /// that adopts the tree uses them as its verified copy (TreeCache::get), which the FUSE server
  /// stores in the page cache, instead of the program's reads each reading and hashing again.
  virtual Prebuilt take_tree(const verity::Digest& digest) const {
    (void)digest;
    return {};
  }
  /// True when the provider wants each read of its objects reported (on_read): the lazy mount's
  /// trace records what workloads read, to size fetches smaller than an object (design.md,
  /// "Partial verified fetch"). Asked once, when the filesystem is opened; the default costs
  /// the read path nothing.
  virtual bool wants_reads() const { return false; }
  /// A read of object `digest` was served: `len` bytes (after the end-of-file clamp) at `off`,
  /// as the kernel asked for them (a READ request: page-aligned, readahead's size, not the
  /// program's own read(2) or page fault). From any FUSE worker thread, concurrently; only
  /// when wants_reads(), and only for objects opened with a digest (not with verity=off).
  virtual void on_read(const verity::Digest& digest, std::uint64_t off, std::size_t len) const {
    (void)digest;
    (void)off;
    (void)len;
  }
  /// Called once in the process that serves the mount, after it daemonized (libfuse forks):
  /// background work (threads, connections) starts here, never before.
  virtual void start() {}
};

/// The object directories of a store, searched in order (store::ObjectDirs).
std::unique_ptr<ObjectProvider> store_provider(store::ObjectDirs dirs);

}  // namespace cfs::vfs
