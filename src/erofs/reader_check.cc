// SPDX-License-Identifier: Apache-2.0
// check_image(): the structural half of `cfs fsck IMAGE`. Beyond what the lazy accessors
// validate, it walks every reachable inode once and checks global properties: "." and ".."
// point where they should, dirent types match inodes, and no two structures (inode bodies
// with xattrs and inline tails, data blocks, shared xattr entries) overlap.
#include <fmt/core.h>

#include <algorithm>

#include "cfs/erofs/reader.h"
#include "erofs/reader_internal.h"

namespace cfs::erofs {

using detail::corrupt;
using detail::load;

namespace {

enum class ExtentKind : std::uint8_t { kHeader, kInode, kData, kSharedXattr };

// Named only when reported: a /usr image has ~300k extents.
struct Extent {
  std::uint64_t start;
  std::uint64_t end;
  ExtentKind kind;
  std::uint64_t id;  ///< nid, or shared xattr id
};

std::string describe(const Extent& e) {
  switch (e.kind) {
    case ExtentKind::kHeader:
      return "header and superblock";
    case ExtentKind::kInode:
      return fmt::format("nid {} inode", e.id);
    case ExtentKind::kData:
      return fmt::format("nid {} data blocks", e.id);
    case ExtentKind::kSharedXattr:
      return fmt::format("shared xattr {}", e.id);
  }
  return "?";
}

// One walk over the reachable inodes (explicit stack), collecting every extent for the
// overlap check at the end.
class Checker {
 public:
  explicit Checker(const Image& img)
      : img_(img),
        bytes_(img.bytes()),
        slots_((bytes_.size() - std::uint64_t{img.info().meta_blkaddr} * kBlockSize) / kSlotSize),
        visited_(static_cast<std::size_t>(slots_), 0) {}

  Status run() {
    extents_.push_back({0, kSuperOffset + sizeof(SuperBlock), ExtentKind::kHeader, 0});
    todo_.push_back({img_.root_nid(), img_.root_nid()});
    visited_[img_.root_nid()] = 1;
    while (!todo_.empty()) {
      Pending p = todo_.back();
      todo_.pop_back();
      CFS_TRY(check_inode(p));
    }
    add_shared_xattrs();
    return check_overlaps();
  }

 private:
  struct Pending {
    std::uint64_t nid;
    std::uint64_t parent;
  };

  // The inode's own extents and data, then its entries if it is a directory.
  Status check_inode(const Pending& p) {
    CFS_ASSIGN(InodeInfo ino, img_.inode(p.nid));
    extents_.push_back(
        {ino.inode_offset, ino.inode_offset + ino.meta_size(), ExtentKind::kInode, ino.nid});
    if (ino.data_blocks > 0)
      extents_.push_back({ino.data_blkaddr * kBlockSize,
                          (ino.data_blkaddr + ino.data_blocks) * kBlockSize, ExtentKind::kData,
                          ino.nid});
    CFS_TRY(img_.xattrs(ino));
    if (ino.xattr_size > 0) {
      std::uint64_t start =
          ino.inode_offset + (ino.extended ? sizeof(InodeExtended) : sizeof(InodeCompact));
      auto hdr = load<XattrIbodyHeader>(bytes_, start);
      for (unsigned i = 0; i < hdr.h_shared_count; ++i)
        shared_ids_.push_back(load<le32>(bytes_, start + sizeof(XattrIbodyHeader) + i * 4));
    }
    if (ino.is_symlink()) CFS_TRY(img_.readlink(ino.nid));
    if (ino.is_reg() && ino.layout != DataLayout::kChunkBased && ino.size > 0)
      CFS_TRY(img_.read(ino, 0, static_cast<std::size_t>(ino.size)));
    if (!ino.is_dir()) return {};

    bool dot = false, dotdot = false;
    Status inner;
    CFS_TRY(detail::walk_dir(bytes_, ino, 0, [&](const DirentView& e) {
      inner = check_dirent(ino, p.parent, e, dot, dotdot);
      return inner.has_value();
    }));
    CFS_TRY(inner);
    if (!dot || !dotdot)
      return corrupt(fmt::format("nid {}: directory without \"{}\"", ino.nid, dot ? ".." : "."));
    return {};
  }

  // "." and ".." point at the directory and its parent; any other entry names an inode of its
  // file_type, reached for the first time unless it is a non-directory (a hardlink).
  Status check_dirent(const InodeInfo& dir, std::uint64_t parent, const DirentView& e, bool& dot,
                      bool& dotdot) {
    auto bad = [&](const std::string& msg) -> Status {
      return corrupt(fmt::format("nid {}: entry {:?}: {}", dir.nid, std::string(e.name), msg));
    };
    if (e.name == "." || e.name == "..") {
      const bool is_dot = e.name == ".";
      (is_dot ? dot : dotdot) = true;
      const std::uint64_t want = is_dot ? dir.nid : parent;
      if (e.nid != want)
        return bad(is_dot ? fmt::format("points to nid {}", e.nid)
                          : fmt::format("points to nid {}, parent is {}", e.nid, parent));
      if (e.file_type != FileType::kDirectory) return bad("not a directory");
      return {};
    }
    if (e.nid >= slots_) return bad(fmt::format("nid {} beyond the image", e.nid));
    CFS_ASSIGN(InodeInfo child, img_.inode(e.nid));
    if (overlay::mode_type(e.file_type) != child.type())
      return bad(fmt::format("file_type {} does not match i_mode {:o}",
                             static_cast<int>(e.file_type), child.mode));
    if (visited_[e.nid]) {
      if (child.is_dir()) return bad("directory reached twice (loop or hardlink)");
      return {};  // hardlink
    }
    visited_[e.nid] = 1;
    todo_.push_back({e.nid, dir.nid});
    return {};
  }

  void add_shared_xattrs() {
    const std::uint64_t base = std::uint64_t{img_.info().xattr_blkaddr} * kBlockSize;
    std::sort(shared_ids_.begin(), shared_ids_.end());
    shared_ids_.erase(std::unique(shared_ids_.begin(), shared_ids_.end()), shared_ids_.end());
    for (std::uint32_t id : shared_ids_) {
      std::uint64_t off = base + std::uint64_t{id} * 4;
      auto e = load<XattrEntry>(bytes_, off);  // in bounds: xattrs() decoded it
      std::uint64_t len = sizeof(XattrEntry) + e.e_name_len + std::uint64_t{e.e_value_size};
      extents_.push_back({off, off + len, ExtentKind::kSharedXattr, id});
    }
  }

  Status check_overlaps() {
    std::sort(extents_.begin(), extents_.end(),
              [](const Extent& a, const Extent& b) { return a.start < b.start; });
    std::size_t reach = 0;  // the extent reaching furthest so far
    for (std::size_t i = 1; i < extents_.size(); ++i) {
      if (extents_[i].start < extents_[reach].end)
        return corrupt(
            fmt::format("{} overlaps {}", describe(extents_[i]), describe(extents_[reach])));
      if (extents_[i].end > extents_[reach].end) reach = i;
    }
    return {};
  }

  const Image& img_;
  const std::span<const std::byte> bytes_;
  const std::uint64_t slots_;
  std::vector<std::uint8_t> visited_;
  std::vector<Extent> extents_;
  std::vector<std::uint32_t> shared_ids_;
  std::vector<Pending> todo_;
};

}  // namespace

Status check_image(const Image& img) { return Checker(img).run(); }

}  // namespace cfs::erofs
