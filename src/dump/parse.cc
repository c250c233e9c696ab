// SPDX-License-Identifier: Apache-2.0
// Dump parser. Mirrors upstream mkcomposefs 1.0.8 (tools/mkcomposefs.c) check by check, in the
// same order, so the accepted language and the resulting tree are the same; the quirks kept on
// purpose are listed in docs/dump-format.md. Hot path: one pass over the text with memchr, field
// views into the input (no copies unless a field has escapes), a cached parent directory.
#include "cfs/dump/parse.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>

#include "cfs/overlay/file_type.h"
#include "cfs/overlay/limits.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/hex.h"
#include "cfs/util/mapped_file.h"
#include "cfs/util/path.h"
#include "cfs/util/sys.h"
#include "dump/escape.h"

namespace cfs::dump {
namespace {

using detail::cstr;
using detail::parse_u64;
using detail::unescape;

enum Field : std::size_t {
  kPath,
  kSize,
  kMode,
  kNlink,
  kUid,
  kGid,
  kRdev,
  kMtime,
  kPayload,
  kContent,
  kDigest,
  kFixedFields,
};

constexpr std::array<const char*, kFixedFields> kFieldNames = {
    "PATH", "SIZE", "MODE", "NLINK", "UID", "GID", "RDEV", "MTIME", "PAYLOAD", "CONTENT", "DIGEST"};

using overlay::kMaxInlineContent;
using overlay::kMaxNameLen;
using overlay::kMaxSymlinkLen;
using overlay::kMaxXattrKeyLen;
using overlay::kMaxXattrValueLen;
using overlay::kPathMax;

// A DIGEST field holding a whole SHA-256 (64 hex digits) or SHA-512 (128, as composefs-rs
// writes the dumps of SHA-512 images) digest.
std::optional<verity::Digest> parse_digest_field(std::string_view hex) {
  return tree::parse_digest_hex(hex);
}

// Anything else, as composefs 1.0.8 reads it: hex pairs decoded into a 32-byte stack buffer,
// failure ignored, so the bytes up to the first bad pair are kept and the rest is whatever was
// on the stack. We keep the decodable prefix and zero the rest.
verity::Digest lenient_sha256(std::string_view hex) {
  verity::Digest d = verity::Digest::zero(verity::HashAlg::kSha256);
  for (std::size_t n = 0; n < d.size && 2 * n + 1 < hex.size(); ++n) {
    int hi = hex_value(hex[2 * n]), lo = hex_value(hex[2 * n + 1]);
    if (hi < 0 || lo < 0) break;
    d.bytes[n] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return d;
}

// split_at(): the part before the next `sep`; the rest after it (empty when there is none).
std::string_view split_at(std::string_view& rest, char sep) {
  const void* hit = std::memchr(rest.data(), sep, rest.size());
  if (hit == nullptr) {
    std::string_view part = rest;
    rest = rest.substr(rest.size());
    return part;
  }
  auto n = static_cast<std::size_t>(static_cast<const char*>(hit) - rest.data());
  std::string_view part = rest.substr(0, n);
  rest.remove_prefix(n + 1);
  return part;
}

struct HardlinkFixup {
  NodeId dir;
  std::string name;
  std::optional<std::string> target;
  std::size_t line;
};

class Parser {
 public:
  explicit Parser(const ParseOptions& opts) : opts_(opts) {}

  Result<Tree> run(std::string_view text);

 private:
  // PATH and MODE of a line, and the fields as split (views into the line).
  struct LineHead {
    std::array<std::string_view, kFixedFields> fields;
    std::string_view rest;  ///< the xattrs after DIGEST
    std::string_view path;  ///< unescaped, up to a NUL
    std::uint32_t mode = 0;
    bool hardlink = false;
    std::uint32_t type() const noexcept { return mode & S_IFMT; }
  };
  // The other fields of a non-hardlink line, parsed and unescaped.
  struct LineAttrs {
    std::uint64_t size = 0, nlink = 0, uid = 0, gid = 0, rdev = 0, sec = 0, nsec = 0;
    std::optional<std::string_view> payload, content, digest;
  };

  // Each returns false after setting err_.
  bool parse_line(std::string_view line);
  bool parse_head(std::string_view line, LineHead& head);
  bool add_hardlink(const LineHead& head, NodeId dir, std::string_view name);
  bool parse_attrs(const LineHead& head, LineAttrs& attrs);
  bool apply_attrs(const LineHead& head, const LineAttrs& attrs, Node& node);
  bool apply_data(const LineHead& head, const LineAttrs& attrs, Node& node);
  bool apply_digest(const LineHead& head, const LineAttrs& attrs, Node& node);
  bool add_xattrs(std::string_view rest, Node& node);
  bool add_to_tree(std::string_view path, bool is_dir, bool is_hardlink, NodeId& out_node,
                   NodeId& out_dir, std::string_view& out_name);
  bool find_parent(std::string_view prefix, std::string_view path, NodeId& out);
  bool parse_int(std::string_view text, Field f, unsigned base, std::uint64_t& out);
  bool unescape_field(std::string_view text, Field f, std::string& scratch,
                      std::optional<std::string_view>& out, bool optional);
  bool add_xattr(Node& node, std::string_view key, std::string_view value);
  const Entry* find_child(NodeId dir, std::string_view name) const;
  bool insert_child(NodeId dir, std::string_view name, NodeId child, bool hardlink);
  void sort_unsorted_dirs();
  Status resolve_hardlinks();
  Error error_at(std::size_t line, const std::string& msg) const {
    return Error(Errc::kInvalidInput, fmt::format("{}:{}: {}", opts_.source_name, line, msg));
  }

  const ParseOptions& opts_;
  Tree tree_;
  bool have_root_ = false;
  std::size_t line_no_ = 0;
  std::string err_;
  std::vector<HardlinkFixup> fixups_;
  overlay::XattrBudget xattr_budget_;  // of the node being parsed
  // Dumps list siblings together, so the previous line's parent is usually this line's too.
  std::string cached_prefix_;
  NodeId cached_dir_ = kNoNode;
  // Directories whose lines did not come in sorted order, with a name -> child position index.
  // Sorted input (the normal case) only ever appends; unsorted input would otherwise make
  // each insertion shift the whole children vector (quadratic for big directories).
  struct TransparentHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<NodeId,
                     std::unordered_map<std::string, std::size_t, TransparentHash, std::equal_to<>>>
      unsorted_;
  // Reused buffers for fields that contain escapes.
  std::string path_buf_, payload_buf_, content_buf_, digest_buf_, key_buf_, value_buf_;
};

Result<Tree> Parser::run(std::string_view text) {
  std::size_t lines = 0;
  for (const char* p = text.data();
       (p = static_cast<const char*>(std::memchr(
            p, '\n', text.size() - static_cast<std::size_t>(p - text.data())))) != nullptr;
       ++p)
    ++lines;
  tree_.reserve(lines + 1);

  std::string_view rest = text;
  while (!rest.empty()) {
    ++line_no_;
    const void* nl = std::memchr(rest.data(), '\n', rest.size());
    std::string_view line;
    if (nl == nullptr) {
      if (opts_.strict) return tl::unexpected(error_at(line_no_, "Missing trailing newline"));
      line = rest;
      rest = {};
    } else {
      line = split_at(rest, '\n');
    }
    if (!parse_line(line)) return tl::unexpected(error_at(line_no_, err_));
  }
  if (!have_root_) return fail(Errc::kInvalidInput, opts_.source_name + ": No files in dump file");
  sort_unsorted_dirs();
  CFS_TRY(resolve_hardlinks());
  return std::move(tree_);
}

bool Parser::parse_int(std::string_view text, Field f, unsigned base, std::uint64_t& out) {
  auto v = parse_u64(text, base);
  if (!v) {
    err_ = fmt::format("Invalid integer '{}' in {}", text, kFieldNames[f]);
    return false;
  }
  out = *v;
  return true;
}

bool Parser::unescape_field(std::string_view text, Field f, std::string& scratch,
                            std::optional<std::string_view>& out, bool optional) {
  if (optional && text == "-") {
    out.reset();
    return true;
  }
  std::string why;
  out = unescape(text, scratch, &why);
  if (!out) {
    err_ = fmt::format("{} in {}", why, kFieldNames[f]);
    return false;
  }
  return true;
}

bool Parser::find_parent(std::string_view prefix, std::string_view path, NodeId& out) {
  if (cached_dir_ != kNoNode && prefix == cached_prefix_) {
    out = cached_dir_;
    return true;
  }
  NodeId cur = tree_.root();
  bool cur_is_link = false;
  for (std::size_t pos = 0; auto name = next_component(prefix, pos);) {
    // Only directories have children (a pending hardlink entry has none), as upstream.
    const Entry* e = cur_is_link ? nullptr : find_child(cur, *name);
    if (e == nullptr) {
      err_ = fmt::format("Parent directory missing for {}", path);
      return false;
    }
    cur = e->node;
    cur_is_link = e->hardlink;
  }
  if (cur_is_link || !tree_.node(cur).is_dir()) {
    err_ = fmt::format("Parent must be a directory for {}", path);
    return false;
  }
  out = cur;
  cached_prefix_.assign(prefix);
  cached_dir_ = cur;
  return true;
}

bool Parser::add_to_tree(std::string_view path, bool is_dir, bool is_hardlink, NodeId& out_node,
                         NodeId& out_dir, std::string_view& out_name) {
  if (path == "/") {
    if (!is_dir) {
      err_ = "Root must be a directory";
      return false;
    }
    if (have_root_) {
      err_ = "Can't have multiple roots";
      return false;
    }
    have_root_ = true;
    out_node = tree_.root();
    out_dir = tree_.root();
    return true;
  }
  if (!have_root_) {
    err_ = "Root node not present";
    return false;
  }
  // The name is everything after the last '/' (empty for a trailing slash); the prefix is
  // walked skipping empty components, which is what upstream's lookup_parent_path() does.
  std::size_t slash = path.rfind('/');
  std::string_view prefix =
      slash == std::string_view::npos ? std::string_view{} : path.substr(0, slash);
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  NodeId dir;
  if (!find_parent(prefix, path, dir)) return false;
  if (name == "." || name == "..") {
    err_ = fmt::format("Invalid . or .. in path: {}", path);
    return false;
  }
  if (name.empty()) {
    err_ = "Can't add child: empty file name";
    return false;
  }
  if (name.size() > kMaxNameLen) {
    err_ = fmt::format("Can't add child: name longer than {} bytes", kMaxNameLen);
    return false;
  }
  // A pending hardlink entry holds its fixup index until resolve_hardlinks() patches it.
  NodeId child = is_hardlink ? static_cast<NodeId>(fixups_.size()) : tree_.add_node(Node{});
  if (!insert_child(dir, name, child, is_hardlink)) {
    err_ = fmt::format("Path {} already exist", path);
    return false;
  }
  out_node = child;
  out_dir = dir;
  out_name = name;
  return true;
}

const Entry* Parser::find_child(NodeId dir, std::string_view name) const {
  auto u = unsorted_.find(dir);
  if (u == unsorted_.end()) return tree_.find_child(dir, name);
  auto it = u->second.find(name);
  return it == u->second.end() ? nullptr : &tree_.node(dir).children[it->second];
}

bool Parser::insert_child(NodeId dir, std::string_view name, NodeId child, bool hardlink) {
  auto& kids = tree_.node(dir).children;
  auto u = unsorted_.find(dir);
  if (u != unsorted_.end()) {
    if (!u->second.emplace(name, kids.size()).second) return false;
  } else if (!kids.empty() && !(kids.back().name < name)) {
    if (tree_.find_child(dir, name) != nullptr) return false;
    auto& index = unsorted_[dir];
    for (std::size_t i = 0; i < kids.size(); ++i) index.emplace(kids[i].name, i);
    index.emplace(name, kids.size());
  }
  kids.push_back(Entry{std::string(name), child, hardlink});
  if (!hardlink) tree_.node(child).parent = dir;
  return true;
}

void Parser::sort_unsorted_dirs() {
  for (auto& [dir, index] : unsorted_) {
    auto& kids = tree_.node(dir).children;
    std::sort(kids.begin(), kids.end(),
              [](const Entry& a, const Entry& b) { return name_less(a.name, b.name); });
  }
  unsorted_.clear();
}

bool Parser::add_xattr(Node& node, std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > kMaxXattrKeyLen) {
    err_ = fmt::format("Can't set xattr: name length {} not in 1..{}", key.size(), kMaxXattrKeyLen);
    return false;
  }
  if (value.size() > kMaxXattrValueLen) {
    err_ = fmt::format("Can't set xattr {}: value longer than {} bytes", key, kMaxXattrValueLen);
    return false;
  }
  auto it = std::find_if(node.xattrs.begin(), node.xattrs.end(),
                         [&](const Xattr& x) { return x.key == key; });
  std::optional<std::size_t> replaced;
  if (it != node.xattrs.end()) replaced = it->value.size();
  if (!xattr_budget_.set(key.size(), value.size(), replaced)) {
    err_ = fmt::format("Can't set xattr {}: the inode's xattrs exceed {} bytes", key,
                       overlay::XattrBudget::kLimit);
    return false;
  }
  if (it != node.xattrs.end())
    it->value.assign(value);
  else
    node.xattrs.push_back(Xattr{std::string(key), std::string(value)});
  return true;
}

// A line is handled in upstream's order, which decides the error reported first: the syntax
// of PATH and MODE, the entry's place in the tree, then (except for hardlinks) the remaining
// fields, what they mean for the node's type, the digest and the xattrs.
bool Parser::parse_line(std::string_view line) {
  LineHead head;
  if (!parse_head(line, head)) return false;
  NodeId id, dir;
  std::string_view name;
  if (!add_to_tree(head.path, head.type() == S_IFDIR, head.hardlink, id, dir, name)) return false;
  if (head.hardlink) return add_hardlink(head, dir, name);

  LineAttrs attrs;
  if (!parse_attrs(head, attrs)) return false;
  Node& node = tree_.node(id);
  node.mode = head.mode;
  return apply_attrs(head, attrs, node) && apply_data(head, attrs, node) &&
         apply_digest(head, attrs, node) && add_xattrs(head.rest, node);
}

bool Parser::parse_head(std::string_view line, LineHead& head) {
  if (const void* nul = std::memchr(line.data(), '\0', line.size()); nul != nullptr) {
    err_ = fmt::format("Invalid embedded NUL character at position {}",
                       static_cast<const char*>(nul) - line.data());
    return false;
  }
  head.rest = line;
  for (auto& field : head.fields) field = split_at(head.rest, ' ');

  std::optional<std::string_view> path;
  if (!unescape_field(head.fields[kPath], kPath, path_buf_, path, false)) return false;
  head.path = cstr(*path);
  if (head.path.empty()) {
    err_ = "Invalid empty path";
    return false;
  }

  std::string_view mode_text = head.fields[kMode];
  head.hardlink = !mode_text.empty() && mode_text[0] == '@';
  if (head.hardlink) mode_text.remove_prefix(1);
  std::uint64_t mode64;
  if (!parse_int(mode_text, kMode, 8, mode64)) return false;
  // lcfs_node_try_set_mode() takes a uint32_t and validates only the type bits.
  head.mode = static_cast<std::uint32_t>(mode64);
  if (!overlay::is_known_type(head.mode)) {
    err_ = fmt::format("Invalid mode {:o}", head.mode);
    return false;
  }
  return true;
}

// Only PATH, MODE and PAYLOAD are read; the link is resolved after the last line.
bool Parser::add_hardlink(const LineHead& head, NodeId dir, std::string_view name) {
  if (head.type() == S_IFDIR) {
    err_ = "Directories can't be hardlinked";
    return false;
  }
  std::optional<std::string_view> target;
  if (!unescape_field(head.fields[kPayload], kPayload, payload_buf_, target, true)) return false;
  HardlinkFixup fix{dir, std::string(name), std::nullopt, line_no_};
  if (target) fix.target.emplace(cstr(*target));
  fixups_.push_back(std::move(fix));
  return true;
}

bool Parser::parse_attrs(const LineHead& head, LineAttrs& a) {
  const auto& f = head.fields;
  if (!parse_int(f[kSize], kSize, 10, a.size)) return false;
  if (!parse_int(f[kNlink], kNlink, 10, a.nlink)) return false;
  if (!parse_int(f[kUid], kUid, 10, a.uid)) return false;
  // Upstream tests `uid == 0 && err` after GID and RDEV (a typo for gid/rdev): their errors
  // only count for uid 0; otherwise the bad field reads as 0.
  if (!parse_int(f[kGid], kGid, 10, a.gid)) {
    if (a.uid == 0) return false;
    a.gid = 0;
  }
  if (!parse_int(f[kRdev], kRdev, 10, a.rdev)) {
    if (a.uid == 0) return false;
    a.rdev = 0;
  }
  // MTIME is SECONDS.NANOSECONDS, two integers, not a float ("1.5" is 1 s + 5 ns).
  std::string_view mtime_rest = f[kMtime];
  std::string_view sec_text = split_at(mtime_rest, '.');
  if (!parse_int(sec_text, kMtime, 10, a.sec)) return false;
  if (!parse_int(mtime_rest, kMtime, 10, a.nsec)) return false;

  if (!unescape_field(f[kPayload], kPayload, payload_buf_, a.payload, true)) return false;
  if (!unescape_field(f[kContent], kContent, content_buf_, a.content, true)) return false;
  if (a.content && a.content->size() != a.size) {
    err_ = fmt::format("Invalid content size {}, must match size {}", a.content->size(),
                       static_cast<std::int64_t>(a.size));
    return false;
  }
  return unescape_field(f[kDigest], kDigest, digest_buf_, a.digest, true);
}

bool Parser::apply_attrs(const LineHead& head, const LineAttrs& a, Node& node) {
  const std::uint32_t type = head.type();
  if (type != S_IFLNK) node.size = a.size;
  node.nlink = static_cast<std::uint32_t>(a.nlink);
  node.uid = static_cast<std::uint32_t>(a.uid);
  node.gid = static_cast<std::uint32_t>(a.gid);
  if (type == S_IFCHR || type == S_IFBLK) {
    // lcfs_inode_s::st_rdev is 32 bits wide: keep exactly what upstream keeps.
    node.rdev = static_cast<std::uint32_t>(a.rdev);
  } else if (opts_.strict && a.rdev != 0) {
    err_ = "Non-zero devnum on non-device";
    return false;
  }
  node.mtime_sec = static_cast<std::int64_t>(a.sec);
  node.mtime_nsec = static_cast<std::uint32_t>(a.nsec);
  return true;
}

// PAYLOAD and CONTENT: a symlink's target, or a file's object name and inline content.
bool Parser::apply_data(const LineHead& head, const LineAttrs& a, Node& node) {
  if (head.type() == S_IFLNK) {
    std::string_view target = a.payload ? cstr(*a.payload) : std::string_view{};
    if (target.empty() || target.size() >= kPathMax) {
      err_ = target.empty()
                 ? "Invalid symlink: empty target"
                 : fmt::format("Invalid symlink: target longer than {} bytes", kMaxSymlinkLen);
      return false;
    }
    if (opts_.strict) {
      if (a.size != target.size()) {
        err_ = fmt::format("Invalid symlink size {}, must match size {}", target.size(),
                           static_cast<std::int64_t>(a.size));
        return false;
      }
      if (a.content && !a.content->empty()) {
        err_ = "Symlink cannot have content";
        return false;
      }
    }
    node.payload.assign(target);
    node.size = target.size();
    return true;
  }
  std::string_view pl = a.payload ? cstr(*a.payload) : std::string_view{};
  if (pl.size() >= kPathMax) {
    err_ = fmt::format("Invalid payload: longer than {} bytes", kPathMax - 1);
    return false;
  }
  node.payload.assign(pl);
  if (a.content) {
    if (a.content->size() > kMaxInlineContent) {
      err_ = fmt::format("Inline content size {} exceeds maximum {}", a.content->size(),
                         kMaxInlineContent);
      return false;
    }
    // lcfs_node_set_content() stores an empty content as "no content".
    if (!a.content->empty()) node.content.emplace(*a.content);
  }
  if (head.type() == S_IFREG && !node.content && node.size > overlay::kMaxExternalFileSize) {
    err_ = fmt::format("File too large: size {} needs more than 1024 chunks", node.size);
    return false;
  }
  return true;
}

bool Parser::apply_digest(const LineHead& head, const LineAttrs& a, Node& node) {
  if (!a.digest) return true;
  std::string_view hex = cstr(*a.digest);
  if (auto d = parse_digest_field(hex)) {
    node.digest = *d;
  } else if (opts_.strict && head.type() == S_IFREG) {
    // Strict mode rejects anything but a whole digest on a regular file, the only type whose
    // digest reaches the image (a missing DIGEST on other types stays accepted, as upstream's
    // strict assets need).
    err_ = fmt::format("Invalid digest '{}' in DIGEST: must be 64 or 128 hex digits", hex);
    return false;
  } else {
    node.digest = lenient_sha256(hex);
  }
  return true;
}

// The KEY=VALUE fields after DIGEST.
bool Parser::add_xattrs(std::string_view rest, Node& node) {
  // Upstream caps the xattr part because it deduplicates keys quadratically.
  if (rest.size() > kMaxXattrFieldLen) {
    err_ = "Too many xattrs";
    return false;
  }
  xattr_budget_ = {};
  while (!rest.empty()) {
    std::string_view xattr = split_at(rest, ' ');
    const void* eq = std::memchr(xattr.data(), '=', xattr.size());
    if (eq == nullptr) {
      err_ = "Missing = in xattr";
      return false;
    }
    auto klen = static_cast<std::size_t>(static_cast<const char*>(eq) - xattr.data());
    std::string why;
    auto key = unescape(xattr.substr(0, klen), key_buf_, &why);
    if (!key) {
      err_ = why + " in xattr name";
      return false;
    }
    auto value = unescape(xattr.substr(klen + 1), value_buf_, &why);
    if (!value) {
      err_ = why + " in xattr value";
      return false;
    }
    if (!add_xattr(node, cstr(*key), *value)) return false;
  }
  return true;
}

// Walks an absolute or relative path like upstream's lookup_path(): empty components are
// skipped, "" is the root. Sets *fixup when the path names a (pending) hardlink entry.
std::optional<NodeId> lookup_entry(const Tree& tree, std::string_view path, bool* is_fixup) {
  NodeId cur = tree.root();
  *is_fixup = false;
  for (std::size_t pos = 0; auto name = next_component(path, pos);) {
    if (*is_fixup) return std::nullopt;  // a hardlink has no children
    const Entry* e = tree.find_child(cur, *name);
    if (e == nullptr) return std::nullopt;
    cur = e->node;
    *is_fixup = e->hardlink;
  }
  return cur;
}

Status Parser::resolve_hardlinks() {
  enum State : std::uint8_t { kTodo, kActive, kDone };
  std::vector<State> state(fixups_.size(), kTodo);
  std::vector<NodeId> resolved(fixups_.size(), kNoNode);
  std::vector<std::size_t> chain;
  // Upstream resolves its fixup list newest first; do the same so the first error matches.
  for (std::size_t i = fixups_.size(); i-- > 0;) {
    if (state[i] == kDone) continue;
    chain.clear();
    std::size_t j = i;
    NodeId result = kNoNode;
    while (true) {
      if (state[j] == kDone) {
        result = resolved[j];
        break;
      }
      const HardlinkFixup& fix = fixups_[j];
      if (state[j] == kActive)
        return tl::unexpected(
            error_at(fix.line, fmt::format("Hardlink cycle through {}", fix.target.value_or("-"))));
      state[j] = kActive;
      chain.push_back(j);
      if (!fix.target) return tl::unexpected(error_at(fix.line, "No target path for the hardlink"));
      bool is_fixup;
      auto t = lookup_entry(tree_, *fix.target, &is_fixup);
      if (!t)
        return tl::unexpected(
            error_at(fix.line, fmt::format("No target at {} for hardlink", *fix.target)));
      if (!is_fixup) {
        result = *t;
        break;
      }
      if (*t == j)
        return tl::unexpected(
            error_at(fix.line, fmt::format("Self-referential hardlink {}", *fix.target)));
      j = *t;
    }
    if (tree_.node(result).is_dir())
      return tl::unexpected(
          error_at(fixups_[i].line,
                   fmt::format("Hardlink target {} is a directory",
                               fixups_[i].target->empty() ? "'' (the root)" : *fixups_[i].target)));
    for (std::size_t c : chain) {
      resolved[c] = result;
      state[c] = kDone;
    }
  }
  // Entries are patched only now: during resolution entry.node still holds the fixup index.
  for (std::size_t i = 0; i < fixups_.size(); ++i) {
    auto& kids = tree_.node(fixups_[i].dir).children;
    auto it = std::lower_bound(kids.begin(), kids.end(), fixups_[i].name,
                               [](const Entry& e, const std::string& n) { return e.name < n; });
    it->node = resolved[i];
  }
  return {};
}

}  // namespace

Result<Tree> parse(std::string_view text, const ParseOptions& opts) {
  return Parser(opts).run(text);
}

Result<Tree> parse_file(const std::string& path, const ParseOptions& opts) {
  if (path == "-") {
    CFS_ASSIGN(std::string text, sys::read_fd(0, "<stdin>"));
    return parse(text, opts);
  }
  CFS_ASSIGN(struct stat st, sys::stat(path));
  if (S_ISREG(st.st_mode)) {
    CFS_ASSIGN(MappedFile map, MappedFile::open(path));
    auto bytes = map.bytes();
    return parse(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), opts);
  }
  CFS_ASSIGN(std::string text, sys::read_file(path));
  return parse(text, opts);
}

}  // namespace cfs::dump
