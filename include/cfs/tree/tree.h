// SPDX-License-Identifier: Apache-2.0
// The in-memory filesystem tree shared by every source (directory scan, dump parser, image
// reader) and sink (image writer, dump printer). It holds the input as the user gave it:
// overlay escaping, whiteout conversion, the root stubs and `.`/`..` are the writer's job and
// never appear here; the reader undoes them when it loads an image.
//
// Nodes live in one arena (Tree::nodes) and refer to each other by NodeId, which keeps a
// 160k-entry tree in a few tens of MB and makes deep copies trivial.
// Thread-safety: none; a Tree is built by one thread. Distinct nodes may be updated from
// different threads (e.g. the parallel digest pass) as long as the arena is not resized.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/verity/digest.h"

namespace cfs {

using NodeId = std::uint32_t;
inline constexpr NodeId kNoNode = 0xFFFFFFFF;

struct Xattr {
  std::string key;
  std::string value;
  friend bool operator==(const Xattr&, const Xattr&) = default;
};

/// A directory entry. `hardlink` is true when this name is an additional link to `node`
/// (dump `@` lines, scans with --hardlinks, an image nid seen twice); the first, non-hardlink
/// entry owns the node. The writer serializes a node only through its owning entry.
struct Entry {
  std::string name;
  NodeId node = kNoNode;
  bool hardlink = false;
};

struct Node {
  /// st_mode with type bits; dumps may carry bits above 16 (dropped on disk).
  std::uint32_t mode = 0;
  std::uint32_t nlink = 1;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t rdev = 0;  ///< glibc dev_t encoding (makedev)
  std::int64_t mtime_sec = 0;
  std::uint32_t mtime_nsec = 0;
  NodeId parent = kNoNode;  ///< the owning entry's directory; root: itself
  // (parent sits here, not last, to fill mtime_nsec's padding: 248 -> 240 bytes per node)
  std::uint64_t size = 0;  ///< regular files: content size; others: as given (writer recomputes)
  /// Regular file: backing object path relative to the store (normally the object name of
  /// the digest, cfs/tree/object_name.h), empty if none. Symlink: the target.
  std::string payload;
  std::optional<std::string> content;    ///< inline data of a regular file
  std::optional<verity::Digest> digest;  ///< fs-verity digest of the content (SHA-256/512)
  std::vector<Xattr> xattrs;             ///< insertion order; a repeated key replaces the value
  std::vector<Entry> children;           ///< directories only; kept sorted by name (byte order)

  std::uint32_t type() const noexcept { return mode & S_IFMT; }
  bool is_dir() const noexcept { return type() == S_IFDIR; }
  bool is_reg() const noexcept { return type() == S_IFREG; }
  bool is_symlink() const noexcept { return type() == S_IFLNK; }

  /// Sets an xattr, replacing an existing value of the same key.
  void set_xattr(std::string key, std::string value);
  const Xattr* find_xattr(std::string_view key) const noexcept;
};

class Tree {
 public:
  /// Creates a tree with an empty root directory (mode S_IFDIR|0755, nlink 2).
  Tree();

  NodeId root() const noexcept { return 0; }
  Node& node(NodeId id) { return nodes_[id]; }
  const Node& node(NodeId id) const { return nodes_[id]; }
  std::size_t size() const noexcept { return nodes_.size(); }

  /// Appends a node to the arena (not linked anywhere) and returns its id.
  NodeId add_node(Node n);

  /// Inserts a child entry into dir keeping children sorted; returns false (and does nothing)
  /// if the name exists. For a non-hardlink entry the child's parent is set to dir.
  bool link(NodeId dir, std::string name, NodeId child, bool hardlink = false);

  /// Child lookup by exact name (binary search); kNoNode if absent.
  const Entry* find_child(NodeId dir, std::string_view name) const;

  /// Resolves an absolute path ("/a/b"); "/" is the root. nullopt if absent.
  std::optional<NodeId> lookup(std::string_view path) const;

  /// Reserves arena capacity (avoids reallocations while sources fill the tree).
  void reserve(std::size_t n) { nodes_.reserve(n); }

 private:
  std::vector<Node> nodes_;
};

/// Byte-wise name order used everywhere (strcmp on raw bytes).
inline bool name_less(std::string_view a, std::string_view b) noexcept { return a < b; }

}  // namespace cfs
