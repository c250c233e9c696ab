// SPDX-License-Identifier: Apache-2.0
// The filesystem a composefs image and its object store present, as plain functions: what
// the kernel mount `mount -t erofs IMG E; mount -t overlay -o metacopy=on,redirect_dir=on,
// lowerdir=E::OBJS[,verity=…]` shows, plus fs-verity's guarantee done in userspace. The FUSE
// glue (src/fuse/) only translates these calls; everything is testable without /dev/fuse.
//
// Semantics (see docs/fuse.md for the full list and the differences):
//  * Inode numbers are EROFS nids, as on the kernel mount (st_ino of the root is the root nid,
//    hardlinks share a nid). `Ino` is that nid everywhere in this API.
//  * Attributes come from the image inode (metacopy files too: st_size is the image's);
//    st_blocks = ceil(size / 4096) * 8 and atime = ctime = mtime, as EROFS reports them.
//  * Chardev 0/0 entries (the 256 root stubs, whiteouts) are invisible to lookup and readdir.
//  * Xattrs: `trusted.overlay.overlay.X` shows as `trusted.overlay.X`, other `trusted.overlay.*`
//    are hidden; everything else is shown as stored.
//  * A metacopy value of 1..3 bytes, or a metacopy file without an absolute redirect, is EIO at
//    lookup/getattr (the kernel fails the lookup); the object is looked up at open, through
//    the ObjectProvider (Options::objects, else the basedirs): ENOENT if missing, EXDEV if the
//    redirect leaves the object directory, what the provider says otherwise.
//  * Verification: with verity on/require and a digest in the metacopy, open builds (or finds
//    cached) the object's Merkle tree and compares its fs-verity digest with the image's (EIO
//    on mismatch); every read verifies the blocks it returns against that tree (EIO on any
//    mismatch or short read), so no unverified byte is ever returned. An object of at most
//    Options::copy_max_bytes whose tree an open_file(…, copy) builds is hashed from a copy in
//    memory, which the open then hands to its caller, verified.
//
// Errors are cfs::Error values; errno_for() turns them into what the FUSE reply should carry
// (corrupt image pieces -> EIO, never a crash).
// Thread-safety: every const method may run concurrently; an OpenFile may be read from several
// threads at once.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/result.h"
#include "cfs/verity/merkle.h"
#include "cfs/vfs/object_provider.h"
#include "cfs/vfs/options.h"
#include "cfs/vfs/tree_cache.h"

namespace cfs::vfs {

using Ino = std::uint64_t;

/// One visible directory entry. `next_offset` is the readdir cookie that resumes after it
/// (stable: the image is immutable).
struct DirItem {
  std::string_view name;  ///< valid during the callback only
  Ino ino = 0;
  std::uint32_t type = 0;  ///< S_IF* of the dirent (0 if unknown)
  std::uint64_t next_offset = 0;
};

/// Per-thread scratch memory for reads (not zero-filled: only bytes a read produced are ever
/// exposed), page-aligned. Thread-safety: one per thread.
using ReadBuffer = AlignedBuffer;

/// An open regular file: image-backed (inline or block data) or object-backed.
class OpenFile {
 public:
  Ino ino() const noexcept { return ino_; }
  /// True when every byte this file can return is immutable or verified, so the kernel may
  /// keep it cached across opens (FOPEN_KEEP_CACHE).
  bool cacheable() const noexcept { return cacheable_; }
  /// Object-backed files whose reads are checked against a Merkle tree.
  bool verified() const noexcept { return tree_ != nullptr; }

 private:
  friend class Filesystem;
  Ino ino_ = 0;
  erofs::InodeInfo inode_;
  UniqueFd fd_;  ///< object; closed for image-backed files
  std::shared_ptr<const verity::MerkleTree> tree_;
  std::uint64_t data_size_ = 0;  ///< bytes readable: object size (verified: the tree's)
  bool cacheable_ = false;
  /// The object's digest, kept only when the provider wants reads reported
  /// (ObjectProvider::wants_reads).
  std::optional<verity::Digest> reported_;
};

class Filesystem {
 public:
  static Result<std::unique_ptr<Filesystem>> open(const std::string& image_path, Options opts);
  static Result<std::unique_ptr<Filesystem>> open(erofs::Image image, Options opts);
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  Ino root() const noexcept { return image_.root_nid(); }
  const erofs::Image& image() const noexcept { return image_; }
  const Options& options() const noexcept { return opts_; }

  /// Attributes of an inode (EIO for corrupt inodes and bad metacopy files).
  Result<struct stat> getattr(Ino ino) const;
  /// Looks a name up in a directory: ENOENT if absent or a whiteout, ENOTDIR if parent is not
  /// a directory. Returns the child's attributes (st_ino is the child's Ino).
  Result<struct stat> lookup(Ino parent, std::string_view name) const;
  /// Symlink target (EINVAL for other types).
  Result<std::string> readlink(Ino ino) const;
  /// Visible entries of a directory ("." and ".." included, as the kernel mount lists them)
  /// from cookie `offset` (0 = start) in image order; `fn` returns false to stop.
  Status readdir(Ino dir, std::uint64_t offset,
                 const std::function<bool(const DirItem&)>& fn) const;
  /// Visible xattr names in image order.
  Result<std::vector<std::string>> listxattr(Ino ino) const;
  /// Value of a visible xattr; ENODATA if absent or hidden.
  Result<std::string> getxattr(Ino ino, std::string_view name) const;

  /// Opens a regular file for reading (EISDIR for directories, EINVAL for other types, EROFS
  /// for write access). Object lookup and verification happen here (see the file comment).
  /// `copy` (when set): when this open builds the tree of an object of at most
  /// Options::copy_max_bytes, it is built from the object read whole into `copy`, which then
  /// holds the content, verified (copy->size bytes); otherwise copy->size is 0. The caller's
  /// buffer, so that it can be reused from open to open.
  Result<std::unique_ptr<OpenFile>> open_file(Ino ino, int flags,
                                              ContentCopy* copy = nullptr) const;
  /// Reads up to `len` bytes at `off`; returns a view into `buf` holding only bytes that were
  /// verified (or need no verification). Short only at EOF. EIO when a block fails to verify
  /// or the object shrank.
  Result<std::span<const std::byte>> read(const OpenFile& f, std::uint64_t off, std::size_t len,
                                          ReadBuffer& buf) const;

  /// A path of `ino` in the image ("/" for the root; the first name in depth-first order for a
  /// hardlinked file), found by walking the image: for messages only, not fast.
  Result<std::string> path_of(Ino ino) const;

 private:
  Filesystem(erofs::Image image, Options opts);
  Result<erofs::InodeInfo> checked_inode(Ino ino) const;
  Result<struct stat> stat_of(const erofs::InodeInfo& ino) const;
  Status check_overlay_inode(const erofs::InodeInfo& ino) const;
  Status open_object(const erofs::InodeInfo& ino, OpenFile& f, ContentCopy* copy) const;
  Status open_inline(const erofs::InodeInfo& ino, OpenFile& f) const;
  Status open_backing(const std::vector<erofs::RawXattr>& xs, const erofs::RawXattr& mc,
                      OpenFile& f, ContentCopy* copy) const;
  void report(Ino ino, const std::vector<erofs::RawXattr>& xattrs, const Error& e) const;
  void report(const OpenFile& f, const Error& e) const;

  erofs::Image image_;
  Options opts_;
  std::shared_ptr<const ObjectProvider> objects_;
  std::unique_ptr<TreeCache> trees_;
  bool report_reads_ = false;  ///< objects_->wants_reads(), asked once
};

/// errno a FUSE reply should carry for an error from this module: system errors keep their
/// errno, corrupt images and digest mismatches are EIO, missing objects ENOENT.
int errno_for(const Error& e) noexcept;

}  // namespace cfs::vfs
