// SPDX-License-Identifier: Apache-2.0
// A writable upper directory over the read-only image filesystem, with the semantics and the
// on-disk format of kernel overlayfs (metacopy=on, redirect_dir=on, verity=…), so that the
// upper directory could later be used by a kernel overlay mount. Plain functions over paths:
// the FUSE glue only translates requests; everything is testable without /dev/fuse.
//
// Merge rules (the kernel's; docs/fuse.md "The writable upper layer"):
//  * an upper entry hides the lower one; a chardev 0/0 in upper (whiteout) hides the lower
//    name; an upper directory with `trusted.overlay.opaque=y` hides every lower child; an upper
//    directory without it is merged with the lower directory of the same path;
//  * readdir lists upper entries first (sorted), then lower ones not hidden;
//  * st_ino: the lower nid for entries that have a lower origin (copied-up files keep it), else
//    the upper inode number with bit 63 set (like xino: no clash with nids).
// Copy-up (parents first, with their metadata): a metadata change of a lower regular file
// makes a metacopy copy-up: an empty upper file of the right size with
// `trusted.overlay.metacopy` = `00 24 00 01` + digest when the lower data was verified against
// a digest (empty value otherwise; under verity=require a metacopy file without a digest is
// refused with EIO, and a file stored in the image itself, having no digest to record, is
// copied up in full, as the kernel does) and `trusted.overlay.redirect` = the absolute path of the
// lower file, through which the data keeps being served (and verified) from the image's object.
// Opening for write or truncating copies the (verified) data into a temp file in the workdir,
// sets metadata and xattrs, renames it into place; the result has no metacopy xattr.
// Renaming a directory that has a lower part gives EXDEV (overlay without redirect_dir on the
// upper); userspace `mv` then copies.
// Thread-safety: namespace operations are serialized by an internal mutex; reads and writes on
// an open file may run concurrently with everything.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/vfs/filesystem.h"

namespace cfs::vfs {

/// Node id of a merged path, stable while the path exists (renames carry it along). 1 is the
/// root, as FUSE wants.
using MergedNode = std::uint64_t;
inline constexpr MergedNode kMergedRoot = 1;

struct MergedEntry {
  MergedNode node = 0;
  struct stat st {};
};

struct MergedDirent {
  std::string name;
  struct stat st {};
};

/// Who creates a file (its owner).
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

/// setattr: unset fields are left alone; a timespec with tv_nsec == UTIME_NOW means "now".
struct SetAttr {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<std::uint64_t> size;
  std::optional<struct timespec> atime;
  std::optional<struct timespec> mtime;
};

/// An open file of the merged view: the upper file, or a lower (image/object) file.
class MergedFile {
 public:
  bool writable() const noexcept { return upper_.get() >= 0 && writable_; }
  bool cacheable() const noexcept { return lower_ && lower_->cacheable(); }
  int upper_fd() const noexcept { return upper_.get(); }

 private:
  friend class MergedFs;
  std::unique_ptr<OpenFile> lower_;
  UniqueFd upper_;
  bool writable_ = false;
};

class MergedFs {
 public:
  /// `upperdir` and `workdir` must be directories on the same filesystem (renames from the
  /// workdir into the upper), and the workdir must not be inside the upper.
  static Result<std::unique_ptr<MergedFs>> open(std::unique_ptr<Filesystem> lower,
                                                const std::string& upperdir,
                                                const std::string& workdir);
  ~MergedFs();
  MergedFs(const MergedFs&) = delete;
  MergedFs& operator=(const MergedFs&) = delete;

  const Filesystem& lower() const noexcept { return *lower_; }

  Result<struct stat> getattr(MergedNode n);
  Result<MergedEntry> lookup(MergedNode parent, std::string_view name);
  Result<std::string> readlink(MergedNode n);
  /// Snapshot of a directory: ".", "..", upper entries (sorted), then visible lower entries in
  /// image order. The caller serves offsets as indices into it (stable for the snapshot).
  Result<std::vector<MergedDirent>> list_dir(MergedNode n);
  Result<std::vector<std::string>> listxattr(MergedNode n);
  Result<std::string> getxattr(MergedNode n, std::string_view name);
  Status setxattr(MergedNode n, std::string_view name, std::string_view value, int flags);
  Status removexattr(MergedNode n, std::string_view name);
  Result<struct stat> setattr(MergedNode n, const SetAttr& a, const MergedFile* f);

  Result<MergedEntry> mknod(MergedNode parent, std::string_view name, mode_t mode, dev_t rdev,
                            Caller c);
  Result<MergedEntry> mkdir(MergedNode parent, std::string_view name, mode_t mode, Caller c);
  Result<MergedEntry> symlink(MergedNode parent, std::string_view name, const std::string& target,
                              Caller c);
  Result<MergedEntry> link(MergedNode n, MergedNode parent, std::string_view name);
  /// Creates a regular file and opens it with `flags`.
  Result<MergedEntry> create(MergedNode parent, std::string_view name, mode_t mode, int flags,
                             Caller c, std::unique_ptr<MergedFile>& out);
  Status unlink(MergedNode parent, std::string_view name);
  Status rmdir(MergedNode parent, std::string_view name);
  /// flags: 0 or RENAME_NOREPLACE (RENAME_EXCHANGE/WHITEOUT: EINVAL).
  Status rename(MergedNode parent, std::string_view name, MergedNode newparent,
                std::string_view newname, unsigned flags);

  /// Opens for reading (lower data, verified as by Filesystem) or for writing (data copy-up).
  Result<std::unique_ptr<MergedFile>> open(MergedNode n, int flags);
  Result<std::span<const std::byte>> read(const MergedFile& f, std::uint64_t off, std::size_t len,
                                          ReadBuffer& buf) const;
  Result<std::size_t> write(const MergedFile& f, std::span<const std::byte> data,
                            std::uint64_t off) const;
  Result<struct statvfs> statfs() const;

  /// MergedFs path of a node ("" for the root), for tests and messages.
  Result<std::string> path_of(MergedNode n) const;

 private:
  struct UpperState;
  struct State;
  MergedFs(std::unique_ptr<Filesystem> lower, std::string upper, std::string work);
  std::string up(const std::string& p) const;
  Result<UpperState> upper_state(const std::string& p) const;
  Result<std::optional<struct stat>> lower_at(const std::string& p) const;
  Result<std::optional<struct stat>> lower_raw(const std::string& p) const;
  Result<State> state(const std::string& p) const;
  Result<struct stat> stat_of(const std::string& p, const State& s) const;
  Result<std::string> origin_of(const std::string& p) const;
  MergedNode node_for(const std::string& p);
  void forget_path(const std::string& p);
  void move_path(const std::string& from, const std::string& to);
  Result<std::string> child(MergedNode parent, std::string_view name) const;
  std::string temp_path();
  Status copy_up_parents(const std::string& p);
  Status copy_up(const std::string& p, bool data);
  Status copy_up_lower(const std::string& p, const struct stat& lst, bool data);
  Status copy_data_up(const std::string& p);
  Status prepare_new(const std::string& p);
  Result<MergedEntry> finish_new(const std::string& p, Caller c, bool is_dir);
  Result<std::vector<MergedDirent>> list_path(const std::string& p) const;

  std::unique_ptr<Filesystem> lower_;
  std::string upper_;
  std::string work_;
  std::mutex mu_;
  std::unordered_map<MergedNode, std::string> paths_;
  std::unordered_map<std::string, MergedNode> nodes_;
  MergedNode next_node_ = 2;
  std::uint64_t next_temp_ = 0;
};

}  // namespace cfs::vfs
