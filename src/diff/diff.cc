// SPDX-License-Identifier: Apache-2.0
#include "cfs/diff/diff.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "cfs/dump/parse.h"
#include "cfs/erofs/format.h"
#include "cfs/erofs/reader.h"
#include "cfs/util/hex.h"
#include "cfs/util/le.h"
#include "cfs/util/sys.h"

namespace cfs::diff {
namespace {

using Groups = std::map<NodeId, std::vector<std::string>>;

std::string join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// Every name of every non-directory node reached by more than one entry.
void collect_links(const Tree& t, NodeId dir, const std::string& path, Groups& g) {
  for (const auto& e : t.node(dir).children) {
    std::string p = join(path, e.name);
    const Node& n = t.node(e.node);
    if (n.is_dir() && !e.hardlink) {
      collect_links(t, e.node, p, g);
    } else if (!n.is_dir()) {
      g[e.node].push_back(p);
    }
  }
}

std::string type_name(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    default:
      return "type " + std::to_string(mode & S_IFMT);
  }
}

// Bytes for display: printable ASCII as is, anything else as \xNN; long values shortened.
std::string shown(std::string_view v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (out.size() >= 96) {
      out += "... (" + std::to_string(v.size()) + " bytes)";
      break;
    }
    auto c = static_cast<unsigned char>(v[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// What a regular file's content is, comparable across inline and external storage: the
// fs-verity digest (recorded for objects, computed for inline data).
std::string content_digest(const Node& n) {
  if (n.content) return verity::digest_bytes(std::as_bytes(std::span(*n.content))).hex();
  if (n.digest) return n.digest->hex();
  return n.size == 0 ? verity::digest_bytes({}).hex() : "(none)";
}

void compare_nodes(const Node& a, const Node& b, std::vector<FieldDiff>& f) {
  if (a.type() != b.type()) {
    f.push_back({"type", type_name(a.mode), type_name(b.mode)});
    return;
  }
  auto add = [&](const char* field, std::string va, std::string vb) {
    if (va != vb) f.push_back({field, std::move(va), std::move(vb)});
  };
  char ma[8], mb[8];
  std::snprintf(ma, sizeof ma, "%04o", a.mode & 07777);
  std::snprintf(mb, sizeof mb, "%04o", b.mode & 07777);
  add("mode", ma, mb);
  add("owner", std::to_string(a.uid) + ":" + std::to_string(a.gid),
      std::to_string(b.uid) + ":" + std::to_string(b.gid));
  auto mtime = [](const Node& n) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%lld.%09u", static_cast<long long>(n.mtime_sec), n.mtime_nsec);
    return std::string(buf);
  };
  add("mtime", mtime(a), mtime(b));
  if (a.is_reg()) {
    add("size", std::to_string(a.size), std::to_string(b.size));
    std::string ca = content_digest(a), cb = content_digest(b);
    add("content", ca, cb);
    add("storage", a.content ? "inline" : "object", b.content ? "inline" : "object");
    // The redirect follows the content; shown only when it differs for the same content.
    if (ca == cb && !a.content && !b.content) add("redirect", a.payload, b.payload);
  } else if (a.is_symlink()) {
    add("target", shown(a.payload), shown(b.payload));
  } else if (a.type() == S_IFCHR || a.type() == S_IFBLK) {
    auto dev = [](const Node& n) {
      return std::to_string(major(n.rdev)) + ":" + std::to_string(minor(n.rdev));
    };
    add("rdev", dev(a), dev(b));
  }
  // xattrs as a map: the order in which sources list them does not reach the image.
  std::map<std::string, const std::string*> xa, xb;
  for (const auto& x : a.xattrs) xa[x.key] = &x.value;
  for (const auto& x : b.xattrs) xb[x.key] = &x.value;
  std::set<std::string> keys;
  for (const auto& [k, v] : xa) keys.insert(k);
  for (const auto& [k, v] : xb) keys.insert(k);
  for (const auto& k : keys) {
    auto ia = xa.find(k), ib = xb.find(k);
    bool in_a = ia != xa.end(), in_b = ib != xb.end();
    if (in_a && in_b && *ia->second == *ib->second) continue;
    f.push_back(
        {"xattr " + shown(k), in_a ? shown(*ia->second) : "", in_b ? shown(*ib->second) : ""});
  }
}

std::string links_of(const Groups& g, NodeId node, const std::string& self) {
  auto it = g.find(node);
  if (it == g.end() || it->second.size() < 2) return "";
  std::vector<std::string> others;
  for (const auto& p : it->second)
    if (p != self) others.push_back(p);
  std::sort(others.begin(), others.end());
  std::string out;
  for (const auto& p : others) out += (out.empty() ? "" : ", ") + p;
  return out;
}

struct Walker {
  const Tree& ta;
  const Tree& tb;
  Groups ga, gb;
  std::vector<PathDiff>& out;

  void entry(const Entry* ea, const Entry* eb, const std::string& path) {
    if (!eb) {
      out.push_back({path, PathDiff::Status::kOnlyA, {}});
      return;
    }
    if (!ea) {
      out.push_back({path, PathDiff::Status::kOnlyB, {}});
      return;
    }
    const Node& a = ta.node(ea->node);
    const Node& b = tb.node(eb->node);
    PathDiff d{path, PathDiff::Status::kChanged, {}};
    compare_nodes(a, b, d.fields);
    if (!a.is_dir() && !b.is_dir()) {
      std::string la = links_of(ga, ea->node, path), lb = links_of(gb, eb->node, path);
      if (la != lb) d.fields.push_back({"hardlinks", la, lb});
    }
    if (!d.fields.empty()) out.push_back(std::move(d));
    if (a.is_dir() && b.is_dir()) dir(ea->node, eb->node, path);
  }

  void dir(NodeId a, NodeId b, const std::string& path) {
    const auto& ca = ta.node(a).children;
    const auto& cb = tb.node(b).children;
    std::size_t i = 0, j = 0;
    while (i < ca.size() || j < cb.size()) {
      if (j == cb.size() || (i < ca.size() && name_less(ca[i].name, cb[j].name))) {
        entry(&ca[i], nullptr, join(path, ca[i].name));
        ++i;
      } else if (i == ca.size() || name_less(cb[j].name, ca[i].name)) {
        entry(nullptr, &cb[j], join(path, cb[j].name));
        ++j;
      } else {
        entry(&ca[i], &cb[j], join(path, ca[i].name));
        ++i;
        ++j;
      }
    }
  }
};

bool looks_like_image(int fd) {
  std::array<std::byte, erofs::kSuperOffset + 4> head{};
  auto n = sys::pread_full(fd, head, 0);
  if (!n || *n < head.size()) return false;
  le32 magic;
  std::memcpy(&magic, head.data() + erofs::kSuperOffset, sizeof magic);
  return magic.get() == erofs::kSuperMagic;
}

}  // namespace

Result<DiffInput> load_diff_input(const std::string& arg, const repo::Repository* repo) {
  DiffInput in;
  in.label = arg;
  verity::Params params;
  std::optional<erofs::Image> image;
  auto st = sys::stat(arg);
  if (st && S_ISREG(st->st_mode)) {
    CFS_ASSIGN(auto fd, sys::open(arg, O_RDONLY));
    if (!looks_like_image(fd.get())) {
      dump::ParseOptions po;
      po.source_name = arg;
      CFS_ASSIGN(in.tree, dump::parse_file(arg, po));
      return in;
    }
    CFS_ASSIGN(auto img, erofs::Image::open(arg));
    image.emplace(std::move(img));
  } else if (st) {
    return fail(Errc::kInvalidInput, arg + ": not a regular file");
  } else if (!repo) {
    return fail(Errc::kInvalidInput, arg +
                                         ": no such file (and no repository given to find "
                                         "an image of that name)");
  } else {
    CFS_ASSIGN(auto digest, repo->resolve_image(arg));
    CFS_ASSIGN(auto fd, repo->open_object(digest));
    CFS_ASSIGN(auto img, erofs::Image::open("/proc/self/fd/" + std::to_string(fd.get())));
    image.emplace(std::move(img));
    params.alg = repo->algorithm();
  }
  auto tree = erofs::load_tree(*image);
  if (!tree) return fail(std::move(tree).error().with_context(arg));
  in.tree = std::move(*tree);
  in.is_image = true;
  in.format_version = image->format_version();
  in.image_size = image->bytes().size();
  in.image_digest = verity::digest_bytes(image->bytes(), params).str();
  return in;
}

DiffReport diff(const DiffInput& a, const DiffInput& b) {
  DiffReport r;
  if (a.is_image && b.is_image) {
    auto add = [&](const char* f, std::string va, std::string vb) {
      if (va != vb) r.image.push_back({f, std::move(va), std::move(vb)});
    };
    add("format-version", std::to_string(a.format_version), std::to_string(b.format_version));
    add("image-size", std::to_string(a.image_size), std::to_string(b.image_size));
    add("digest", a.image_digest, b.image_digest);
  }
  Walker w{a.tree, b.tree, {}, {}, r.paths};
  collect_links(a.tree, a.tree.root(), "/", w.ga);
  collect_links(b.tree, b.tree.root(), "/", w.gb);
  Entry root_a{"", a.tree.root(), false}, root_b{"", b.tree.root(), false};
  w.entry(&root_a, &root_b, "/");
  return r;
}

}  // namespace cfs::diff
