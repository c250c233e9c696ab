// SPDX-License-Identifier: Apache-2.0
// The writer's intermediate form: every inode of the image in BFS order with the values that
// go on disk (after escaping, whiteout conversion, root stubs, `.`/`..`), then their placement.
// build_plan() does composefs' rewrite + compute_tree steps, place() the shared xattrs and the
// inode placement, emit() the bytes. Spec: docs/format.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/erofs/layout.h"
#include "cfs/erofs/writer.h"
#include "cfs/tree/tree.h"
#include "cfs/util/result.h"

namespace cfs::erofs::detail {

/// Bump allocator for the strings the writer synthesizes (escaped names, metacopy and
/// redirect values); string_views into it stay valid for the arena's lifetime.
class Arena {
 public:
  std::string_view concat(std::string_view a, std::string_view b);

 private:
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* cur_ = nullptr;
  std::size_t left_ = 0;
};

/// An xattr of the image. The value is `head` followed by `rest`, so the values the writer
/// derives from a node (metacopy: a constant header + the digest; redirect: "/" + the
/// payload) point into the tree instead of being copied (two copies per file were ~17 MB of a
/// /usr build's peak memory).
struct XattrRef {
  std::string_view key;
  std::string_view rest;
  std::string_view head;  ///< static or arena storage; empty for most values

  XattrRef() = default;
  XattrRef(std::string_view k, std::string_view r, std::string_view h = {})
      : key(k), rest(r), head(h) {}

  std::size_t value_size() const noexcept { return head.size() + rest.size(); }
  /// The value's bytes, in `scratch` only when there is a head.
  std::string_view value(std::string& scratch) const;
};

/// Same value bytes (however they are split between head and rest).
bool same_value(const XattrRef& a, const XattrRef& b) noexcept;
/// memcmp() of the values of two xattrs of the same value_size().
int compare_values(const XattrRef& a, const XattrRef& b) noexcept;

struct DirEntry {
  std::string_view name;
  std::uint32_t target = 0;  ///< BFS index of the (hardlink-resolved) inode
};

inline constexpr std::uint32_t kStub = 0xFFFFFFFF;  // PNode::src of a root whiteout stub

/// One inode of the image. Ordered without padding (120 bytes): one per entry, alive at the
/// writer's peak memory.
struct PNode {
  NodeId src = kStub;
  std::uint32_t parent = 0;  ///< BFS index; the root is its own parent
  /// Plan::dirents index of the entry naming this inode, for messages (the root: kStub).
  std::uint32_t name_dirent = kStub;
  std::string_view data;   ///< inline content or symlink target
  std::uint64_t size = 0;  ///< st_size as composefs keeps it (drives compact vs extended)
  std::int64_t mtime_sec = 0;
  std::uint64_t nid = 0;  ///< placement (place())

  std::uint32_t mode = 0;  ///< full input mode after whiteout conversion (i_mode = low 16 bits)
  std::uint32_t nlink = 1;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t rdev = 0;  ///< truncated to 32 bits, as composefs stores it
  std::uint32_t mtime_nsec = 0;

  std::uint32_t dirent_begin = 0, dirent_count = 0;  ///< into Plan::dirents
  std::uint32_t xattr_begin = 0, xattr_count = 0;    ///< into Plan::xattrs (sorted by key)

  // Placement (place()).
  std::uint32_t n_shared = 0;
  std::uint32_t xattr_size = 0;
  std::uint32_t n_blocks = 0;
  std::uint32_t tail = 0;
  std::uint32_t ipad = 0;  ///< zero bytes before the inode
  bool compact = false;
  bool external = false;  ///< chunk-based regular file

  std::uint32_t type() const noexcept { return mode & S_IFMT; }
};
static_assert(sizeof(PNode) <= 120);

struct Plan {
  std::vector<PNode> nodes;
  std::vector<DirEntry> dirents;
  std::vector<XattrRef> xattrs;
  std::vector<std::int64_t> xattr_shared;  ///< per xattr: offset in the shared table or -1
  std::vector<XattrRef> shared;            ///< the shared table, in table order
  Arena arena;

  std::uint32_t version = 0;
  bool has_acl = false;
  std::int64_t min_sec = 0;
  std::uint32_t min_nsec = 0;

  std::uint64_t shared_size = 0;
  std::uint64_t inodes_end = 0;
  std::uint64_t data_start = 0;
  std::uint64_t n_data_blocks = 0;

  /// "/a/b" of an inode, for error messages.
  std::string path_of(std::uint32_t index) const;
};

Result<Plan> build_plan(const Tree& tree, const WriteOptions& opts);
Status place(Plan& plan);

}  // namespace cfs::erofs::detail
