// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/merge.h"

#include <fmt/format.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cfs/overlay/limits.h"
#include "cfs/overlay/xattr.h"
#include "cfs/tree/object_name.h"

namespace cfs::oci {

std::string_view xattr_filter_name(XattrFilter f) noexcept {
  return f == XattrFilter::kKeepUserXattrs ? "keep-user-xattrs" : "allowlist-only";
}

Result<XattrFilter> parse_xattr_filter(std::string_view name) {
  if (name == "allowlist-only") return XattrFilter::kAllowlistOnly;
  if (name == "keep-user-xattrs") return XattrFilter::kKeepUserXattrs;
  return fail(Errc::kInvalidInput,
              fmt::format("xattr mode '{}': expected allowlist-only or keep-user-xattrs", name));
}

namespace {

/// composefs-rs' CONTAINER_XATTR_ALLOWLIST: file capabilities survive, host labels do not.
constexpr std::string_view kCapability = "security.capability";

std::string printable(std::string_view s) {
  std::string out(s.substr(0, 300));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

std::string join(const std::vector<std::string_view>& comps, std::size_t n) {
  std::string p;
  for (std::size_t i = 0; i < n; ++i) {
    p += '/';
    p += comps[i];
  }
  return p.empty() ? "/" : p;
}

std::vector<Entry>::iterator find_entry(Node& dir, std::string_view name) {
  auto& kids = dir.children;
  auto it = std::lower_bound(kids.begin(), kids.end(), name,
                             [](const Entry& e, std::string_view n) { return e.name < n; });
  return it != kids.end() && it->name == name ? it : kids.end();
}

}  // namespace

struct Merger::Impl {
  MergeOptions opt;
  Tree tree;
  std::string layer;
  const LayerEntry* current = nullptr;

  struct Touched {
    std::unordered_set<std::string> added;
    std::unordered_set<std::string> whiteouts;
  };
  std::unordered_map<NodeId, Touched> touched;  // this layer's names, per directory

  tl::unexpected<Error> bad(const std::string& why) const {
    const tar::Entry& e = current->tar;
    return fail(Errc::kInvalidInput, fmt::format("layer {}: entry '{}' at byte {}: {}", layer,
                                                 printable(e.path), e.offset, why));
  }

  /// Splits a tar path into components: "./a//b/" -> {a, b}; ".." is refused.
  Result<std::vector<std::string_view>> components(std::string_view path, const char* what) const {
    std::vector<std::string_view> comps;
    for (std::size_t pos = 0; pos <= path.size();) {
      std::size_t end = path.find('/', pos);
      if (end == std::string_view::npos) end = path.size();
      std::string_view c = path.substr(pos, end - pos);
      pos = end + 1;
      if (c.empty() || c == ".") continue;
      if (c == "..") return bad(fmt::format("{} has a '..' component", what));
      if (c.find('\0') != std::string_view::npos)
        return bad(fmt::format("{} has a NUL byte", what));
      if (c.size() > overlay::kMaxNameLen)
        return bad(fmt::format("{} has a name of {} bytes (at most {})", what, c.size(),
                               overlay::kMaxNameLen));
      comps.push_back(c);
    }
    if (!comps.empty() && path.starts_with('/') && !opt.allow_absolute_paths)
      return bad(fmt::format("{} is absolute", what));
    return comps;
  }

  /// The directory holding comps[n-1]: every earlier component must be a directory.
  Result<NodeId> parent_of(const std::vector<std::string_view>& comps, const char* what) {
    NodeId dir = tree.root();
    for (std::size_t i = 0; i + 1 < comps.size(); ++i) {
      auto it = find_entry(tree.node(dir), comps[i]);
      if (it == tree.node(dir).children.end())
        return bad(fmt::format("{}: directory '{}' does not exist (layers create parents first)",
                               what, join(comps, i + 1)));
      const Node& n = tree.node(it->node);
      if (!n.is_dir())
        return bad(fmt::format("{}: '{}' is {}, not a directory", what, join(comps, i + 1),
                               n.is_symlink() ? "a symlink (never followed)" : "a file"));
      dir = it->node;
    }
    return dir;
  }

  Result<NodeId> hardlink_target(const tar::Entry& e) {
    CFS_ASSIGN(auto comps, components(e.link_target, "the hardlink target"));
    if (comps.empty()) return bad("hardlink to the root directory");
    CFS_ASSIGN(NodeId dir, parent_of(comps, "hardlink target"));
    auto it = find_entry(tree.node(dir), comps.back());
    if (it == tree.node(dir).children.end())
      return bad(
          fmt::format("hardlink target '{}' does not exist", printable(join(comps, comps.size()))));
    if (tree.node(it->node).is_dir())
      return bad(
          fmt::format("hardlink target '{}' is a directory", printable(join(comps, comps.size()))));
    return it->node;
  }

  /// The node an entry describes (not linked anywhere yet).
  Result<Node> make_node(const LayerEntry& le) {
    const tar::Entry& e = le.tar;
    Node n;
    std::uint32_t type = 0;
    switch (e.typeflag) {
      case '0':
      case '\0':
      case '7':
        type = S_IFREG;
        n.size = e.size;
        if (le.object) {
          n.digest = *le.object;
          n.payload = tree::object_path(*le.object);
        } else if (le.inline_content && !le.inline_content->empty()) {
          n.content = *le.inline_content;
        }
        break;
      case '5':
        type = S_IFDIR;
        break;
      case '2':
        type = S_IFLNK;
        if (e.link_target.empty()) return bad("symlink with an empty target");
        if (e.link_target.size() > overlay::kMaxSymlinkLen)
          return bad(fmt::format("symlink target of {} bytes (at most {})", e.link_target.size(),
                                 overlay::kMaxSymlinkLen));
        n.payload = e.link_target;
        break;
      case '6':
        type = S_IFIFO;
        break;
      case '3':
      case '4':
        type = e.typeflag == '3' ? S_IFCHR : S_IFBLK;
        if (!e.dev_major || !e.dev_minor) return bad("device entry without device numbers");
        if (!opt.allow_devices)
          return bad(
              fmt::format("{} device {}:{} refused (device nodes are not accepted in "
                          "strict mode)",
                          type == S_IFCHR ? "character" : "block", *e.dev_major, *e.dev_minor));
        n.rdev = makedev(*e.dev_major, *e.dev_minor);
        break;
      default:
        return bad(
            fmt::format("unsupported entry type '{}'", printable(std::string(1, e.typeflag))));
    }
    n.mode = type | (e.mode & ~static_cast<std::uint32_t>(S_IFMT));
    n.uid = static_cast<std::uint32_t>(e.uid);
    n.gid = static_cast<std::uint32_t>(e.gid);
    n.mtime_sec = static_cast<std::int64_t>(e.mtime);
    n.mtime_nsec = e.mtime_nsec;
    for (const auto& [k, v] : e.xattrs) n.set_xattr(k, v);
    return n;
  }

  static void copy_stat(Node& to, const Node& from) {
    to.mode = (to.mode & S_IFMT) | (from.mode & ~static_cast<std::uint32_t>(S_IFMT));
    to.uid = from.uid;
    to.gid = from.gid;
    to.mtime_sec = from.mtime_sec;
    to.mtime_nsec = from.mtime_nsec;
    to.xattrs = from.xattrs;
  }

  Status apply(const LayerEntry& le) {
    current = &le;
    const tar::Entry& e = le.tar;
    CFS_ASSIGN(auto comps, components(e.path, "the path"));
    bool hardlink = e.typeflag == '1';
    std::optional<Node> fresh;
    NodeId link_node = kNoNode;
    if (hardlink) {
      CFS_ASSIGN(link_node, hardlink_target(e));
    } else {
      CFS_ASSIGN(fresh, make_node(le));
    }
    if (comps.empty()) {  // the root: its metadata now, /usr's at the end
      if (hardlink || !fresh->is_dir()) return bad("the root must be a directory");
      copy_stat(tree.node(tree.root()), *fresh);
      return {};
    }
    CFS_ASSIGN(NodeId dir, parent_of(comps, "parent"));
    std::string_view name = comps.back();
    Touched& mine = touched[dir];
    if (name.starts_with(".wh.")) {
      std::string_view target = name.substr(4);
      if (!opt.allow_duplicates && !mine.whiteouts.insert(std::string(name)).second)
        return bad("the same whiteout twice in one layer");
      Node& d = tree.node(dir);
      if (target == ".wh..opq") {
        if (!opt.allow_same_layer_whiteouts && !mine.added.empty())
          return bad(
              fmt::format("opaque whiteout of '{}' after {} entries of the same layer in it "
                          "(the OCI spec keeps them, composefs-rs removes them)",
                          printable(join(comps, comps.size() - 1)), mine.added.size()));
        d.children.clear();
        return {};
      }
      if (!opt.allow_same_layer_whiteouts && mine.added.contains(std::string(target)))
        return bad(
            fmt::format("whiteout of an entry of the same layer (the OCI spec keeps it, "
                        "composefs-rs removes it)"));
      if (auto it = find_entry(d, target); it != d.children.end()) d.children.erase(it);
      return {};
    }
    if (!mine.added.insert(std::string(name)).second && !opt.allow_duplicates)
      return bad("the same path twice in one layer");

    Node& d = tree.node(dir);
    auto it = find_entry(d, name);
    if (fresh && fresh->is_dir() && it != d.children.end() && tree.node(it->node).is_dir()) {
      copy_stat(tree.node(it->node), *fresh);  // a directory over a directory keeps children
      return {};
    }
    NodeId id = hardlink ? link_node : tree.add_node(std::move(*fresh));
    Node& dd = tree.node(dir);  // add_node may have moved the arena
    it = find_entry(dd, name);
    if (it != dd.children.end()) {
      it->node = id;
    } else {
      auto pos = std::lower_bound(dd.children.begin(), dd.children.end(), name,
                                  [](const Entry& en, std::string_view n) { return en.name < n; });
      dd.children.insert(pos, Entry{std::string(name), id, false});
    }
    return {};
  }

  bool keep_xattr(std::string_view key) const {
    return key == kCapability ||
           (opt.xattrs == XattrFilter::kKeepUserXattrs && key.starts_with("user."));
  }

  Result<Tree> finish() {
    Node& root = tree.node(tree.root());
    auto usr = find_entry(root, "usr");
    if (usr == root.children.end())
      return fail(Errc::kInvalidInput,
                  "the merged image has no /usr (composefs-rs takes the root's metadata from it)");
    const Node& u = tree.node(usr->node);
    if (!u.is_dir())
      return fail(Errc::kInvalidInput, "/usr of the merged image is not a directory");
    Node usr_stat = u;
    copy_stat(root, usr_stat);
    if (auto run = find_entry(root, "run"); run != root.children.end()) {
      Node& r = tree.node(run->node);
      if (!r.is_dir())
        return fail(Errc::kInvalidInput,
                    "/run of the merged image is not a directory (composefs-rs empties it)");
      r.children.clear();
      r.mtime_sec = usr_stat.mtime_sec;
      r.mtime_nsec = usr_stat.mtime_nsec;
    }

    // One pass in sorted depth-first order: xattr filter, owners, parents, nlink.
    std::vector<std::uint32_t> names(tree.size(), 0);
    auto visit = [&](NodeId id) {
      Node& n = tree.node(id);
      std::erase_if(n.xattrs, [&](const Xattr& x) { return !keep_xattr(x.key); });
    };
    visit(tree.root());
    root.parent = tree.root();
    struct Frame {
      NodeId dir;
      std::size_t next;
    };
    std::vector<Frame> stack{{tree.root(), 0}};
    while (!stack.empty()) {
      Frame& f = stack.back();
      Node& d = tree.node(f.dir);
      if (f.next == d.children.size()) {
        std::uint32_t nlink = 2;
        for (const Entry& e : d.children)
          if (tree.node(e.node).is_dir()) ++nlink;
        d.nlink = nlink;
        stack.pop_back();
        continue;
      }
      Entry& e = d.children[f.next++];
      NodeId dir = f.dir;
      Node& n = tree.node(e.node);
      e.hardlink = names[e.node]++ > 0;
      if (e.hardlink) continue;
      n.parent = dir;
      visit(e.node);
      if (n.is_dir()) stack.push_back({e.node, 0});
    }
    for (NodeId id = 0; id < tree.size(); ++id) {
      Node& n = tree.node(id);
      if (names[id] == 0 || n.is_dir()) continue;
      n.nlink = names[id];
      if (names[id] > 1 && overlay::is_whiteout(n.mode, n.rdev))
        return fail(Errc::kInvalidInput,
                    "a whiteout device (character 0:0) has several names: overlayfs cannot "
                    "hardlink whiteouts");
    }
    return std::move(tree);
  }
};

Merger::Merger(const MergeOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->opt = options;
}
Merger::~Merger() = default;
Merger::Merger(Merger&&) noexcept = default;
Merger& Merger::operator=(Merger&&) noexcept = default;

void Merger::begin_layer(const std::string& layer) {
  impl_->layer = layer;
  impl_->touched.clear();
}

Status Merger::apply(const LayerEntry& entry) { return impl_->apply(entry); }

Status Merger::apply_layer(LayerReader& reader, const std::string& layer) {
  begin_layer(layer);
  for (;;) {
    CFS_ASSIGN(auto e, reader.next());
    if (!e) return {};
    CFS_TRY(impl_->apply(*e));
  }
}

Result<Tree> Merger::finish() { return impl_->finish(); }

}  // namespace cfs::oci
