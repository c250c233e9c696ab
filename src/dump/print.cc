// SPDX-License-Identifier: Apache-2.0
// composefs-info dump/ls printers (upstream tools/composefs-info.c semantics). Walks are
// iterative: a tree loaded from a hostile image or dump may be very deep.
#include "cfs/dump/print.h"

#include <fmt/format.h>

#include <cstdint>
#include <vector>

#include "cfs/util/hex.h"
#include "cfs/util/json.h"
#include "dump/escape.h"

namespace cfs::dump {
namespace {

using detail::append_escaped;
using detail::cstr;
using detail::kEscapeEqual;
using detail::kEscapeLoneDash;
using detail::kEscapeStandard;
using detail::kNoEscapeSpace;

// The path of a node through its owning entries ("" for the root), like node_build_path().
std::string owner_path(const Tree& tree, NodeId id) {
  std::vector<std::string_view> names;
  NodeId cur = id;
  for (std::size_t guard = 0; cur != tree.root() && guard <= tree.size(); ++guard) {
    NodeId parent = tree.node(cur).parent;
    if (parent == kNoNode || parent >= tree.size()) break;
    const Entry* owner = nullptr;
    for (const Entry& e : tree.node(parent).children) {
      if (e.node == cur && !e.hardlink) {
        owner = &e;
        break;
      }
    }
    if (owner == nullptr) break;
    names.push_back(owner->name);
    cur = parent;
  }
  std::string path;
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    path += '/';
    path += *it;
  }
  return path;
}

void print_dump_line(const Tree& tree, std::string_view path, NodeId id, bool hardlink,
                     std::string& out) {
  const Node& n = tree.node(id);
  append_escaped(out, cstr(path.empty() ? std::string_view("/") : path), kEscapeStandard);
  fmt::format_to(std::back_inserter(out), " {} {}{:o} {} {} {} {} {}.{} ", n.size,
                 hardlink ? "@" : "", n.mode, n.nlink, n.uid, n.gid, n.rdev, n.mtime_sec,
                 n.mtime_nsec);
  if (hardlink) {
    append_escaped(out, cstr(owner_path(tree, id)), kEscapeLoneDash);
  } else if (std::string_view payload = cstr(n.payload); !payload.empty()) {
    append_escaped(out, payload, kEscapeLoneDash);
  } else {
    out += '-';
  }
  out += ' ';
  if (n.content)
    append_escaped(out, *n.content, kEscapeLoneDash);
  else
    out += '-';
  out += ' ';
  if (n.digest)
    append_hex(out, n.digest->view());
  else
    out += '-';
  for (const Xattr& x : n.xattrs) {
    out += ' ';
    append_escaped(out, cstr(x.key), kEscapeEqual);
    out += '=';
    append_escaped(out, x.value, kEscapeEqual);
  }
  out += '\n';
}

// Depth-first walk in children order. visit(path, entry) is called for every entry below
// the root; path is the entry's full path.
template <typename Visit>
void walk(const Tree& tree, Visit&& visit) {
  struct Frame {
    NodeId dir;
    std::size_t next;
    std::size_t path_len;
  };
  std::string path;
  std::vector<Frame> stack;
  stack.push_back({tree.root(), 0, 0});
  while (!stack.empty()) {
    Frame& f = stack.back();
    const auto& kids = tree.node(f.dir).children;
    if (f.next == kids.size()) {
      path.resize(f.path_len);
      stack.pop_back();
      continue;
    }
    const Entry& e = kids[f.next++];
    path.resize(f.path_len);
    path += '/';
    path += e.name;
    visit(std::string_view(path), e);
    // A hardlink's target is printed (with its children) through its owning entry.
    if (!e.hardlink && e.node < tree.size() && !tree.node(e.node).children.empty())
      stack.push_back({e.node, 0, path.size()});
  }
}

void append_json_or_null(std::string& out, const std::string* s) {
  if (s)
    json::append_string(out, *s);
  else
    out += "null";
}

void print_dump_json_entry(const Tree& tree, std::string_view path, NodeId id, bool hardlink,
                           std::string& out) {
  const Node& n = tree.node(id);
  out += "{\"path\":";
  json::append_string(out, path.empty() ? std::string_view("/") : path);
  fmt::format_to(std::back_inserter(out),
                 ",\"size\":{},\"mode\":{},\"nlink\":{},\"uid\":{},\"gid\":{},\"rdev\":{},"
                 "\"mtime\":{},\"mtime_nsec\":{},\"hardlink\":",
                 n.size, n.mode, n.nlink, n.uid, n.gid, n.rdev, n.mtime_sec, n.mtime_nsec);
  if (hardlink) {
    std::string owner = owner_path(tree, id);
    json::append_string(out, owner);
  } else {
    out += "null";
  }
  out += ",\"payload\":";
  append_json_or_null(out, n.payload.empty() ? nullptr : &n.payload);
  out += ",\"content\":";
  append_json_or_null(out, n.content ? &*n.content : nullptr);
  out += ",\"digest\":";
  if (n.digest) {
    out += '"';
    append_hex(out, n.digest->view());
    out += '"';
  } else {
    out += "null";
  }
  out += ",\"xattrs\":[";
  for (std::size_t i = 0; i < n.xattrs.size(); ++i) {
    out += i ? ",{\"key\":" : "{\"key\":";
    json::append_string(out, n.xattrs[i].key);
    out += ",\"value\":";
    json::append_string(out, n.xattrs[i].value);
    out += '}';
  }
  out += "]}";
}

const char* type_name(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return "directory";
    case S_IFREG:
      return "file";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "chardev";
    case S_IFBLK:
      return "blockdev";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    default:
      return "unknown";
  }
}

}  // namespace

void print_dump(const Tree& tree, std::string& out) {
  print_dump(tree, out, SIZE_MAX, [](std::string&) {});
}

void print_ls(const Tree& tree, std::string& out) {
  print_ls(tree, out, SIZE_MAX, [](std::string&) {});
}

void print_dump(const Tree& tree, std::string& out, std::size_t flush_bytes, const FlushFn& flush) {
  print_dump_line(tree, "", tree.root(), false, out);
  walk(tree, [&](std::string_view path, const Entry& e) {
    print_dump_line(tree, path, e.node, e.hardlink, out);
    if (out.size() >= flush_bytes) flush(out);
  });
}

void print_ls(const Tree& tree, std::string& out, std::size_t flush_bytes, const FlushFn& flush) {
  walk(tree, [&](std::string_view path, const Entry& e) {
    if (out.size() >= flush_bytes) flush(out);
    append_escaped(out, cstr(path), kNoEscapeSpace);
    // composefs-info's hardlink nodes are empty (mode 0): only the path is printed.
    if (!e.hardlink) {
      const Node& n = tree.node(e.node);
      if (n.is_dir()) {
        out += "/\t";
      } else if (n.is_symlink()) {
        out += "\t-> ";
        append_escaped(out, cstr(n.payload), kEscapeStandard);
      } else if (n.is_reg() && !n.payload.empty()) {
        out += "\t@ ";
        append_escaped(out, cstr(n.payload), kEscapeStandard);
      }
    }
    out += '\n';
  });
}

void print_dump_json(const Tree& tree, std::string& out, std::size_t flush_bytes,
                     const FlushFn& flush) {
  out += "[\n";
  print_dump_json_entry(tree, "", tree.root(), false, out);
  walk(tree, [&](std::string_view path, const Entry& e) {
    out += ",\n";
    print_dump_json_entry(tree, path, e.node, e.hardlink, out);
    if (out.size() >= flush_bytes) flush(out);
  });
  out += "\n]";
}

void print_ls_json(const Tree& tree, std::string& out, std::size_t flush_bytes,
                   const FlushFn& flush) {
  out += '[';
  bool first = true;
  walk(tree, [&](std::string_view path, const Entry& e) {
    if (out.size() >= flush_bytes) flush(out);
    out += first ? "\n{\"path\":" : ",\n{\"path\":";
    first = false;
    json::append_string(out, path);
    const Node& n = tree.node(e.node);
    out += ",\"type\":\"";
    out += e.hardlink ? "hardlink" : type_name(n.mode);
    out += '"';
    if (!e.hardlink && n.is_symlink()) {
      out += ",\"target\":";
      json::append_string(out, n.payload);
    } else if (!e.hardlink && n.is_reg() && !n.payload.empty()) {
      out += ",\"payload\":";
      json::append_string(out, n.payload);
    }
    out += '}';
  });
  out += first ? "]" : "\n]";
}

std::string escape_path(std::string_view s) {
  std::string out;
  append_escaped(out, s, kEscapeStandard);
  return out;
}

std::string escape_optional(std::string_view s) {
  if (s.empty()) return "-";
  std::string out;
  append_escaped(out, s, kEscapeLoneDash);
  return out;
}

std::string escape_xattr(std::string_view s) {
  std::string out;
  append_escaped(out, s, kEscapeEqual);
  return out;
}

}  // namespace cfs::dump
