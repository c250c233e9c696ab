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

}  // namespace

Status check_image(const Image& img) {
  const auto bytes = img.bytes();
  const std::uint64_t slots =
      (bytes.size() - std::uint64_t{img.info().meta_blkaddr} * kBlockSize) / kSlotSize;
  std::vector<std::uint8_t> visited(static_cast<std::size_t>(slots), 0);
  std::vector<Extent> extents;
  extents.push_back({0, kSuperOffset + sizeof(SuperBlock), ExtentKind::kHeader, 0});
  std::vector<std::uint32_t> shared_ids;

  struct Pending {
    std::uint64_t nid;
    std::uint64_t parent;
  };
  std::vector<Pending> todo{{img.root_nid(), img.root_nid()}};
  visited[img.root_nid()] = 1;
  const std::uint64_t xattr_base = std::uint64_t{img.info().xattr_blkaddr} * kBlockSize;

  while (!todo.empty()) {
    Pending p = todo.back();
    todo.pop_back();
    CFS_ASSIGN(InodeInfo ino, img.inode(p.nid));
    extents.push_back(
        {ino.inode_offset, ino.inode_offset + ino.meta_size(), ExtentKind::kInode, ino.nid});
    if (ino.data_blocks > 0)
      extents.push_back({ino.data_blkaddr * kBlockSize,
                         (ino.data_blkaddr + ino.data_blocks) * kBlockSize, ExtentKind::kData,
                         ino.nid});
    CFS_ASSIGN(auto xattrs, img.xattrs(ino));
    if (ino.xattr_size > 0) {
      std::uint64_t start =
          ino.inode_offset + (ino.extended ? sizeof(InodeExtended) : sizeof(InodeCompact));
      auto hdr = load<XattrIbodyHeader>(bytes, start);
      for (unsigned i = 0; i < hdr.h_shared_count; ++i)
        shared_ids.push_back(load<le32>(bytes, start + sizeof(XattrIbodyHeader) + i * 4));
    }
    if (ino.is_symlink()) CFS_TRY(img.readlink(ino.nid));
    if (ino.is_reg() && ino.layout != DataLayout::kChunkBased && ino.size > 0)
      CFS_TRY(img.read(ino, 0, static_cast<std::size_t>(ino.size)));
    if (!ino.is_dir()) continue;

    bool dot = false, dotdot = false;
    Status inner;
    CFS_TRY(detail::walk_dir(bytes, ino, 0, [&](const DirentView& e) {
      auto bad = [&](std::string msg) {
        inner = corrupt(fmt::format("nid {}: entry {:?}: {}", ino.nid, std::string(e.name), msg));
        return false;
      };
      if (e.name == ".") {
        dot = true;
        if (e.nid != ino.nid) return bad(fmt::format("points to nid {}", e.nid));
        if (e.file_type != FileType::kDirectory) return bad("not a directory");
        return true;
      }
      if (e.name == "..") {
        dotdot = true;
        if (e.nid != p.parent)
          return bad(fmt::format("points to nid {}, parent is {}", e.nid, p.parent));
        if (e.file_type != FileType::kDirectory) return bad("not a directory");
        return true;
      }
      if (e.nid >= slots) return bad(fmt::format("nid {} beyond the image", e.nid));
      auto child = img.inode(e.nid);
      if (!child) {
        inner = fail(std::move(child).error());
        return false;
      }
      const std::uint32_t want = overlay::mode_type(e.file_type);
      if (want != child->type())
        return bad(fmt::format("file_type {} does not match i_mode {:o}",
                               static_cast<int>(e.file_type), child->mode));
      if (visited[e.nid]) {
        if (child->is_dir()) return bad("directory reached twice (loop or hardlink)");
        return true;  // hardlink
      }
      visited[e.nid] = 1;
      todo.push_back({e.nid, ino.nid});
      return true;
    }));
    CFS_TRY(inner);
    if (!dot || !dotdot)
      return corrupt(fmt::format("nid {}: directory without \"{}\"", ino.nid, dot ? ".." : "."));
  }

  std::sort(shared_ids.begin(), shared_ids.end());
  shared_ids.erase(std::unique(shared_ids.begin(), shared_ids.end()), shared_ids.end());
  for (std::uint32_t id : shared_ids) {
    std::uint64_t off = xattr_base + std::uint64_t{id} * 4;
    auto e = load<XattrEntry>(bytes, off);  // in bounds: xattrs() decoded it
    std::uint64_t len = sizeof(XattrEntry) + e.e_name_len + std::uint64_t{e.e_value_size};
    extents.push_back({off, off + len, ExtentKind::kSharedXattr, id});
  }

  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.start < b.start; });
  std::size_t reach = 0;  // the extent reaching furthest so far
  for (std::size_t i = 1; i < extents.size(); ++i) {
    if (extents[i].start < extents[reach].end)
      return corrupt(fmt::format("{} overlaps {}", describe(extents[i]), describe(extents[reach])));
    if (extents[i].end > extents[reach].end) reach = i;
  }
  return {};
}

}  // namespace cfs::erofs
