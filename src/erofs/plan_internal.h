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
#include <unordered_map>
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

/// An xattr of the image, in 16 bytes: a /usr build has ~300k of them alive at the writer's
/// peak memory (as three string_views they took 14 MB). The key is an index into
/// XattrNames' interned keys, so equal keys have equal ids. The value is a head followed by
/// `rest`, so the values the writer derives from a node (metacopy: a constant header + the
/// digest; redirect: "/" + the payload) point into the tree instead of being copied; the few
/// distinct heads are indexed too. Made only by XattrNames::make.
struct XattrRef {
  const char* rest_data = nullptr;
  std::uint32_t key = 0;
  std::uint16_t rest_size = 0;
  std::uint8_t head = 0;  ///< index of the head; 0 is the empty head
  std::uint8_t head_size = 0;

  std::string_view rest() const noexcept { return {rest_data, rest_size}; }
  std::size_t value_size() const noexcept { return std::size_t{head_size} + rest_size; }
};
static_assert(sizeof(XattrRef) == 16);

/// The strings XattrRefs point at by index: interned keys and value heads.
class XattrNames {
 public:
  XattrNames();
  /// Key `key` (at most 255 bytes), value `head` + `rest` (at most 65535 bytes; callers check
  /// overlay::kMaxXattrValueLen first). The views must outlive the refs.
  XattrRef make(std::string_view key, std::string_view rest, std::string_view head = {});
  std::string_view key(const XattrRef& x) const noexcept { return keys_[x.key]; }
  std::string_view head(const XattrRef& x) const noexcept { return heads_[x.head]; }
  /// The value's bytes, in `scratch` only when there is a head.
  std::string_view value(const XattrRef& x, std::string& scratch) const;
  /// memcmp() of the values of two xattrs of the same value_size().
  int compare_values(const XattrRef& a, const XattrRef& b) const noexcept;
  /// Same value bytes (however they are split between head and rest).
  bool same_value(const XattrRef& a, const XattrRef& b) const noexcept;

 private:
  static constexpr std::size_t kMaxHeads = 256;
  std::vector<std::string_view> keys_;
  std::unordered_map<std::string_view, std::uint32_t> key_ids_;
  std::vector<std::string_view> heads_;
  Arena joined_;  // head + rest of a value whose head did not fit the head table
};

/// A directory entry of the image (16 bytes; names are at most 255 bytes, checked first).
struct DirEntry {
  DirEntry(std::string_view name, std::uint32_t t)
      : name_data(name.data()), target(t), name_size(static_cast<std::uint8_t>(name.size())) {}
  const char* name_data;
  std::uint32_t target;  ///< BFS index of the (hardlink-resolved) inode
  std::uint8_t name_size;

  std::string_view name() const noexcept { return {name_data, name_size}; }
};
static_assert(sizeof(DirEntry) == 16);

inline constexpr std::uint32_t kStub = 0xFFFFFFFF;  // PNode::src of a root whiteout stub
inline constexpr std::uint32_t kNotShared = 0xFFFFFFFF;

/// One inode of the image. Packed into 72 bytes: one per entry, alive at the writer's peak
/// memory (what the tree node has as it is, it is read from there, not copied: 96 -> 72).
struct PNode {
  const char* data_ptr = nullptr;  ///< inline content or symlink target (`size` bytes)
  std::uint64_t size = 0;          ///< st_size as composefs keeps it (drives compact vs extended)

  NodeId src = kStub;
  std::uint32_t parent = 0;  ///< BFS index; the root is its own parent
  /// Plan::dirents index of the entry naming this inode, for messages (the root: kStub).
  std::uint32_t name_dirent = kStub;
  std::uint32_t nid = 0;  ///< placement (place())

  std::uint32_t mode = 0;  ///< full input mode after whiteout conversion (i_mode = low 16 bits)
  std::uint32_t nlink = 1;
  // Owner, times and device number are the source node's as they are (the root's owner and
  // times for a stub): Plan::source(), Plan::rdev().

  std::uint32_t dirent_begin = 0, dirent_count = 0;  ///< into Plan::dirents
  std::uint32_t xattr_begin = 0, xattr_count = 0;    ///< into Plan::xattrs (sorted by key)

  // Placement (place()).
  std::uint32_t xattr_size = 0;
  std::uint32_t n_blocks = 0;
  std::uint32_t tail = 0;
  std::uint16_t ipad = 0;     ///< zero bytes before the inode (< a block + a slot)
  std::uint8_t n_shared = 0;  ///< at most 128 (kShareLimit)
  bool compact : 1 = false;
  bool external : 1 = false;  ///< chunk-based regular file

  std::uint32_t type() const noexcept { return mode & S_IFMT; }
  std::string_view data() const noexcept {
    return data_ptr ? std::string_view(data_ptr, size) : std::string_view();
  }
};
static_assert(sizeof(PNode) == 72);

struct Plan {
  const Tree* tree = nullptr;  ///< the source; outlives the plan
  std::vector<PNode> nodes;
  std::vector<DirEntry> dirents;
  std::vector<XattrRef> xattrs;
  /// Per xattr: its offset in the shared table / 4, or kNotShared (place()).
  std::vector<std::uint32_t> xattr_shared;
  std::vector<XattrRef> shared;  ///< the shared table, in table order
  XattrNames names;
  Arena arena;

  std::uint32_t version = 0;
  bool has_acl = false;
  std::int64_t min_sec = 0;
  std::uint32_t min_nsec = 0;

  std::uint64_t shared_size = 0;
  std::uint64_t inodes_end = 0;
  std::uint64_t data_start = 0;
  std::uint64_t n_data_blocks = 0;

  /// The tree node whose owner and times an inode has: its source, or the root for a stub.
  const Node& source(const PNode& n) const {
    return tree->node(n.src == kStub ? tree->root() : n.src);
  }

  /// i_u of a device inode: the device number truncated to 32 bits, as composefs stores it;
  /// 0 for a stub. (User whiteouts, devices 0/0, became regular files in the plan.)
  std::uint32_t rdev(const PNode& n) const {
    return n.src == kStub ? 0 : static_cast<std::uint32_t>(tree->node(n.src).rdev);
  }

  /// "/a/b" of an inode, for error messages.
  std::string path_of(std::uint32_t index) const;
};

Result<Plan> build_plan(const Tree& tree, const WriteOptions& opts);
Status place(Plan& plan);

}  // namespace cfs::erofs::detail
