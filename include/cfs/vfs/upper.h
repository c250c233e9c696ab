// SPDX-License-Identifier: Apache-2.0
// A writable upper directory over the read-only image filesystem, with the semantics and the
// on-disk format of kernel overlayfs (metacopy=on, redirect_dir=on, verity=…), so that the
// upper directory could later be used by a kernel overlay mount. Plain functions over node ids
// (NodeTable); the upper and work directories are held open and reached only by *at() calls
// relative to them. The FUSE glue only translates requests; everything is testable without
// /dev/fuse. The user-visible rules are in docs/fuse.md ("The writable upper layer").
//
// Merge rules (the kernel's):
//  * an upper entry hides the lower one; a chardev 0/0 in upper (whiteout) hides the lower
//    name; an upper directory with `trusted.overlay.opaque=y` hides every lower child; an upper
//    directory without it is merged with the lower directory of the same path;
//  * readdir lists upper entries first (sorted), then lower ones not hidden;
//  * st_ino: the lower nid for entries that have a lower origin (copied-up files keep it), else
//    the upper inode number with bit 63 set (like xino: no clash with nids).
// Copy-up (parents first, with their metadata): a metadata change of a lower regular file
// makes a metacopy copy-up: an empty upper file of the right size with
// `trusted.overlay.metacopy` = the encoded digest (overlay::Metacopy) when the lower data was
// verified against a digest (empty value otherwise; under verity=require a metacopy file without a
// digest is refused with EIO, and a file stored in the image itself, having no digest to record, is
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
#include <utility>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/vfs/filesystem.h"
#include "cfs/vfs/node_table.h"

namespace cfs::vfs {

/// A name given to the kernel: its node (one lookup counted, see forget()) and attributes.
struct MergedEntry {
  MergedNode node = 0;
  struct stat st {};
};

/// One entry of a directory snapshot: what readdir reports (no full attributes, so that a
/// snapshot of a large directory stays small).
struct MergedDirent {
  std::string name;
  std::uint64_t ino = 0;
  mode_t type = 0;  ///< S_IFMT bits
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
  /// Gives back `nlookup` lookups of a node (FUSE FORGET): every MergedEntry returned (lookup,
  /// mknod, mkdir, symlink, link, create) counted one. A node nothing holds is freed.
  void forget(MergedNode n, std::uint64_t nlookup);
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

  /// Merged path of a node ("" for the root), for tests and messages.
  Result<std::string> path_of(MergedNode n) const;
  /// Nodes held (the root included), for tests and statistics.
  std::size_t node_count() const;

 private:
  struct UpperState;
  struct State;
  /// Visible xattrs of a lower entry in their stored (escaped) form, plus its metacopy value.
  struct LowerXattrs {
    std::vector<std::pair<std::string, std::string>> visible;
    std::optional<std::string> metacopy;
  };
  using XattrList = std::vector<std::pair<std::string, std::string>>;

  MergedFs(std::unique_ptr<Filesystem> lower, UniqueFd upper, UniqueFd work);
  Result<std::optional<std::string>> upper_xattr(const std::string& p, std::string_view key) const;
  Result<UpperState> upper_state(const std::string& p) const;
  Result<std::optional<struct stat>> lower_at(const std::string& p) const;
  Result<std::optional<struct stat>> lower_raw(const std::string& p) const;
  Result<State> state(const std::string& p) const;
  Result<struct stat> stat_of(const std::string& p, const State& s) const;
  Result<std::string> origin_of(const std::string& p) const;
  Result<std::string> child(MergedNode parent, std::string_view name) const;
  Result<MergedEntry> entry(MergedNode parent, std::string_view name, const std::string& p);
  std::string temp_name();
  Status copy_up_parents(const std::string& p);
  Status copy_up(const std::string& p, bool data);
  Status copy_up_lower(const std::string& p, const struct stat& lst, bool data);
  Result<LowerXattrs> lower_xattrs(Ino nid) const;
  Status make_temp(const std::string& tmp, const std::string& p, const struct stat& lst, bool data,
                   LowerXattrs& x);
  Status make_temp_file(const std::string& tmp, const std::string& p, const struct stat& lst,
                        bool data, LowerXattrs& x);
  Result<std::optional<std::string>> metacopy_value(bool data,
                                                    const std::optional<std::string>& lower_value,
                                                    const OpenFile& f) const;
  Status publish(const std::string& tmp, const std::string& p, const struct stat& meta,
                 const XattrList& xattrs);
  void discard(const std::string& tmp, mode_t mode);
  Status copy_data_up(const std::string& p);
  Status check_upper_digest(const std::string& p, const std::string& upper_value, Ino lower) const;
  Status make_whiteout(const std::string& p);
  Status clear_whiteouts(const std::string& dir);
  Status prepare_new(const std::string& p);
  Result<MergedEntry> finish_new(MergedNode parent, std::string_view name, const std::string& p,
                                 Caller c, bool is_dir);
  Result<std::vector<MergedDirent>> list_path(const std::string& p) const;

  std::unique_ptr<Filesystem> lower_;
  UniqueFd upper_;  ///< O_PATH of the upper directory: every upper access is *at() on it
  UniqueFd work_;   ///< O_PATH of WORKDIR/cfs-work: temp entries for copy-up
  mutable std::mutex mu_;
  NodeTable nodes_;
  std::uint64_t next_temp_ = 0;
};

}  // namespace cfs::vfs
