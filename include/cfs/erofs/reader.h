// SPDX-License-Identifier: Apache-2.0
// Bounds-checked reader of composefs images (the EROFS subset of docs/format.md). Two faces:
//  * random access by nid (inode, readdir, lookup, xattrs, data) without loading the whole
//    tree: what the FUSE/VFS layer builds on;
//  * load_tree(): the whole image as a cfs::Tree, with the writer's transformations undone
//    (what composefs-info, composefs-dump round trips and fsck use).
// Every offset, size and count taken from the image is checked against the image before it is
// used; anything inconsistent is Errc::kCorruptImage with a context naming the nid and field.
// Nothing here can crash or loop forever on hostile input (tests/fuzz/image_reader_fuzzer.cc).
//
// Thread-safety: an Image is immutable after open; any number of threads may call its const
// methods concurrently. Copies share the underlying bytes (cheap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/erofs/format.h"
#include "cfs/tree/tree.h"
#include "cfs/util/result.h"

namespace cfs::erofs {

/// One inode as stored, decoded and validated (layout fields included so callers can reason
/// about where the bytes are).
struct InodeInfo {
  std::uint64_t nid = 0;
  std::uint32_t mode = 0;  ///< i_mode (16 bits on disk), type bits included
  std::uint32_t nlink = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;      ///< i_size (directories: EROFS dirent bytes)
  std::uint32_t rdev = 0;      ///< i_u of chr/blk (glibc dev_t encoding, truncated to 32 bits)
  std::int64_t mtime_sec = 0;  ///< compact inodes: the superblock build_time
  std::uint32_t mtime_nsec = 0;
  std::uint32_t ino = 0;  ///< i_ino (the writer's BFS index; not unique across hardlinks)

  bool extended = false;  ///< 64-byte inode (else 32-byte compact)
  DataLayout layout = DataLayout::kFlatPlain;
  std::uint32_t raw_u = 0;         ///< raw i_u (blkaddr, rdev or chunk format)
  std::uint64_t inode_offset = 0;  ///< byte offset of the inode in the image
  std::uint32_t xattr_size = 0;    ///< bytes of the xattr body after the inode (0 if none)
  std::uint64_t tail_offset = 0;   ///< byte offset of inline tail data / chunk table
  std::uint64_t tail_size = 0;     ///< inline tail bytes (FLAT_INLINE) or chunk table bytes
  std::uint64_t data_blkaddr = 0;  ///< first out-of-line block (flat layouts)
  std::uint64_t data_blocks = 0;   ///< number of out-of-line blocks (flat layouts)

  std::uint32_t type() const noexcept { return mode & S_IFMT; }
  bool is_dir() const noexcept { return type() == S_IFDIR; }
  bool is_reg() const noexcept { return type() == S_IFREG; }
  bool is_symlink() const noexcept { return type() == S_IFLNK; }
  /// Bytes of inode + xattr body + inline tail: the metadata span starting at inode_offset.
  std::uint64_t meta_size() const noexcept {
    return (extended ? 64u : 32u) + xattr_size +
           (layout == DataLayout::kFlatInline ? tail_size : 0);
  }
};

/// A directory entry as stored (including "." and ".."). `name` points into the image and
/// lives as long as the Image (or a copy of it).
struct DirentView {
  std::string_view name;
  std::uint64_t nid = 0;
  FileType file_type = FileType::kUnknown;
  std::uint64_t next_offset = 0;  ///< readdir cookie of the entry after this one
};

struct DirEntry {
  std::string name;
  std::uint64_t nid = 0;
  FileType file_type = FileType::kUnknown;
  friend bool operator==(const DirEntry&, const DirEntry&) = default;
};

/// An xattr with its full on-disk name (prefix expanded, `trusted.overlay.overlay.*` still
/// escaped) and value.
struct RawXattr {
  std::string name;
  std::string value;
  bool shared = false;  ///< stored in the shared table (vs. inline in the inode)
  friend bool operator==(const RawXattr&, const RawXattr&) = default;
};

/// Superblock and header facts.
struct ImageInfo {
  std::uint32_t format_version = 0;  ///< composefs_version (0 or 1)
  std::uint32_t header_flags = 0;    ///< bit 0 = HAS_ACL
  std::uint64_t root_nid = 0;
  std::uint64_t inos = 0;
  std::int64_t build_time = 0;
  std::uint32_t build_time_nsec = 0;
  std::uint32_t blocks = 0;
  std::uint32_t meta_blkaddr = 0;
  std::uint32_t xattr_blkaddr = 0;
  std::uint64_t size = 0;  ///< file size in bytes
};

class Image {
 public:
  /// mmaps the file. Errors: errno errors naming the path; kCorruptImage when the header or
  /// superblock is invalid (bad magic, unsupported block size or features, truncated file,
  /// root nid outside the image).
  static Result<Image> open(const std::string& path);
  /// mmaps an open image file (e.g. the checked copy of verity::open_checked); `what` names it.
  static Result<Image> open_fd(int fd, const std::string& what);
  /// Same over an in-memory copy (tests, fuzzers).
  static Result<Image> from_bytes(std::vector<std::byte> bytes);
  static Result<Image> from_bytes(std::span<const std::byte> bytes);

  const ImageInfo& info() const noexcept { return info_; }
  std::uint64_t root_nid() const noexcept { return info_.root_nid; }
  std::uint32_t format_version() const noexcept { return info_.format_version; }
  bool has_acl() const noexcept { return (info_.header_flags & kComposefsFlagHasAcl) != 0; }
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

  /// Decodes and validates inode `nid` (type, layout, xattr body and inline tail within the
  /// image and not crossing a block, out-of-line blocks within the image).
  Result<InodeInfo> inode(std::uint64_t nid) const;

  /// Iterates the entries of directory `dir` starting at readdir cookie `offset` (0 = first;
  /// then DirentView::next_offset of the last entry seen). `fn` returns false to stop early.
  /// Entries come in on-disk order ("." and ".." included, sorted by name); each block is
  /// validated (nameoff bounds and order, name length 1..255, strictly increasing names).
  /// Errors: kCorruptImage; ENOTDIR (errno) if `dir` is not a directory.
  Status iterate_dir(const InodeInfo& dir, std::uint64_t offset,
                     const std::function<bool(const DirentView&)>& fn) const;
  Status iterate_dir(std::uint64_t dir_nid, std::uint64_t offset,
                     const std::function<bool(const DirentView&)>& fn) const;

  /// All entries of a directory, "." and ".." included.
  Result<std::vector<DirEntry>> readdir(std::uint64_t dir_nid) const;

  /// Looks up `name` in directory `dir_nid` by binary search over blocks and then within the
  /// block (as the kernel's erofs_namei); nullopt if absent.
  Result<std::optional<std::uint64_t>> lookup(std::uint64_t dir_nid, std::string_view name) const;

  /// Resolves an absolute or relative path from the root ("/" or "" = root). Components "."
  /// and ".." are looked up as stored. Symlinks are not followed. ENOENT if absent.
  Result<std::uint64_t> resolve(std::string_view path) const;

  /// The inode's xattrs with raw on-disk names, in the order upstream's reader reports them:
  /// inline entries first (on-disk order), then the shared ones (order of the shared ids).
  Result<std::vector<RawXattr>> xattrs(std::uint64_t nid) const;
  Result<std::vector<RawXattr>> xattrs(const InodeInfo& ino) const;
  /// The digest of the inode's trusted.overlay.metacopy (the one backing_from_xattrs(xattrs(ino))
  /// gives), decoded in place: nothing allocated per inode, for walks of every file (a lazy
  /// mount's directory map, session 15: ~2.5 ms of its 4 ms of CPU built xattrs()'s strings).
  /// nullopt: none, or one without a digest. Errors: those of xattrs().
  Result<std::optional<verity::Digest>> metacopy_digest(const InodeInfo& ino) const;

  /// Reads up to `len` bytes at `off` of the data stored in the image for this inode: inline
  /// content of regular files, symlink targets, directory blocks; chunk-based files read as
  /// their chunks (holes are zeros). Short only at EOF.
  Result<std::string> read(const InodeInfo& ino, std::uint64_t off, std::size_t len) const;
  Result<std::string> read(std::uint64_t nid, std::uint64_t off, std::size_t len) const;

  /// Symlink target (EINVAL if not a symlink).
  Result<std::string> readlink(std::uint64_t nid) const;

  /// For file-backed images: unmaps the pages touched so far from this process (they stay in
  /// the page cache and fault back in on the next access), so a full walk of a large image
  /// does not keep the whole file in RSS. Contents never change; safe with concurrent readers.
  /// No-op for in-memory images.
  void drop_resident_pages() const noexcept;

 private:
  struct Owner;
  Image() = default;
  static Result<Image> init(std::shared_ptr<const Owner> owner, std::span<const std::byte> b);

  std::shared_ptr<const Owner> owner_;
  std::span<const std::byte> bytes_;
  ImageInfo info_;
};

/// Backing-object reference of a regular file, as a composefs reader takes it from the overlay
/// xattrs: the redirect without its leading "/" (overlay::redirect_payload) and the digest of
/// the metacopy value (overlay::Metacopy::read_digest).
struct Backing {
  std::string payload;
  std::optional<verity::Digest> digest;
};
Backing backing_from_xattrs(const std::vector<RawXattr>& xattrs);

struct LoadOptions {
  /// Only these top-level names (children of the root) are loaded (composefs-info --filter).
  /// Empty = everything.
  std::vector<std::string> filters;
};

/// Loads the whole image into a Tree, undoing the writer: `trusted.overlay.overlay.X` becomes
/// `trusted.overlay.X`; other `trusted.overlay.*` (opaque=y, metacopy, redirect),
/// `trusted.overlay.overlay.whiteouts`, `user.overlay.whiteout[s]` are dropped; regular files
/// with `trusted.overlay.overlay.whiteout` become chardev 0/0 of size 0; chardevs 0/0 (the root
/// stubs) are skipped; redirect/metacopy become payload/digest; inline data becomes content;
/// directory sizes stay the EROFS size; a non-directory nid met a second time (depth-first,
/// sorted) becomes a hardlink entry to the first. Node xattrs keep the reader order (inline,
/// then shared). Errors: kCorruptImage (directory loops, dirent type mismatches, ...).
Result<Tree> load_tree(const Image& image, const LoadOptions& opts = {});

/// Full structural check (what `cfs fsck IMAGE` runs before looking at objects): walks every
/// reachable inode, validates "." and "..", dirent types, xattrs, data extents, and that no two
/// inodes' metadata or data blocks overlap. Returns the first problem found.
Status check_image(const Image& image);

}  // namespace cfs::erofs
