// SPDX-License-Identifier: Apache-2.0
// load_tree(): the whole image as a cfs::Tree, undoing what the writer added (format §2.4,
// §4.9, §4.10). The walk is depth-first in name order with an explicit stack, so the first
// path met for a nid owns the node (later ones become hardlinks, as upstream's dump prints
// them) and deep trees cannot overflow the C++ stack. There is no depth limit: the writer (like
// composefs 1.0.8's) builds trees of any depth and both mounts serve them, so the reader must
// take every image the writer makes (docs/design.md); every consumer of a Tree walks it with
// an explicit stack.
#include <fmt/core.h>

#include <algorithm>

#include "cfs/erofs/reader.h"
#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "erofs/reader_internal.h"

namespace cfs::erofs {

using detail::corrupt;

namespace {

constexpr std::uint64_t kDropPagesEvery = 16384;

// Builds the user-visible node of inode `ino` (xattrs translated, payload/content/digest).
Result<Node> make_node(const Image& img, const InodeInfo& ino) {
  Node n;
  n.mode = ino.mode;
  n.nlink = ino.nlink;
  n.uid = ino.uid;
  n.gid = ino.gid;
  n.mtime_sec = ino.mtime_sec;
  n.mtime_nsec = ino.mtime_nsec;
  n.size = ino.size;
  if (ino.type() == S_IFCHR || ino.type() == S_IFBLK) n.rdev = ino.rdev;

  CFS_ASSIGN(std::vector<RawXattr> raw, img.xattrs(ino));
  bool whiteout = false;
  n.xattrs.reserve(raw.size());
  for (auto& x : raw) {
    std::string_view name = x.name;
    if (name.starts_with(overlay::kPrefix)) {
      if (name == overlay::kRedirect) {
        n.payload.assign(overlay::redirect_payload(x.value));
      } else if (name == overlay::kMetacopy) {
        n.digest = overlay::Metacopy::read_digest(x.value);
      } else if (name == overlay::kEscapedWhiteout) {
        whiteout = true;
      } else if (name != overlay::kEscapedWhiteouts && name.starts_with(overlay::kEscapedPrefix)) {
        // One escaping level removed: the user's own trusted.overlay.* xattr.
        n.xattrs.push_back({*overlay::visible_name(name), std::move(x.value)});
      }
      continue;  // other trusted.overlay.* (opaque=y on the root) are the writer's
    }
    if (name == overlay::kUserWhiteout || name == overlay::kUserWhiteouts) continue;
    n.xattrs.push_back({std::move(x.name), std::move(x.value)});
  }

  if (ino.is_reg()) {
    if (whiteout) {
      n.mode = S_IFCHR | (ino.mode & ~std::uint32_t{S_IFMT});
      n.size = 0;
      n.rdev = 0;
      n.payload.clear();
      n.digest.reset();
    } else if (ino.layout != DataLayout::kChunkBased && ino.size > 0) {
      CFS_ASSIGN(n.content, img.read(ino, 0, static_cast<std::size_t>(ino.size)));
    }
  } else if (ino.is_symlink()) {
    CFS_ASSIGN(n.payload, img.readlink(ino.nid));
  }
  return n;
}

struct Frame {
  NodeId node;
  std::vector<DirentView> entries;
  std::size_t next = 0;
};

}  // namespace

Result<Tree> load_tree(const Image& img, const LoadOptions& opts) {
  Tree tree;
  const std::uint64_t root_nid = img.root_nid();
  CFS_ASSIGN(InodeInfo root, img.inode(root_nid));
  CFS_ASSIGN(Node root_node, make_node(img, root));
  root_node.parent = tree.root();
  tree.node(tree.root()) = std::move(root_node);

  // nid -> node for non-directories (hardlinks); directories are marked to catch loops.
  const std::uint64_t slots =
      (img.bytes().size() - std::uint64_t{img.info().meta_blkaddr} * kBlockSize) / kSlotSize;
  std::vector<NodeId> seen(static_cast<std::size_t>(slots), kNoNode);
  constexpr NodeId kDirMark = kNoNode - 1;
  seen[root_nid] = kDirMark;
  tree.reserve(std::min<std::uint64_t>(img.info().inos, slots));

  auto list = [&](const InodeInfo& dir) -> Result<std::vector<DirentView>> {
    std::vector<DirentView> v;
    v.reserve(static_cast<std::size_t>(dir.size / 24));
    CFS_TRY(detail::walk_dir(img.bytes(), dir, 0, [&](const DirentView& e) {
      if (e.name != "." && e.name != "..") v.push_back(e);
      return true;
    }));
    return v;
  };

  std::vector<Frame> stack;
  std::uint64_t loaded = 0;
  {
    CFS_ASSIGN(auto entries, list(root));
    if (!opts.filters.empty()) {
      std::erase_if(entries, [&](const DirentView& e) {
        return std::find(opts.filters.begin(), opts.filters.end(), e.name) == opts.filters.end();
      });
    }
    tree.node(tree.root()).children.reserve(entries.size());
    stack.push_back({tree.root(), std::move(entries), 0});
  }

  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next == f.entries.size()) {
      stack.pop_back();
      continue;
    }
    const DirentView e = f.entries[f.next++];
    const NodeId parent = f.node;
    if (e.nid >= slots)
      return corrupt(
          fmt::format("dirent {:?}: nid {} beyond the image", std::string(e.name), e.nid));
    NodeId& seen_id = seen[e.nid];
    if (seen_id == kDirMark)
      return corrupt(fmt::format("nid {} ({:?}): directory reached twice (loop or hardlink)", e.nid,
                                 std::string(e.name)));
    if (seen_id != kNoNode) {
      if (!tree.link(parent, std::string(e.name), seen_id, true))
        return corrupt(fmt::format("nid {}: duplicate name {:?}", e.nid, std::string(e.name)));
      continue;
    }
    // Every few thousand inodes, let go of the image pages walked so far: peak RSS stays near
    // the size of the tree instead of tree + image (bench/info.sh).
    if (++loaded % kDropPagesEvery == 0) img.drop_resident_pages();
    CFS_ASSIGN(InodeInfo ino, img.inode(e.nid));
    if (overlay::mode_type(e.file_type) != ino.type())
      return corrupt(fmt::format("nid {} ({:?}): dirent file_type {} does not match i_mode {:o}",
                                 e.nid, std::string(e.name), static_cast<int>(e.file_type),
                                 ino.mode));
    if (ino.type() == S_IFCHR && ino.rdev == 0) continue;  // root stubs (and stray whiteouts)
    CFS_ASSIGN(Node node, make_node(img, ino));
    NodeId id = tree.add_node(std::move(node));
    if (!tree.link(parent, std::string(e.name), id))
      return corrupt(fmt::format("nid {}: duplicate name {:?}", e.nid, std::string(e.name)));
    if (ino.is_dir()) {
      seen_id = kDirMark;
      CFS_ASSIGN(auto entries, list(ino));
      tree.node(id).children.reserve(entries.size());
      stack.push_back({id, std::move(entries), 0});  // invalidates f
    } else {
      seen_id = id;
    }
  }
  return tree;
}

}  // namespace cfs::erofs
