// SPDX-License-Identifier: Apache-2.0
// Tree -> BFS list of inodes with their final attributes and xattrs: composefs' version bump,
// rewrite (escaping, metacopy/redirect, whiteouts, `.`/`..`, root opaque and stubs) and
// compute_tree (BFS numbering, directory nlink, canonical xattr order, minimum mtime, ACL flag).
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

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

std::string Plan::path_of(std::uint32_t index) const {
  if (index == 0) return "/";
  std::vector<std::string_view> parts;
  for (std::uint32_t i = index; i != 0; i = nodes[i].parent) parts.push_back(nodes[i].name);
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    path += '/';
    path += *it;
  }
  return path;
}

namespace {

constexpr std::uint32_t kUnvisited = 0xFFFFFFFF;
constexpr std::size_t kMaxNameLength = 255;
constexpr std::size_t kMaxXattrKey = 255;
constexpr std::size_t kMaxXattrValue = 65535;
constexpr std::size_t kPathMax = 4096;
// LCFS_INODE_EXTERNAL_XATTR_MAX and the accounting of lcfs_node_set_xattr: each entry costs
// 2*4-1 + key + value bytes, the first one 12 more.
constexpr std::int64_t kXattrBudget = 65535 / 2;
constexpr std::int64_t kXattrBudgetEntry = 7;
constexpr std::int64_t kXattrBudgetHeader = 12;

constexpr std::string_view kOverlayPrefix = "trusted.overlay.";
constexpr std::string_view kOverlayEscapedPrefix = "trusted.overlay.overlay.";
constexpr std::string_view kMetacopy = "trusted.overlay.metacopy";
constexpr std::string_view kRedirect = "trusted.overlay.redirect";
constexpr std::string_view kOpaque = "trusted.overlay.opaque";
constexpr std::string_view kEscapedWhiteout = "trusted.overlay.overlay.whiteout";
constexpr std::string_view kEscapedWhiteouts = "trusted.overlay.overlay.whiteouts";
constexpr std::string_view kEscapedOpaque = "trusted.overlay.overlay.opaque";
constexpr std::string_view kUserWhiteout = "user.overlay.whiteout";
constexpr std::string_view kUserWhiteouts = "user.overlay.whiteouts";
constexpr std::string_view kUserOpaque = "user.overlay.opaque";
constexpr std::string_view kSelinux = "security.selinux";
constexpr std::string_view kAclAccess = "system.posix_acl_access";
constexpr std::string_view kAclDefault = "system.posix_acl_default";

// ".", ".." and the 256 root stub names, in byte order.
struct ExtraNames {
  std::array<char, 2 * 256> hex{};
  std::array<std::string_view, 258> names{};
  ExtraNames() {
    static constexpr char kDigits[] = "0123456789abcdef";
    names[0] = ".";
    names[1] = "..";
    for (std::size_t i = 0; i < 256; ++i) {
      hex[2 * i] = kDigits[i >> 4];
      hex[2 * i + 1] = kDigits[i & 15];
      names[2 + i] = std::string_view(&hex[2 * i], 2);
    }
  }
};
const ExtraNames& extra_names() {
  static const ExtraNames names;
  return names;
}

bool known_type(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFBLK:
    case S_IFCHR:
    case S_IFSOCK:
    case S_IFIFO:
      return true;
    default:
      return false;
  }
}

// composefs keeps rdev in 32 bits, so a chardev whose rdev truncates to 0 is a whiteout too.
bool is_user_whiteout(const Node& n) {
  return n.type() == S_IFCHR && static_cast<std::uint32_t>(n.rdev) == 0;
}

std::string_view name_problem(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.size() > kMaxNameLength) return "name longer than 255 bytes";
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
  Status rewrite(std::uint32_t index);
  Status set_xattr(std::uint32_t index, std::string_view key, std::string_view value);

  const Tree& tree_;
  Plan& p_;
  std::vector<std::uint32_t> bfs_of_;  // NodeId -> BFS index
  // Hardlink dirents waiting for their target's BFS index: (dirent, NodeId).
  std::vector<std::pair<std::uint32_t, NodeId>> pending_links_;
  bool has_whiteout_ = false;

  // Per-inode scratch of rewrite(): its xattrs and composefs' running xattr_size, which
  // starts at 0 in the deep clone and only counts what the writer itself sets.
  std::vector<XattrRef> xs_;
  std::int64_t budget_ = 0;
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
  n.name = e.name;
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
      stub.name = name;
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
                     p_.dirents[dirent].name);
    if (tree_.node(target).is_dir())
      return invalid(owner(), "hardlink '{}' points to a directory", p_.dirents[dirent].name);
    p_.dirents[dirent].target = t;
  }
  return {};
}

Status PlanBuilder::set_xattr(std::uint32_t index, std::string_view key, std::string_view value) {
  if (value.size() > kMaxXattrValue)
    return invalid(index, "xattr {}: value longer than 65535 bytes", key);
  auto it = std::find_if(xs_.begin(), xs_.end(), [&](const XattrRef& x) { return x.key == key; });
  if (it != xs_.end()) {
    auto old = static_cast<std::int64_t>(it->value.size());
    *it = xs_.back();
    xs_.pop_back();
    if (xs_.empty())
      budget_ = 0;
    else
      budget_ -= kXattrBudgetEntry + static_cast<std::int64_t>(key.size()) + old;
  }
  std::int64_t entry = kXattrBudgetEntry + static_cast<std::int64_t>(key.size() + value.size());
  if (xs_.empty()) entry += kXattrBudgetHeader;
  // composefs does this in size_t, so a running total that went "negative" fails too.
  if (budget_ + entry < 0 || budget_ + entry > kXattrBudget)
    return invalid(index, "xattr {}: per-inode xattr size limit ({} bytes) exceeded", key,
                   kXattrBudget);
  xs_.push_back({key, value});
  budget_ += entry;
  return {};
}

Status PlanBuilder::rewrite(std::uint32_t index) {
  PNode& pn = p_.nodes[index];
  xs_.clear();
  budget_ = 0;
  const Node& root = tree_.node(tree_.root());

  if (pn.src == kStub) {
    pn.mode = S_IFCHR | 0644;
    pn.nlink = 1;
    pn.uid = root.uid;
    pn.gid = root.gid;
    pn.mtime_sec = root.mtime_sec;
    pn.mtime_nsec = root.mtime_nsec;
    if (const Xattr* se = root.find_xattr(kSelinux)) CFS_TRY(set_xattr(index, se->key, se->value));
  } else {
    const Node& n = tree_.node(pn.src);
    if (!known_type(n.mode)) return invalid(index, "invalid file type in mode {:o}", n.mode);
    pn.mode = n.mode;
    if (!n.is_dir()) pn.nlink = n.nlink;
    pn.uid = n.uid;
    pn.gid = n.gid;
    pn.mtime_sec = n.mtime_sec;
    pn.mtime_nsec = n.mtime_nsec;
    pn.size = n.size;
    if (n.type() == S_IFCHR || n.type() == S_IFBLK) pn.rdev = static_cast<std::uint32_t>(n.rdev);

    if (n.is_symlink()) {
      if (n.payload.empty()) return invalid(index, "symlink without a target");
      if (n.payload.size() >= kPathMax)
        return invalid(index, "symlink target of {} bytes is too long (max {})", n.payload.size(),
                       kPathMax - 1);
      if (n.payload.find('\0') != std::string::npos)
        return invalid(index, "NUL byte in the symlink target");
      pn.data = n.payload;
      pn.size = n.payload.size();
    } else if (n.is_reg()) {
      if (n.content && !n.content->empty()) {
        if (n.content->size() != n.size)
          return invalid(index, "inline content of {} bytes but size {}", n.content->size(),
                         n.size);
        if (n.content->size() > kMaxInlineContent)
          return invalid(index, "inline content size {} exceeds maximum {}", n.content->size(),
                         kMaxInlineContent);
        pn.data = *n.content;
      } else if (n.content && n.size != 0) {
        return invalid(index, "inline content of 0 bytes but size {}", n.size);
      } else if (n.size > 0) {
        pn.external = true;
        if (chunking(n.size).count > kMaxChunks)
          return invalid(index, "file too large ({} bytes needs more than {} chunks)", n.size,
                         kMaxChunks);
      }
    }

    // Escape the user's overlay xattrs; renaming every trusted.overlay.* keeps them unique.
    for (const Xattr& x : n.xattrs) {
      if (x.key.empty() || x.key.size() > kMaxXattrKey)
        return invalid(index, "xattr name '{}' must be 1..255 bytes", x.key);
      if (x.key.find('\0') != std::string::npos)
        return invalid(index, "NUL byte in xattr name '{}'", x.key);
      if (x.value.size() > kMaxXattrValue)
        return invalid(index, "xattr {}: value longer than 65535 bytes", x.key);
      if (x.key.starts_with(kOverlayPrefix))
        xs_.push_back({p_.arena.concat(kOverlayEscapedPrefix,
                                       std::string_view(x.key).substr(kOverlayPrefix.size())),
                       x.value});
      else
        xs_.push_back({x.key, x.value});
    }

    if (pn.external) {
      std::string_view metacopy;
      if (n.digest) {
        static constexpr char kHeader[4] = {0, 36, 0, 1};  // version, len, flags, SHA-256
        metacopy = p_.arena.concat(
            std::string_view(kHeader, 4),
            std::string_view(reinterpret_cast<const char*>(n.digest->data()), n.digest->size()));
      }
      CFS_TRY(set_xattr(index, kMetacopy, metacopy));
      if (!n.payload.empty()) {
        if (n.payload.size() >= kPathMax)
          return invalid(index, "payload of {} bytes is too long (max {})", n.payload.size(),
                         kPathMax - 1);
        if (n.payload.find('\0') != std::string::npos)
          return invalid(index, "NUL byte in the payload");
        CFS_TRY(set_xattr(index, kRedirect, p_.arena.concat("/", n.payload)));
      }
    }

    if (is_user_whiteout(n)) {
      pn.size = 0;
      pn.mode = S_IFREG | (n.mode & ~std::uint32_t{S_IFMT});
      pn.rdev = 0;
      CFS_TRY(set_xattr(index, kEscapedWhiteout, ""));
      CFS_TRY(set_xattr(index, kUserWhiteout, ""));
    }

    if (n.is_dir()) {
      // Every whiteout child sets the same four markers; after the first, resetting them
      // changes neither the values nor composefs' running xattr size.
      for (const Entry& e : n.children) {
        if (e.hardlink || !is_user_whiteout(tree_.node(e.node))) continue;
        CFS_TRY(set_xattr(index, kEscapedWhiteouts, ""));
        CFS_TRY(set_xattr(index, kUserWhiteouts, ""));
        if (p_.version >= 1) {
          CFS_TRY(set_xattr(index, kEscapedOpaque, "x"));
          CFS_TRY(set_xattr(index, kUserOpaque, "x"));
        }
        break;
      }
    }
    if (index == 0) CFS_TRY(set_xattr(index, kOpaque, "y"));
  }

  std::sort(xs_.begin(), xs_.end(),
            [](const XattrRef& a, const XattrRef& b) { return a.key < b.key; });
  for (std::size_t i = 1; i < xs_.size(); ++i)
    if (xs_[i - 1].key == xs_[i].key) return invalid(index, "duplicate xattr {}", xs_[i].key);
  for (const XattrRef& x : xs_)
    if (x.key == kAclAccess || x.key == kAclDefault) p_.has_acl = true;

  pn.xattr_begin = static_cast<std::uint32_t>(p_.xattrs.size());
  pn.xattr_count = static_cast<std::uint32_t>(xs_.size());
  p_.xattrs.insert(p_.xattrs.end(), xs_.begin(), xs_.end());

  if (pn.mtime_sec < p_.min_sec || (pn.mtime_sec == p_.min_sec && pn.mtime_nsec < p_.min_nsec)) {
    p_.min_sec = pn.mtime_sec;
    p_.min_nsec = pn.mtime_nsec;
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

  p_.nodes.reserve(tree_.size() + 256);
  p_.dirents.reserve(tree_.size() + 2 * tree_.size() / 8 + 258);
  CFS_TRY(bfs());

  p_.version = min_version;
  if (p_.version < 1 && max_version >= 1 && has_whiteout_) p_.version = 1;

  const Node& root = tree_.node(tree_.root());
  p_.min_sec = root.mtime_sec;
  p_.min_nsec = root.mtime_nsec;
  p_.xattrs.reserve(p_.nodes.size() * 2);
  for (std::uint32_t i = 0; i < p_.nodes.size(); ++i) CFS_TRY(rewrite(i));
  return {};
}

}  // namespace

Result<Plan> build_plan(const Tree& tree, const WriteOptions& opts) {
  Plan plan;
  CFS_TRY(PlanBuilder(tree, plan).run(opts));
  return plan;
}

}  // namespace cfs::erofs::detail
