// SPDX-License-Identifier: Apache-2.0
// The node ids a writable mount (MergedFs) hands to FUSE, as a tree of names: each node knows
// its parent and its name, so a rename moves one entry (its subtree follows) and a path is
// rebuilt by walking up. A node lives while the kernel holds lookups on it (every reply that
// gives the kernel an entry counts one; FORGET gives them back) or while a live node below it
// needs it for its path; then it is freed, so the table is as large as the kernel's inode cache
// for the mount, not as the set of names ever looked up.
// A name that is removed or replaced detaches its node: the kernel may still use the id until
// it forgets it, but path() reports ESTALE for it and for everything below it.
// Thread-safety: none (MergedFs serializes access).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cfs/util/result.h"

namespace cfs::vfs {

/// Node id of a name in the merged view (FUSE's node id). 1 is the root, as FUSE wants; ids are
/// never reused within a mount.
using MergedNode = std::uint64_t;
inline constexpr MergedNode kMergedRoot = 1;

class NodeTable {
 public:
  NodeTable();
  NodeTable(const NodeTable&) = delete;
  NodeTable& operator=(const NodeTable&) = delete;

  /// The node of `name` in directory `parent` (created when new), with one more lookup. The
  /// parent must be a live node (path() succeeded for it under the same lock).
  MergedNode lookup(MergedNode parent, std::string_view name);
  /// Gives back `n` lookups of a node (FUSE FORGET); frees it once nothing needs it. Unknown
  /// ids and the root are ignored.
  void forget(MergedNode node, std::uint64_t n);
  /// Path of a node from the root ("" for the root, "a/b" below it); ESTALE when the node is
  /// unknown or detached (it or an ancestor was removed or replaced).
  Result<std::string> path(MergedNode node) const;
  /// The name is gone: its node (if known) is detached.
  void remove(MergedNode parent, std::string_view name);
  /// parent/name is now newparent/newname: its node (if known) moves, with everything below
  /// it; a node known at the new name is detached first (it was replaced).
  void move(MergedNode parent, std::string_view name, MergedNode newparent,
            std::string_view newname);

  /// Number of nodes held, the root included (for tests and statistics).
  std::size_t size() const noexcept { return nodes_.size(); }

 private:
  struct Node {
    MergedNode parent = 0;  ///< 0 when detached (and for the root)
    std::string name;       ///< name in the parent (the key of `children_` points into it)
    std::uint64_t lookups = 0;
    std::uint64_t children = 0;  ///< entries of `children_` under this node
  };
  /// (parent, name) -> child. The name is a view of the child's Node::name: std::unordered_map
  /// never moves its elements, so the view stays valid until the child is erased or renamed,
  /// and both happen only after the key is removed.
  struct Key {
    MergedNode parent;
    std::string_view name;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept {
      return std::hash<std::string_view>()(k.name) ^ (std::hash<MergedNode>()(k.parent) * 31);
    }
  };

  /// Takes the key parent/name out and marks its node detached (no freeing); returns the node
  /// or 0 when none is known there.
  MergedNode unlink(MergedNode parent, std::string_view name);
  /// Frees `id` and then its ancestors as long as nothing holds them.
  void release(MergedNode id);

  std::unordered_map<MergedNode, Node> nodes_;
  std::unordered_map<Key, MergedNode, KeyHash> children_;
  MergedNode next_ = kMergedRoot + 1;
};

}  // namespace cfs::vfs
