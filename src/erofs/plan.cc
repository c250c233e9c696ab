// SPDX-License-Identifier: Apache-2.0
// Tree -> BFS list of inodes with their final attributes and xattrs: composefs' version bump,
// rewrite (escaping, metacopy/redirect, whiteouts, `.`/`..`, root opaque and stubs) and
// compute_tree (BFS numbering, directory nlink, canonical xattr order, minimum mtime, ACL flag).
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>

#include "cfs/overlay/file_type.h"
#include "cfs/overlay/limits.h"
#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/util/hex.h"
#include "erofs/plan_internal.h"

namespace cfs::erofs::detail {

std::string_view Arena::concat(std::string_view a, std::string_view b) {
  std::size_t n = a.size() + b.size();
  if (n > left_) {
    std::size_t cap = std::max<std::size_t>(n, 256 * 1024);
    blocks_.push_back(std::make_unique<char[]>(cap));
    cur_ = blocks_.back().get();
    left_ = cap;
  }
  char* out = cur_;
  if (!a.empty()) std::memcpy(out, a.data(), a.size());
  if (!b.empty()) std::memcpy(out + a.size(), b.data(), b.size());
  cur_ += n;
  left_ -= n;
  return {out, n};
}

XattrNames::XattrNames() : heads_{std::string_view{}} {}

XattrRef XattrNames::make(std::string_view key, std::string_view rest, std::string_view head) {
  XattrRef x;
  auto [it, inserted] = key_ids_.try_emplace(key, static_cast<std::uint32_t>(keys_.size()));
  if (inserted) keys_.push_back(key);
  x.key = it->second;
  if (!head.empty()) {
    auto h = std::find(heads_.begin(), heads_.end(), head);
    if (h == heads_.end() && heads_.size() < kMaxHeads) h = heads_.insert(h, head);
    if (h == heads_.end()) {
      rest = joined_.concat(head, rest);
    } else {
      x.head = static_cast<std::uint8_t>(h - heads_.begin());
      x.head_size = static_cast<std::uint8_t>(head.size());
    }
  }
  x.rest_data = rest.data();
  x.rest_size = static_cast<std::uint16_t>(rest.size());
  return x;
}

std::string_view XattrNames::value(const XattrRef& x, std::string& scratch) const {
  if (x.head == 0) return x.rest();
  scratch.assign(head(x)).append(x.rest());
  return scratch;
}

int XattrNames::compare_values(const XattrRef& a, const XattrRef& b) const noexcept {
  if (a.head == b.head) return a.rest().compare(b.rest());
  auto at = [this](const XattrRef& x, std::size_t i) {
    return static_cast<unsigned char>(i < x.head_size ? head(x)[i] : x.rest_data[i - x.head_size]);
  };
  for (std::size_t i = 0, n = a.value_size(); i < n; ++i)
    if (at(a, i) != at(b, i)) return at(a, i) < at(b, i) ? -1 : 1;
  return 0;
}

bool XattrNames::same_value(const XattrRef& a, const XattrRef& b) const noexcept {
  return a.value_size() == b.value_size() && compare_values(a, b) == 0;
}

std::string Plan::path_of(std::uint32_t index) const {
  if (index == 0) return "/";
  std::vector<std::string_view> parts;
  for (std::uint32_t i = index; i != 0; i = nodes[i].parent)
    parts.push_back(dirents[nodes[i].name_dirent].name());
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    path += '/';
    path += *it;
  }
  return path;
}

namespace {

constexpr std::uint32_t kUnvisited = 0xFFFFFFFF;

// ".", ".." and the 256 root stub names, in byte order.
struct ExtraNames {
  std::array<char, 2 * 256> hex{};
  std::array<std::string_view, 258> names{};
  ExtraNames() {
    names[0] = ".";
    names[1] = "..";
    for (std::size_t i = 0; i < 256; ++i) {
      hex[2 * i] = kHexDigits[i >> 4];
      hex[2 * i + 1] = kHexDigits[i & 15];
      names[2 + i] = std::string_view(&hex[2 * i], 2);
    }
  }
};
const ExtraNames& extra_names() {
  static const ExtraNames names;
  return names;
}

// The writer tests the rdev composefs keeps (32 bits).
bool is_user_whiteout(const Node& n) { return overlay::is_whiteout(n.mode, n.rdev); }

std::string_view name_problem(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.size() > overlay::kMaxNameLen) return "name longer than 255 bytes";
  if (name == "." || name == "..") return "'.' or '..' as a name";
  if (name.find('/') != std::string_view::npos) return "'/' in a name";
  if (name.find('\0') != std::string_view::npos) return "NUL byte in a name";
  return {};
}

class PlanBuilder {
 public:
  PlanBuilder(const Tree& tree, Plan& plan) : tree_(tree), p_(plan) {}

  Status run(const WriteOptions& opts);

 private:
  template <typename... Args>
  tl::unexpected<Error> invalid(std::uint32_t index, fmt::format_string<Args...> f,
                                Args&&... args) {
    return fail(Errc::kInvalidInput,
                p_.path_of(index) + ": " + fmt::format(f, std::forward<Args>(args)...));
  }

  Status bfs();
  Status expand_dir(std::uint32_t index);
  Status add_child(std::uint32_t dir, const Entry& e);
  Status resolve_links();
  // rewrite() of one inode: attributes, data checks, xattrs (composefs' rewrite step).
  Status rewrite(std::uint32_t index);
  Status rewrite_stub(std::uint32_t index);
  Status rewrite_data(std::uint32_t index, const Node& n);
  Status escape_user_xattrs(std::uint32_t index, const Node& n);
  Status add_overlay_xattrs(std::uint32_t index, const Node& n);
  Status finish_xattrs(std::uint32_t index);
  Status set_xattr(std::uint32_t index, std::string_view key, std::string_view rest,
                   std::string_view head = {});
  Status set_metacopy(std::uint32_t index, const verity::Digest& digest);

  const Tree& tree_;
  Plan& p_;
  std::vector<std::uint32_t> bfs_of_;  // NodeId -> BFS index
  // Hardlink dirents waiting for their target's BFS index: (dirent, NodeId).
  std::vector<std::pair<std::uint32_t, NodeId>> pending_links_;
  bool has_whiteout_ = false;

  // Per-inode scratch of rewrite(): its xattrs and composefs' xattr accounting, which starts
  // from the deep clone (XattrBudget::cloned) and only counts what the writer itself sets.
  std::vector<XattrRef> xs_;
  overlay::XattrBudget budget_;
  std::string_view metacopy_head_;  // the last metacopy header seen, in the arena
};

Status PlanBuilder::bfs() {
  const Node& root = tree_.node(tree_.root());
  if (!root.is_dir()) return fail(Errc::kInvalidInput, "/: the root must be a directory");
  bfs_of_.assign(tree_.size(), kUnvisited);
  bfs_of_[tree_.root()] = 0;
  PNode r;
  r.src = tree_.root();
  p_.nodes.push_back(r);
  for (std::uint32_t i = 0; i < p_.nodes.size(); ++i) CFS_TRY(expand_dir(i));
  return resolve_links();
}

Status PlanBuilder::add_child(std::uint32_t dir, const Entry& e) {
  if (e.node >= tree_.size())
    return invalid(dir, "entry '{}' refers to a node that does not exist", e.name);
  auto dirent = static_cast<std::uint32_t>(p_.dirents.size());
  if (e.hardlink) {
    pending_links_.emplace_back(dirent, e.node);
    p_.dirents.push_back({e.name, kUnvisited});
    return {};
  }
  if (bfs_of_[e.node] != kUnvisited)
    return invalid(dir, "entry '{}' links a node that is already in the tree (use a hardlink)",
                   e.name);
  if (is_user_whiteout(tree_.node(e.node))) has_whiteout_ = true;
  auto index = static_cast<std::uint32_t>(p_.nodes.size());
  bfs_of_[e.node] = index;
  PNode n;
  n.src = e.node;
  n.parent = dir;
  n.name_dirent = dirent;
  p_.nodes.push_back(n);
  p_.dirents.push_back({e.name, index});
  return {};
}

Status PlanBuilder::expand_dir(std::uint32_t index) {
  NodeId id = p_.nodes[index].src;
  if (id == kStub) return {};
  const Node& n = tree_.node(id);
  if (!n.is_dir()) {
    if (!n.children.empty()) return invalid(index, "only directories can have children");
    return {};
  }
  for (std::size_t i = 0; i < n.children.size(); ++i) {
    std::string_view name = n.children[i].name;
    if (auto problem = name_problem(name); !problem.empty())
      return invalid(index, "entry {}: {}", i, problem);
    if (i > 0 && !name_less(n.children[i - 1].name, name))
      return invalid(index, "children not sorted or duplicated at '{}'", name);
  }

  const auto& extras = extra_names().names;
  std::size_t n_extras = index == 0 ? extras.size() : 2;
  auto begin = static_cast<std::uint32_t>(p_.dirents.size());
  std::size_t i = 0, j = 0;
  while (i < n.children.size() || j < n_extras) {
    bool take_child =
        j == n_extras || (i < n.children.size() && !name_less(extras[j], n.children[i].name));
    if (take_child) {
      // A stub is skipped when the root already has an entry of that name.
      if (j < n_extras && n.children[i].name == extras[j]) ++j;
      CFS_TRY(add_child(index, n.children[i++]));
      continue;
    }
    std::string_view name = extras[j++];
    if (name == ".") {
      p_.dirents.push_back({name, index});
    } else if (name == "..") {
      p_.dirents.push_back({name, p_.nodes[index].parent});
    } else {
      PNode stub;
      stub.parent = 0;
      stub.name_dirent = static_cast<std::uint32_t>(p_.dirents.size());
      p_.dirents.push_back({name, static_cast<std::uint32_t>(p_.nodes.size())});
      p_.nodes.push_back(stub);
    }
  }
  PNode& self = p_.nodes[index];
  self.dirent_begin = begin;
  self.dirent_count = static_cast<std::uint32_t>(p_.dirents.size()) - begin;
  std::uint32_t nlink = 2;
  for (const auto& e : n.children)
    if (!e.hardlink && tree_.node(e.node).is_dir()) ++nlink;
  self.nlink = nlink;
  return {};
}

Status PlanBuilder::resolve_links() {
  for (const auto& link : pending_links_) {
    std::uint32_t dirent = link.first;
    NodeId target = link.second;
    std::uint32_t t = bfs_of_[target];
    // Find the directory for the message only on error.
    auto owner = [&] {
      for (std::uint32_t i = 0; i < p_.nodes.size(); ++i) {
        const PNode& pn = p_.nodes[i];
        if (dirent >= pn.dirent_begin && dirent < pn.dirent_begin + pn.dirent_count) return i;
      }
      return std::uint32_t{0};
    };
    if (t == kUnvisited)
      return invalid(owner(), "hardlink '{}' points to a node outside the tree",
                     p_.dirents[dirent].name());
    if (tree_.node(target).is_dir())
      return invalid(owner(), "hardlink '{}' points to a directory", p_.dirents[dirent].name());
    p_.dirents[dirent].target = t;
  }
  return {};
}

Status PlanBuilder::set_xattr(std::uint32_t index, std::string_view key, std::string_view rest,
                              std::string_view head) {
  const std::size_t size = head.size() + rest.size();
  if (size > overlay::kMaxXattrValueLen)
    return invalid(index, "xattr {}: value longer than 65535 bytes", key);
  const XattrRef x = p_.names.make(key, rest, head);
  auto it = std::find_if(xs_.begin(), xs_.end(), [&](const XattrRef& y) { return y.key == x.key; });
  std::optional<std::size_t> replaced;
  if (it != xs_.end()) replaced = it->value_size();
  if (!budget_.set(key.size(), size, replaced))
    return invalid(index, "xattr {}: per-inode xattr size limit ({} bytes) exceeded", key,
                   overlay::XattrBudget::kLimit);
  // lcfs_node_unset_xattr moves the last entry into the hole; the order is sorted away later.
  if (it != xs_.end()) {
    *it = xs_.back();
    xs_.pop_back();
  }
  xs_.push_back(x);
  return {};
}

// The metacopy value as the header (shared by every file of the algorithm) + the digest bytes
// in the tree. The split is checked against the encoding, so only overlay knows the format.
Status PlanBuilder::set_metacopy(std::uint32_t index, const verity::Digest& digest) {
  const overlay::MetacopyBytes value = overlay::Metacopy::encode(digest);
  const std::string_view bytes = value.view();
  const std::string_view d(reinterpret_cast<const char*>(digest.bytes.data()), digest.size);
  if (!bytes.ends_with(d)) return set_xattr(index, overlay::kMetacopy, p_.arena.concat(bytes, {}));
  const std::string_view header = bytes.substr(0, bytes.size() - d.size());
  if (metacopy_head_ != header) metacopy_head_ = p_.arena.concat(header, {});
  return set_xattr(index, overlay::kMetacopy, d, metacopy_head_);
}

// A root whiteout stub: a chardev 0/0 with the root's owner, times and SELinux label.
Status PlanBuilder::rewrite_stub(std::uint32_t index) {
  PNode& pn = p_.nodes[index];
  const Node& root = tree_.node(tree_.root());
  pn.mode = S_IFCHR | 0644;
  pn.nlink = 1;
  budget_ = overlay::XattrBudget::cloned(0);
  if (const Xattr* se = root.find_xattr(overlay::kSelinux))
    CFS_TRY(set_xattr(index, se->key, se->value));
  return {};
}

// Symlink targets and regular-file data: the limits composefs checks, and the layout choice.
Status PlanBuilder::rewrite_data(std::uint32_t index, const Node& n) {
  PNode& pn = p_.nodes[index];
  if (n.is_symlink()) {
    if (n.payload.empty()) return invalid(index, "symlink without a target");
    if (n.payload.size() >= overlay::kPathMax)
      return invalid(index, "symlink target of {} bytes is too long (max {})", n.payload.size(),
                     overlay::kMaxSymlinkLen);
    if (n.payload.find('\0') != std::string::npos)
      return invalid(index, "NUL byte in the symlink target");
    pn.data_ptr = n.payload.data();
    pn.size = n.payload.size();
  } else if (n.is_reg()) {
    if (n.content && !n.content->empty()) {
      if (n.content->size() != n.size)
        return invalid(index, "inline content of {} bytes but size {}", n.content->size(), n.size);
      if (n.content->size() > overlay::kMaxInlineContent)
        return invalid(index, "inline content size {} exceeds maximum {}", n.content->size(),
                       overlay::kMaxInlineContent);
      pn.data_ptr = n.content->data();
    } else if (n.content && n.size != 0) {
      return invalid(index, "inline content of 0 bytes but size {}", n.size);
    } else if (n.size > 0) {
      pn.external = true;
      if (chunking(n.size).count > kMaxChunks)
        return invalid(index, "file too large ({} bytes needs more than {} chunks)", n.size,
                       kMaxChunks);
    }
  }
  return {};
}

// The user's xattrs as the image stores them: every trusted.overlay.* renamed (escaped), which
// also keeps them unique. The budget starts from this clone of the node.
Status PlanBuilder::escape_user_xattrs(std::uint32_t index, const Node& n) {
  for (const Xattr& x : n.xattrs) {
    if (x.key.empty() || x.key.size() > overlay::kMaxXattrKeyLen)
      return invalid(index, "xattr name '{}' must be 1..255 bytes", x.key);
    if (x.key.find('\0') != std::string::npos)
      return invalid(index, "NUL byte in xattr name '{}'", x.key);
    if (x.value.size() > overlay::kMaxXattrValueLen)
      return invalid(index, "xattr {}: value longer than 65535 bytes", x.key);
    if (overlay::needs_escape(x.key))
      xs_.push_back(
          p_.names.make(p_.arena.concat(overlay::kEscapedPrefix,
                                        std::string_view(x.key).substr(overlay::kPrefix.size())),
                        x.value));
    else
      xs_.push_back(p_.names.make(x.key, x.value));
  }
  budget_ = overlay::XattrBudget::cloned(xs_.size());
  return {};
}

// What composefs' add_overlayfs_xattrs sets, in its order (the order decides which one fails
// the budget first): metacopy and redirect, whiteout conversion, the directory markers of
// whiteout children, the root's opaque.
Status PlanBuilder::add_overlay_xattrs(std::uint32_t index, const Node& n) {
  PNode& pn = p_.nodes[index];
  if (pn.external) {
    // Empty: a metacopy without digest.
    CFS_TRY(n.digest ? set_metacopy(index, *n.digest) : set_xattr(index, overlay::kMetacopy, {}));
    if (!n.payload.empty()) {
      if (n.payload.size() >= overlay::kPathMax)
        return invalid(index, "payload of {} bytes is too long (max {})", n.payload.size(),
                       overlay::kPathMax - 1);
      if (n.payload.find('\0') != std::string::npos)
        return invalid(index, "NUL byte in the payload");
      CFS_TRY(set_xattr(index, overlay::kRedirect, n.payload, "/"));
    }
  }

  if (is_user_whiteout(n)) {
    pn.size = 0;
    pn.mode = S_IFREG | (n.mode & ~std::uint32_t{S_IFMT});
    CFS_TRY(set_xattr(index, overlay::kEscapedWhiteout, ""));
    CFS_TRY(set_xattr(index, overlay::kUserWhiteout, ""));
  }

  if (n.is_dir()) {
    // Every whiteout child sets the same four markers; after the first, resetting them
    // changes neither the values nor composefs' running xattr size.
    for (const Entry& e : n.children) {
      if (e.hardlink || !is_user_whiteout(tree_.node(e.node))) continue;
      CFS_TRY(set_xattr(index, overlay::kEscapedWhiteouts, ""));
      CFS_TRY(set_xattr(index, overlay::kUserWhiteouts, ""));
      if (p_.version >= 1) {
        CFS_TRY(set_xattr(index, overlay::kEscapedOpaque, overlay::kWhiteoutsOpaqueValue));
        CFS_TRY(set_xattr(index, overlay::kUserOpaque, overlay::kWhiteoutsOpaqueValue));
      }
      break;
    }
  }
  if (index == 0) CFS_TRY(set_xattr(index, overlay::kOpaque, overlay::kRootOpaqueValue));
  return {};
}

// Canonical (sorted) order, duplicates refused, the ACL flag, then into the plan.
Status PlanBuilder::finish_xattrs(std::uint32_t index) {
  PNode& pn = p_.nodes[index];
  const XattrNames& names = p_.names;
  std::sort(xs_.begin(), xs_.end(),
            [&](const XattrRef& a, const XattrRef& b) { return names.key(a) < names.key(b); });
  for (std::size_t i = 1; i < xs_.size(); ++i)
    if (xs_[i - 1].key == xs_[i].key)
      return invalid(index, "duplicate xattr {}", names.key(xs_[i]));
  for (const XattrRef& x : xs_)
    if (names.key(x) == overlay::kAclAccess || names.key(x) == overlay::kAclDefault)
      p_.has_acl = true;
  pn.xattr_begin = static_cast<std::uint32_t>(p_.xattrs.size());
  pn.xattr_count = static_cast<std::uint32_t>(xs_.size());
  p_.xattrs.insert(p_.xattrs.end(), xs_.begin(), xs_.end());
  return {};
}

Status PlanBuilder::rewrite(std::uint32_t index) {
  PNode& pn = p_.nodes[index];
  xs_.clear();
  if (pn.src == kStub) {
    CFS_TRY(rewrite_stub(index));
  } else {
    const Node& n = tree_.node(pn.src);
    if (!overlay::is_known_type(n.mode))
      return invalid(index, "invalid file type in mode {:o}", n.mode);
    pn.mode = n.mode;
    if (!n.is_dir()) pn.nlink = n.nlink;
    pn.size = n.size;
    CFS_TRY(rewrite_data(index, n));
    CFS_TRY(escape_user_xattrs(index, n));
    CFS_TRY(add_overlay_xattrs(index, n));
  }
  CFS_TRY(finish_xattrs(index));
  const Node& owner = p_.source(pn);
  if (owner.mtime_sec < p_.min_sec ||
      (owner.mtime_sec == p_.min_sec && owner.mtime_nsec < p_.min_nsec)) {
    p_.min_sec = owner.mtime_sec;
    p_.min_nsec = owner.mtime_nsec;
  }
  return {};
}

Status PlanBuilder::run(const WriteOptions& opts) {
  std::uint32_t min_version = opts.min_version;
  std::uint32_t max_version = std::max(opts.max_version, min_version);
  if (min_version > kMaxFormatVersion || max_version > kMaxFormatVersion)
    return fail(Errc::kInvalidInput,
                fmt::format("format version must be 0..{} (got min {}, max {})", kMaxFormatVersion,
                            opts.min_version, opts.max_version));

  // Exact bounds, so neither list is doubled past its size (both are alive at the writer's
  // peak memory): every child, "." and ".." of every directory, the root stubs.
  std::size_t n_dirents = 256;
  for (NodeId id = 0; id < tree_.size(); ++id)
    if (tree_.node(id).is_dir()) n_dirents += tree_.node(id).children.size() + 2;
  p_.nodes.reserve(tree_.size() + 256);
  p_.dirents.reserve(n_dirents);
  CFS_TRY(bfs());

  p_.version = min_version;
  if (p_.version < 1 && max_version >= 1 && has_whiteout_) p_.version = 1;

  const Node& root = tree_.node(tree_.root());
  p_.min_sec = root.mtime_sec;
  p_.min_nsec = root.mtime_nsec;
  // An upper bound of the xattrs rewrite() produces, so the list is allocated once and not
  // doubled past its size (it is alive at the writer's peak memory).
  std::size_t n_xattrs = 1;  // the root's opaque
  for (const PNode& pn : p_.nodes) {
    if (pn.src == kStub) {
      ++n_xattrs;
      continue;
    }
    const Node& n = tree_.node(pn.src);
    n_xattrs += n.xattrs.size();
    if (n.is_reg()) n_xattrs += 2;                   // metacopy, redirect
    if (is_user_whiteout(n)) n_xattrs += 2;          // the escaped and user whiteout
    if (n.is_dir() && has_whiteout_) n_xattrs += 4;  // whiteouts markers, opaque
  }
  p_.xattrs.reserve(n_xattrs);
  for (std::uint32_t i = 0; i < p_.nodes.size(); ++i) CFS_TRY(rewrite(i));
  return {};
}

}  // namespace

Result<Plan> build_plan(const Tree& tree, const WriteOptions& opts) {
  Plan plan;
  plan.tree = &tree;
  CFS_TRY(PlanBuilder(tree, plan).run(opts));
  return plan;
}

}  // namespace cfs::erofs::detail
