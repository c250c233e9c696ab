// SPDX-License-Identifier: Apache-2.0
// Content-addressed object store compatible with `mkcomposefs --digest-store` and
// `mount.composefs basedir=`: the object whose fs-verity digest (SHA-256 or SHA-512) has hex H
// lives at STORE/H[0:2]/H[2:], its object name (cfs/tree/object_name.h), which is also the
// image payload of the files with that content.
//
// Adding an object (add_object): its name is looked up only where the fan-out index cannot
// tell it is absent (cfs/store/fanout_dirs.h: each fan-out directory opened and listed once);
// then an unnamed file (O_TMPFILE) in its fan-out directory, or
// where the filesystem has none a temp file "ab/.tmpXXXXXX", content
// shared with the source by FICLONE where the filesystem can (btrfs, XFS), else copy_file_range
// (in-kernel copy), else read/write (add_object_bytes: written from memory); writeback started in
// batches (a background syncfs every 64 MiB of new data); fchmod 0644; every writable fd closed;
// fs-verity enabled best-effort (the kernel refuses while a writable fd is open); then linkat()
// (renameat2(NOREPLACE) for a named temp) into place. An object that already exists is never
// rewritten or replaced (its name is its content), and a lost race against another writer of the
// same object is success. A crash never leaves a partial object under its final name *in the page
// cache view*; see sync().
//
// Durability: no fsync per object. Upstream fsyncs every object, which dominates its run time
// (one journal commit per file: 43-77 s for /usr versus seconds for the copies). Instead the
// caller calls sync() once, after all objects are added and BEFORE publishing anything that
// references them (the image rename). syncfs(2) writes back every dirty page and inode of the
// store's filesystem and commits its journal, and since Linux 5.8 reports writeback errors
// that happened on that filesystem since the fd was opened. So once an image is visible, all
// objects it names are durable; after a crash before that point the image does not exist and
// an object may be incomplete under its final name (the rename can reach the journal before
// the data on filesystems without rename-ordering). Such objects are detected by
// `cfs fsck --store` (name != digest) and by fs-verity at read time, and healed by the next
// add of the same content: an existing object is checked cheaply before it is trusted (a
// regular file of the content's size; the kernel's fs-verity measurement where it has one,
// not asked for again once the kernel said the filesystem has no fs-verity; the full digest
// only with set_verify_existing(true)) and a bad one is replaced atomically
// (a complete temp renamed over it). Without fs-verity and without --verify-existing a damaged
// object of the right size is not noticed: run `cfs fsck --store` after a crash.
//
// Thread-safety: an ObjectStore may be used from many threads at once (add_objects() does);
// the shared state is immutable after open() plus atomic flags and counters, and the fan-out
// index (a mutex per fan-out directory).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs {
class BackgroundSync;
}

namespace cfs::store {

class FanoutDirs;

/// What add_object() did.
enum class AddOutcome {
  kAdded,
  kExisted,
  kReplaced,  ///< a damaged object under the name was replaced (see the header)
};

/// How an object's bytes were produced (for statistics and tests).
enum class CopyMethod { kNone, kReflink, kCopyRange, kReadWrite };

/// Live progress and totals of add operations.
struct StoreCounters {
  std::atomic<std::uint64_t> added{0};
  std::atomic<std::uint64_t> existed{0};
  std::atomic<std::uint64_t> replaced{0};  ///< damaged existing objects replaced
  std::atomic<std::uint64_t> bytes_added{0};
  std::atomic<std::uint64_t> reflinked{0};
  std::atomic<std::uint64_t> verity_enabled{0};
};

/// One object to add: its digest and where its content is (path relative to src_dirfd).
struct ObjectSource {
  verity::Digest digest;
  std::string path;
  std::uint64_t size = 0;
};

class ObjectStore {
 public:
  /// Opens the store at `path`, creating it (and missing parents, mode 0755) when `create`.
  static Result<ObjectStore> open(const std::string& path, bool create = true);

  ObjectStore(ObjectStore&&) noexcept;
  ObjectStore& operator=(ObjectStore&&) noexcept;
  ~ObjectStore();

  const std::string& path() const noexcept { return path_; }
  int fd() const noexcept { return fd_.get(); }

  /// True if an object (any file type) exists under the digest's name.
  bool has_object(const verity::Digest& digest) const;

  /// Adds the content of the open file src_fd (read from offset 0) as the object `digest`.
  /// The content is trusted to match the digest (the caller computed it); `what` names the
  /// source in errors.
  Result<AddOutcome> add_object(const verity::Digest& digest, int src_fd, const std::string& what,
                                StoreCounters* counters = nullptr);

  /// Same, with the content given in memory (written, not copied from a file).
  Result<AddOutcome> add_object_bytes(const verity::Digest& digest,
                                      std::span<const std::byte> content,
                                      StoreCounters* counters = nullptr);

  /// Adds many objects on `threads` threads (0 = all CPUs). Duplicate digests in `sources`
  /// are copied once. Sources are opened relative to src_dirfd; errors name `src_display`/path.
  /// Stops at the first error.
  Status add_objects(std::span<const ObjectSource> sources, int src_dirfd,
                     const std::string& src_display, unsigned threads,
                     StoreCounters* counters = nullptr);

  /// Existing objects: also compare the full fs-verity digest when the kernel has no
  /// measurement (reads every existing object; `--verify-existing`).
  void set_verify_existing(bool on) noexcept { verify_existing_ = on; }

  /// Makes every object added so far durable: one syncfs(2) of the store's filesystem.
  /// Call before publishing an image that references them.
  Status sync();

  /// Background writeback runs so far (cfs/util/background_sync.h; tests).
  std::uint64_t writeback_runs() const;

  /// Whether fs-verity could be enabled on the objects added so far (false after the first
  /// "unsupported" answer, after which it is not tried again).
  bool verity_supported() const noexcept { return verity_ok_->load(); }

 private:
  ObjectStore(UniqueFd fd, std::string path);
  Result<UniqueFd> create_temp(std::string_view dir, std::string& name) const;
  enum class Existing { kAbsent, kGood, kBad };
  // Where an object goes and whether it is there: its fan-out directory (open), its name in
  // it, and what check_existing() found (kAbsent without a lookup when the fan-out index
  // knows it is absent, see cfs/store/fanout_dirs.h).
  struct Slot {
    int dirfd = -1;
    std::string name;
    Existing existing = Existing::kAbsent;
  };
  Result<Slot> locate(const verity::Digest& digest, std::uint64_t size);
  Result<Existing> check_existing(int dirfd, const std::string& name, const verity::Digest& digest,
                                  std::uint64_t size) const;
  Result<AddOutcome> add_with(const verity::Digest& digest, std::uint64_t size,
                              const std::function<Status(int)>& fill_temp, StoreCounters* counters);
  Result<AddOutcome> add_at(const Slot& slot, const verity::Digest& digest, std::uint64_t size,
                            const std::function<Status(int)>& fill_temp, StoreCounters* counters);
  Status fill(int dst_fd, int src_fd, const std::string& what, StoreCounters* counters) const;
  Result<bool> copy_direct(int dst_fd, int src_fd, std::uint64_t size,
                           const std::string& what) const;

  UniqueFd fd_;
  std::string path_;
  // Heap-allocated so the store stays movable.
  std::unique_ptr<std::atomic<bool>> verity_ok_;
  std::unique_ptr<std::atomic<bool>> copy_range_ok_;
  std::unique_ptr<std::atomic<bool>> direct_ok_;
  std::unique_ptr<std::atomic<bool>> tmpfile_ok_;
  // False once the kernel said the store's filesystem has no fs-verity (check_existing).
  std::unique_ptr<std::atomic<bool>> measure_ok_;
  std::unique_ptr<FanoutDirs> fanout_;
  std::unique_ptr<BackgroundSync> writeback_;
  bool verify_existing_ = false;
  bool chmod_needed_ = true;  // the umask takes bits of 0644 (or could not be read)
};

}  // namespace cfs::store
