// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/upper.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/util/sys.h"

namespace cfs::vfs {
namespace {

constexpr std::string_view kOpaqueXattr = overlay::kOpaque;
constexpr std::string_view kMetacopyXattr = overlay::kMetacopy;
constexpr std::string_view kRedirectXattr = overlay::kRedirect;
constexpr std::uint64_t kUpperInoBit = std::uint64_t{1} << 63;

std::string join(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

std::string parent_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? std::string() : p.substr(0, s);
}

std::vector<std::string> components(const std::string& p) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < p.size()) {
    auto s = p.find('/', pos);
    if (s == std::string::npos) s = p.size();
    out.push_back(p.substr(pos, s - pos));
    pos = s + 1;
  }
  return out;
}

bool is_whiteout(const struct stat& st) { return overlay::is_whiteout(st.st_mode, st.st_rdev); }

Error err(std::string what, int e) { return Error::from_errno(std::move(what), e); }

// lgetxattr: nullopt when absent.
Result<std::optional<std::string>> lget(const std::string& path, std::string_view name) {
  std::string n(name);
  for (;;) {
    ssize_t sz = ::lgetxattr(path.c_str(), n.c_str(), nullptr, 0);
    if (sz < 0) {
      if (errno == ENODATA || errno == ENOTSUP) return std::optional<std::string>();
      return fail_errno("getxattr " + n + " " + path);
    }
    std::string v(static_cast<std::size_t>(sz), '\0');
    ssize_t got = ::lgetxattr(path.c_str(), n.c_str(), v.data(), v.size());
    if (got < 0) {
      if (errno == ERANGE) continue;  // grew meanwhile
      return fail_errno("getxattr " + n + " " + path);
    }
    v.resize(static_cast<std::size_t>(got));
    return std::optional<std::string>(std::move(v));
  }
}

Result<std::vector<std::string>> llist(const std::string& path) {
  for (;;) {
    ssize_t sz = ::llistxattr(path.c_str(), nullptr, 0);
    if (sz < 0) return fail_errno("listxattr " + path);
    std::string buf(static_cast<std::size_t>(sz), '\0');
    ssize_t got = ::llistxattr(path.c_str(), buf.data(), buf.size());
    if (got < 0) {
      if (errno == ERANGE) continue;
      return fail_errno("listxattr " + path);
    }
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < static_cast<std::size_t>(got)) {
      auto end = buf.find('\0', pos);
      if (end == std::string::npos) break;
      if (end > pos) out.push_back(buf.substr(pos, end - pos));
      pos = end + 1;
    }
    return out;
  }
}

Status lset(const std::string& path, const std::string& name, std::string_view value,
            int flags = 0) {
  if (::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), flags) != 0)
    return fail_errno("setxattr " + name + " " + path);
  return {};
}

Status check_sys(int rc, const std::string& what) {
  if (rc != 0) return fail_errno(what);
  return {};
}

Result<std::optional<struct stat>> lstat_opt(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<struct stat>();
    return fail_errno("lstat " + path);
  }
  return std::optional<struct stat>(st);
}

// Owner, mode, xattrs, then times (the other steps would change ctime/mtime otherwise).
Status apply_meta(const std::string& path, const struct stat& st,
                  const std::vector<std::pair<std::string, std::string>>& xattrs) {
  CFS_TRY(check_sys(::lchown(path.c_str(), st.st_uid, st.st_gid), "chown " + path));
  if (!S_ISLNK(st.st_mode))
    CFS_TRY(check_sys(::chmod(path.c_str(), st.st_mode & 07777), "chmod " + path));
  for (const auto& [name, value] : xattrs) CFS_TRY(lset(path, name, value));
  std::array<struct timespec, 2> ts{st.st_atim, st.st_mtim};
  return check_sys(::utimensat(AT_FDCWD, path.c_str(), ts.data(), AT_SYMLINK_NOFOLLOW),
                   "utimens " + path);
}

}  // namespace

struct MergedFs::UpperState {
  std::optional<struct stat> st;
  bool opaque = false;
  bool visible() const { return st && !is_whiteout(*st); }
  bool whiteout() const { return st && is_whiteout(*st); }
  bool is_dir() const { return st && S_ISDIR(st->st_mode); }
};

struct MergedFs::State {
  UpperState u;
  std::optional<struct stat> l;  ///< lower entry at this path not hidden by an ancestor
  bool exists() const { return u.visible() || (!u.st && l); }
  bool merged_dir() const { return u.is_dir() && !u.opaque && l && S_ISDIR(l->st_mode); }
  /// The entry has a lower part (lower-only, or a merged directory).
  bool has_lower() const { return (!u.st && l) || merged_dir(); }
  mode_t type() const {
    if (u.visible()) return u.st->st_mode & S_IFMT;
    return l ? (l->st_mode & S_IFMT) : 0;
  }
};

MergedFs::MergedFs(std::unique_ptr<Filesystem> lower, std::string upper, std::string work)
    : lower_(std::move(lower)), upper_(std::move(upper)), work_(std::move(work)) {
  paths_[kMergedRoot] = "";
  nodes_[""] = kMergedRoot;
}

MergedFs::~MergedFs() = default;

Result<std::unique_ptr<MergedFs>> MergedFs::open(std::unique_ptr<Filesystem> lower,
                                                 const std::string& upperdir,
                                                 const std::string& workdir) {
  CFS_ASSIGN(struct stat ust, sys::stat(upperdir));
  CFS_ASSIGN(struct stat wst, sys::stat(workdir));
  if (!S_ISDIR(ust.st_mode)) return fail_errno("upperdir " + upperdir, ENOTDIR);
  if (!S_ISDIR(wst.st_mode)) return fail_errno("workdir " + workdir, ENOTDIR);
  if (ust.st_dev != wst.st_dev)
    return fail(Errc::kInvalidInput, "upperdir and workdir must be on the same filesystem");
  std::array<char, PATH_MAX> u{}, w{};
  if (!::realpath(upperdir.c_str(), u.data())) return fail_errno("realpath " + upperdir);
  if (!::realpath(workdir.c_str(), w.data())) return fail_errno("realpath " + workdir);
  std::string us(u.data()), ws(w.data());
  if (ws == us || ws.rfind(us + "/", 0) == 0 || us.rfind(ws + "/", 0) == 0)
    return fail(Errc::kInvalidInput, "workdir and upperdir must not contain each other");
  // Our own scratch directory, like overlayfs' "work/work": emptied at mount.
  std::string scratch = ws + "/cfs-work";
  std::error_code ec;
  std::filesystem::remove_all(scratch, ec);
  if (::mkdir(scratch.c_str(), 0700) != 0) return fail_errno("mkdir " + scratch);
  return std::unique_ptr<MergedFs>(new MergedFs(std::move(lower), us, scratch));
}

std::string MergedFs::up(const std::string& p) const {
  return p.empty() ? upper_ : upper_ + "/" + p;
}

Result<MergedFs::UpperState> MergedFs::upper_state(const std::string& p) const {
  UpperState s;
  CFS_ASSIGN(s.st, lstat_opt(up(p)));
  if (s.is_dir()) {
    CFS_ASSIGN(auto v, lget(up(p), kOpaqueXattr));
    s.opaque = v && *v == "y";
  }
  return s;
}

// The lower entry at p, unless an upper ancestor hides it (whiteout, non-directory, opaque).
Result<std::optional<struct stat>> MergedFs::lower_at(const std::string& p) const {
  CFS_ASSIGN(auto root, upper_state(""));
  if (root.opaque && !p.empty()) return std::optional<struct stat>();
  CFS_ASSIGN(struct stat cur, lower_->getattr(lower_->root()));
  std::string prefix;
  auto comps = components(p);
  for (std::size_t i = 0; i < comps.size(); ++i) {
    auto r = lower_->lookup(cur.st_ino, comps[i]);
    if (!r) {
      if (r.error().is_errno(ENOENT) || r.error().is_errno(ENOTDIR))
        return std::optional<struct stat>();
      return tl::unexpected(r.error());
    }
    cur = *r;
    prefix = join(prefix, comps[i]);
    if (i + 1 == comps.size()) break;
    if (!S_ISDIR(cur.st_mode)) return std::optional<struct stat>();
    CFS_ASSIGN(auto u, upper_state(prefix));
    if (u.st && (!u.is_dir() || u.opaque)) return std::optional<struct stat>();
  }
  return std::optional<struct stat>(cur);
}

// The lower entry at p, ignoring the upper layer (for redirects: the kernel resolves them in
// the lower layers only).
Result<std::optional<struct stat>> MergedFs::lower_raw(const std::string& p) const {
  CFS_ASSIGN(struct stat cur, lower_->getattr(lower_->root()));
  for (const auto& c : components(p)) {
    auto r = lower_->lookup(cur.st_ino, c);
    if (!r) {
      if (r.error().is_errno(ENOENT) || r.error().is_errno(ENOTDIR))
        return std::optional<struct stat>();
      return tl::unexpected(r.error());
    }
    cur = *r;
  }
  return std::optional<struct stat>(cur);
}

Result<MergedFs::State> MergedFs::state(const std::string& p) const {
  State s;
  CFS_ASSIGN(s.u, upper_state(p));
  // Also under an upper non-directory: unlink and rename need to know whether to leave a
  // whiteout, and a copied-up file keeps its lower inode number.
  CFS_ASSIGN(s.l, lower_at(p));
  return s;
}

// Lower path an upper metacopy file takes its data from: its redirect, or its own path.
Result<std::string> MergedFs::origin_of(const std::string& p) const {
  CFS_ASSIGN(auto r, lget(up(p), kRedirectXattr));
  if (!r) return p;
  if (r->empty() || (*r)[0] != '/') return fail(err("relative redirect in upper " + p, EIO));
  auto rel = r->substr(1);
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  return rel;
}

Result<struct stat> MergedFs::stat_of(const std::string& p, const State& s) const {
  if (!s.exists()) return fail(err("lookup " + p, ENOENT));
  if (!s.u.visible()) return *s.l;
  struct stat st = *s.u.st;
  const auto type = st.st_mode & S_IFMT;
  std::optional<struct stat> origin;
  if (S_ISREG(st.st_mode)) {
    CFS_ASSIGN(auto mc, lget(up(p), kMetacopyXattr));
    if (mc) {
      CFS_ASSIGN(std::string o, origin_of(p));
      CFS_ASSIGN(origin, lower_raw(o));
      if (!origin) return fail(err(p + ": metacopy with no lower data", EIO));
    }
  }
  if (!origin && s.l && (s.l->st_mode & S_IFMT) == type && (type != S_IFDIR || s.merged_dir()))
    origin = s.l;
  st.st_ino = origin ? origin->st_ino : (st.st_ino | kUpperInoBit);
  return st;
}

MergedNode MergedFs::node_for(const std::string& p) {
  auto [it, added] = nodes_.try_emplace(p, next_node_);
  if (added) paths_[next_node_++] = p;
  return it->second;
}

Result<std::string> MergedFs::path_of(MergedNode n) const {
  auto it = paths_.find(n);
  if (it == paths_.end()) return fail(err("node " + std::to_string(n), ESTALE));
  return it->second;
}

void MergedFs::forget_path(const std::string& p) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    const auto& k = it->first;
    if (k == p || (k.size() > p.size() && k.compare(0, p.size(), p) == 0 && k[p.size()] == '/')) {
      paths_.erase(it->second);
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
}

void MergedFs::move_path(const std::string& from, const std::string& to) {
  forget_path(to);
  std::vector<std::pair<std::string, MergedNode>> moved;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    const auto& k = it->first;
    if (k == from ||
        (k.size() > from.size() && k.compare(0, from.size(), from) == 0 && k[from.size()] == '/')) {
      moved.emplace_back(to + k.substr(from.size()), it->second);
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [p, n] : moved) {
    paths_[n] = p;
    nodes_[p] = n;
  }
}

Result<std::string> MergedFs::child(MergedNode parent, std::string_view name) const {
  if (name.empty() || name.size() > 255 || name == "." || name == ".." ||
      name.find('/') != std::string_view::npos)
    return fail(err("bad name", EINVAL));
  CFS_ASSIGN(std::string dir, path_of(parent));
  return join(dir, name);
}

std::string MergedFs::temp_path() { return work_ + "/#" + std::to_string(next_temp_++); }

Result<struct stat> MergedFs::getattr(MergedNode n) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_ASSIGN(State s, state(p));
  return stat_of(p, s);
}

Result<MergedEntry> MergedFs::lookup(MergedNode parent, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string dir, path_of(parent));
  CFS_ASSIGN(State ds, state(dir));
  if (!ds.exists()) return fail(err("lookup", ENOENT));
  if (ds.type() != S_IFDIR) return fail(err("lookup", ENOTDIR));
  if (name.empty() || name.size() > 255 || name == "." || name == "..")
    return fail(err("lookup", ENOENT));
  std::string p = join(dir, name);
  CFS_ASSIGN(State s, state(p));
  CFS_ASSIGN(struct stat st, stat_of(p, s));
  return MergedEntry{node_for(p), st};
}

Result<std::string> MergedFs::readlink(MergedNode n) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("readlink", ENOENT));
  if (s.type() != S_IFLNK) return fail(err("readlink", EINVAL));
  if (s.u.visible()) return sys::readlinkat(AT_FDCWD, up(p));
  return lower_->readlink(s.l->st_ino);
}

Result<std::vector<MergedDirent>> MergedFs::list_path(const std::string& p) const {
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("readdir", ENOENT));
  if (s.type() != S_IFDIR) return fail(err("readdir", ENOTDIR));
  std::vector<MergedDirent> out;
  CFS_ASSIGN(struct stat self, stat_of(p, s));
  out.push_back({".", self});
  out.push_back({"..", self});
  std::set<std::string> seen;
  if (s.u.visible()) {
    std::vector<std::string> names;
    {
      DIR* d = ::opendir(up(p).c_str());
      if (!d) return fail_errno("opendir " + up(p));
      while (const dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
      }
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      seen.insert(n);
      std::string cp = join(p, n);
      CFS_ASSIGN(State cs, state(cp));
      if (!cs.exists()) continue;  // whiteout
      auto st = stat_of(cp, cs);
      if (!st) return tl::unexpected(st.error());
      out.push_back({n, *st});
    }
  }
  if (s.has_lower()) {
    Status inner;
    CFS_TRY(lower_->readdir(s.l->st_ino, 0, [&](const DirItem& d) {
      if (d.name == "." || d.name == ".." || seen.count(std::string(d.name))) return true;
      auto st = lower_->getattr(d.ino);
      if (!st) {
        inner = tl::unexpected(st.error());
        return false;
      }
      out.push_back({std::string(d.name), *st});
      return true;
    }));
    CFS_TRY(inner);
  }
  return out;
}

Result<std::vector<MergedDirent>> MergedFs::list_dir(MergedNode n) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  return list_path(p);
}

Result<std::vector<std::string>> MergedFs::listxattr(MergedNode n) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("listxattr", ENOENT));
  if (!s.u.visible()) return lower_->listxattr(s.l->st_ino);
  CFS_ASSIGN(auto raw, llist(up(p)));
  std::vector<std::string> out;
  for (const auto& r : raw)
    if (auto v = overlay::visible_name(r)) out.push_back(std::move(*v));
  return out;
}

Result<std::string> MergedFs::getxattr(MergedNode n, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("getxattr", ENOENT));
  if (!s.u.visible()) return lower_->getxattr(s.l->st_ino, name);
  const std::string raw = overlay::raw_name(name);
  CFS_ASSIGN(auto v, lget(up(p), raw));
  if (!v) return fail(err("getxattr", ENODATA));
  return *v;
}

Status MergedFs::setxattr(MergedNode n, std::string_view name, std::string_view value, int flags) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  const std::string raw = overlay::raw_name(name);
  CFS_TRY(copy_up(p, false));
  return lset(up(p), raw, value, flags);
}

Status MergedFs::removexattr(MergedNode n, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  const std::string raw = overlay::raw_name(name);
  CFS_TRY(copy_up(p, false));
  return check_sys(::lremovexattr(up(p).c_str(), raw.c_str()), "removexattr " + raw);
}

Status MergedFs::copy_up_parents(const std::string& p) {
  std::string prefix;
  for (const auto& c : components(parent_of(p))) {
    prefix = join(prefix, c);
    CFS_TRY(copy_up(prefix, false));
  }
  return {};
}

// Brings p into the upper layer: metadata only for regular files unless `data`; a no-op for
// entries already there (except a metacopy file when data is wanted).
Status MergedFs::copy_up(const std::string& p, bool data) {
  if (p.empty()) return {};
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("copy-up " + p, ENOENT));
  if (s.u.visible()) {
    if (data && S_ISREG(s.u.st->st_mode)) {
      CFS_ASSIGN(auto mc, lget(up(p), kMetacopyXattr));
      if (mc) return copy_data_up(p);
    }
    return {};
  }
  CFS_TRY(copy_up_parents(p));
  return copy_up_lower(p, *s.l, data);
}

Status MergedFs::copy_up_lower(const std::string& p, const struct stat& lst, bool data) {
  const Ino nid = lst.st_ino;
  // Visible xattrs are copied in their stored (escaped) form; private ones never are.
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::string metacopy_value;
  bool has_metacopy = false;
  {
    CFS_ASSIGN(auto xs, lower_->image().xattrs(nid));
    for (auto& x : xs) {
      if (x.name == kMetacopyXattr) {
        has_metacopy = true;
        metacopy_value = x.value;
      }
      if (overlay::visible_name(x.name)) xattrs.emplace_back(x.name, x.value);
    }
  }
  std::string tmp = temp_path();
  switch (lst.st_mode & S_IFMT) {
    case S_IFDIR:
      CFS_TRY(check_sys(::mkdir(tmp.c_str(), 0700), "mkdir " + tmp));
      break;
    case S_IFLNK: {
      CFS_ASSIGN(std::string target, lower_->readlink(nid));
      CFS_TRY(check_sys(::symlink(target.c_str(), tmp.c_str()), "symlink " + tmp));
      break;
    }
    case S_IFREG: {
      // The kernel verifies the lower data before any copy-up (ovl_verify_lowerdata).
      CFS_ASSIGN(auto f, lower_->open_file(nid, O_RDONLY));
      std::string mc_value;  // empty: a metacopy without digest
      bool meta_only = !data;
      if (meta_only && lower_->options().verity != VerityMode::kOff) {
        std::optional<overlay::Metacopy> m;
        if (has_metacopy) {
          CFS_ASSIGN(overlay::Metacopy parsed, overlay::Metacopy::decode(metacopy_value));
          m = parsed;
        }
        if (m && m->has_digest() && f->verified()) {
          mc_value = overlay::Metacopy::encode(*m->digest).view();
        } else if (lower_->options().verity == VerityMode::kRequire) {
          meta_only = false;  // no digest to record: the kernel copies the data instead
        }
      }
      CFS_ASSIGN(UniqueFd fd, sys::open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (meta_only) {
        xattrs.emplace_back(std::string(kMetacopyXattr), mc_value);
        xattrs.emplace_back(std::string(kRedirectXattr), "/" + p);
      } else {
        ReadBuffer buf;
        std::uint64_t off = 0;
        for (;;) {
          CFS_ASSIGN(auto chunk, lower_->read(*f, off, 1u << 20, buf));
          if (chunk.empty()) break;
          CFS_TRY(sys::pwrite_all(fd.get(), chunk, off));
          off += chunk.size();
        }
      }
      CFS_TRY(check_sys(::ftruncate(fd.get(), lst.st_size), "truncate " + tmp));
      break;
    }
    default:
      CFS_TRY(check_sys(::mknod(tmp.c_str(), lst.st_mode & S_IFMT, lst.st_rdev), "mknod " + tmp));
      break;
  }
  auto st = apply_meta(tmp, lst, xattrs);
  if (st) st = sys::renameat(AT_FDCWD, tmp, AT_FDCWD, up(p));
  if (!st) {
    if (S_ISDIR(lst.st_mode))
      ::rmdir(tmp.c_str());
    else
      ::unlink(tmp.c_str());
  }
  return st;
}

// Data copy-up of an upper metacopy file: the verified lower data, the upper's metadata.
Status MergedFs::copy_data_up(const std::string& p) {
  CFS_ASSIGN(std::string origin, origin_of(p));
  CFS_ASSIGN(auto lst, lower_raw(origin));
  if (!lst || !S_ISREG(lst->st_mode)) return fail(err(p + ": metacopy with no lower data", EIO));
  CFS_ASSIGN(auto f, lower_->open_file(lst->st_ino, O_RDONLY));
  CFS_ASSIGN(struct stat ust, sys::lstat(up(p)));
  std::vector<std::pair<std::string, std::string>> xattrs;
  CFS_ASSIGN(auto names, llist(up(p)));
  for (const auto& n : names) {
    if (n == kMetacopyXattr || n == kRedirectXattr) continue;
    CFS_ASSIGN(auto v, lget(up(p), n));
    if (v) xattrs.emplace_back(n, *v);
  }
  std::string tmp = temp_path();
  CFS_ASSIGN(UniqueFd fd, sys::open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ReadBuffer buf;
  std::uint64_t off = 0;
  auto st = [&]() -> Status {
    for (;;) {
      CFS_ASSIGN(auto chunk, lower_->read(*f, off, 1u << 20, buf));
      if (chunk.empty()) break;
      CFS_TRY(sys::pwrite_all(fd.get(), chunk, off));
      off += chunk.size();
    }
    CFS_TRY(check_sys(::ftruncate(fd.get(), ust.st_size), "truncate " + tmp));
    CFS_TRY(apply_meta(tmp, ust, xattrs));
    return sys::renameat(AT_FDCWD, tmp, AT_FDCWD, up(p));
  }();
  if (!st) ::unlink(tmp.c_str());
  return st;
}

Result<struct stat> MergedFs::setattr(MergedNode n, const SetAttr& a, const MergedFile* f) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  if (a.size) {
    if (f && f->writable()) {
      CFS_TRY(check_sys(::ftruncate(f->upper_fd(), static_cast<off_t>(*a.size)), "truncate"));
    } else {
      CFS_ASSIGN(State s, state(p));
      if (s.type() == S_IFDIR) return fail(err("truncate", EISDIR));
      CFS_TRY(copy_up(p, true));
      CFS_TRY(check_sys(::truncate(up(p).c_str(), static_cast<off_t>(*a.size)), "truncate"));
    }
  }
  if (a.mode || a.uid || a.gid || a.atime || a.mtime) CFS_TRY(copy_up(p, false));
  const std::string u = up(p);
  if (a.mode) CFS_TRY(check_sys(::chmod(u.c_str(), *a.mode & 07777), "chmod " + p));
  if (a.uid || a.gid) {
    CFS_TRY(check_sys(::lchown(u.c_str(), a.uid ? *a.uid : static_cast<uid_t>(-1),
                               a.gid ? *a.gid : static_cast<gid_t>(-1)),
                      "chown " + p));
  }
  if (a.atime || a.mtime) {
    std::array<struct timespec, 2> ts{};
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_nsec = UTIME_OMIT;
    if (a.atime) ts[0] = *a.atime;
    if (a.mtime) ts[1] = *a.mtime;
    CFS_TRY(check_sys(::utimensat(AT_FDCWD, u.c_str(), ts.data(), AT_SYMLINK_NOFOLLOW),
                      "utimens " + p));
  }
  CFS_ASSIGN(State s, state(p));
  return stat_of(p, s);
}

// Before creating p: the name must be free in the merged view; parents are copied up and a
// whiteout in its place is removed.
Status MergedFs::prepare_new(const std::string& p) {
  CFS_ASSIGN(State s, state(p));
  if (s.exists()) return fail(err(p, EEXIST));
  CFS_TRY(copy_up_parents(p));
  if (s.u.whiteout()) CFS_TRY(check_sys(::unlink(up(p).c_str()), "unlink whiteout " + p));
  return {};
}

Result<MergedEntry> MergedFs::finish_new(const std::string& p, Caller c, bool is_dir) {
  const std::string u = up(p);
  // The server creates as root; the caller becomes the owner. In a set-group-ID directory the
  // group was already inherited from it, as it would be for the caller.
  CFS_ASSIGN(struct stat dir, sys::lstat(up(parent_of(p))));
  const gid_t gid = (dir.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : c.gid;
  CFS_TRY(check_sys(::lchown(u.c_str(), c.uid, gid), "chown " + p));
  if (is_dir) {
    // A new directory where the lower has one would merge with it: make it opaque (the
    // kernel does the same when a directory replaces a whiteout).
    CFS_ASSIGN(auto l, lower_at(p));
    if (l) CFS_TRY(lset(u, std::string(kOpaqueXattr), "y"));
  }
  CFS_ASSIGN(State s, state(p));
  CFS_ASSIGN(struct stat st, stat_of(p, s));
  return MergedEntry{node_for(p), st};
}

Result<MergedEntry> MergedFs::mknod(MergedNode parent, std::string_view name, mode_t mode,
                                    dev_t rdev, Caller c) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  // A 0/0 chardev would read back as a whiteout.
  if (S_ISCHR(mode) && rdev == 0) return fail(err("mknod", EPERM));
  CFS_TRY(prepare_new(p));
  CFS_TRY(check_sys(::mknod(up(p).c_str(), mode, rdev), "mknod " + p));
  return finish_new(p, c, false);
}

Result<MergedEntry> MergedFs::mkdir(MergedNode parent, std::string_view name, mode_t mode,
                                    Caller c) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_TRY(prepare_new(p));
  CFS_TRY(check_sys(::mkdir(up(p).c_str(), mode & 07777), "mkdir " + p));
  return finish_new(p, c, true);
}

Result<MergedEntry> MergedFs::symlink(MergedNode parent, std::string_view name,
                                      const std::string& target, Caller c) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_TRY(prepare_new(p));
  CFS_TRY(check_sys(::symlink(target.c_str(), up(p).c_str()), "symlink " + p));
  return finish_new(p, c, false);
}

Result<MergedEntry> MergedFs::link(MergedNode n, MergedNode parent, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string src, path_of(n));
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_ASSIGN(State ss, state(src));
  if (ss.type() == S_IFDIR) return fail(err("link", EPERM));
  CFS_TRY(copy_up(src, false));
  CFS_TRY(prepare_new(p));
  CFS_TRY(check_sys(::link(up(src).c_str(), up(p).c_str()), "link " + p));
  CFS_ASSIGN(State s, state(p));
  CFS_ASSIGN(struct stat st, stat_of(p, s));
  return MergedEntry{node_for(p), st};
}

Result<MergedEntry> MergedFs::create(MergedNode parent, std::string_view name, mode_t mode,
                                     int flags, Caller c, std::unique_ptr<MergedFile>& out) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_TRY(prepare_new(p));
  auto f = std::make_unique<MergedFile>();
  int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_CREAT | O_EXCL | O_CLOEXEC;
  CFS_ASSIGN(f->upper_, sys::open(up(p), oflags, mode & 07777));
  f->writable_ = (flags & O_ACCMODE) != O_RDONLY;
  CFS_ASSIGN(MergedEntry e, finish_new(p, c, false));
  out = std::move(f);
  return e;
}

Status MergedFs::unlink(MergedNode parent, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("unlink", ENOENT));
  if (s.type() == S_IFDIR) return fail(err("unlink", EISDIR));
  CFS_TRY(copy_up_parents(p));
  if (s.u.visible()) CFS_TRY(check_sys(::unlink(up(p).c_str()), "unlink " + p));
  if (s.l) CFS_TRY(check_sys(::mknod(up(p).c_str(), S_IFCHR, makedev(0, 0)), "whiteout " + p));
  forget_path(p);
  return {};
}

Status MergedFs::rmdir(MergedNode parent, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("rmdir", ENOENT));
  if (s.type() != S_IFDIR) return fail(err("rmdir", ENOTDIR));
  CFS_ASSIGN(auto entries, list_path(p));
  if (entries.size() > 2) return fail(err("rmdir", ENOTEMPTY));
  CFS_TRY(copy_up_parents(p));
  if (s.u.visible()) {
    // Only whiteouts can be left in an upper directory that looks empty.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(up(p), ec))
      CFS_TRY(check_sys(::unlink(e.path().c_str()), "unlink " + e.path().string()));
    if (ec) return fail(err("readdir " + p, ec.value()));
    CFS_TRY(check_sys(::rmdir(up(p).c_str()), "rmdir " + p));
  }
  if (s.l) CFS_TRY(check_sys(::mknod(up(p).c_str(), S_IFCHR, makedev(0, 0)), "whiteout " + p));
  forget_path(p);
  return {};
}

Status MergedFs::rename(MergedNode parent, std::string_view name, MergedNode newparent,
                        std::string_view newname, unsigned flags) {
  std::lock_guard lock(mu_);
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return fail(err("rename", EINVAL));
  CFS_ASSIGN(std::string from, child(parent, name));
  CFS_ASSIGN(std::string to, child(newparent, newname));
  if (from == to) return {};
  if (to.rfind(from + "/", 0) == 0) return fail(err("rename", EINVAL));
  CFS_ASSIGN(State s, state(from));
  if (!s.exists()) return fail(err("rename", ENOENT));
  const bool is_dir = s.type() == S_IFDIR;
  // Without redirect_dir on the upper, a directory with a lower part cannot move.
  if (is_dir && s.has_lower()) return fail(err("rename " + from, EXDEV));
  CFS_ASSIGN(State t, state(to));
  if (t.exists()) {
    if (flags & RENAME_NOREPLACE) return fail(err("rename", EEXIST));
    const bool t_dir = t.type() == S_IFDIR;
    if (is_dir && !t_dir) return fail(err("rename", ENOTDIR));
    if (!is_dir && t_dir) return fail(err("rename", EISDIR));
    if (t_dir) {
      CFS_ASSIGN(auto entries, list_path(to));
      if (entries.size() > 2) return fail(err("rename", ENOTEMPTY));
    }
  }
  CFS_TRY(copy_up(from, false));
  CFS_TRY(copy_up_parents(to));
  if (t.u.st) {
    if (t.u.is_dir()) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(up(to), ec))
        CFS_TRY(check_sys(::unlink(e.path().c_str()), "unlink " + e.path().string()));
    }
    if (t.u.whiteout() && is_dir) CFS_TRY(check_sys(::unlink(up(to).c_str()), "unlink " + to));
  }
  CFS_TRY(sys::renameat(AT_FDCWD, up(from), AT_FDCWD, up(to)));
  // The old name must stay hidden if the lower has it.
  if (s.l)
    CFS_TRY(check_sys(::mknod(up(from).c_str(), S_IFCHR, makedev(0, 0)), "whiteout " + from));
  if (is_dir) {
    CFS_ASSIGN(auto l, lower_at(to));
    if (l) CFS_TRY(lset(up(to), std::string(kOpaqueXattr), "y"));
  }
  move_path(from, to);
  return {};
}

Result<std::unique_ptr<MergedFile>> MergedFs::open(MergedNode n, int flags) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("open", ENOENT));
  if (s.type() == S_IFDIR) return fail(err("open", EISDIR));
  const bool write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  auto f = std::make_unique<MergedFile>();
  if (write) {
    CFS_TRY(copy_up(p, true));
    int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_CLOEXEC | O_NOFOLLOW;
    CFS_ASSIGN(f->upper_, sys::open(up(p), oflags));
    f->writable_ = (flags & O_ACCMODE) != O_RDONLY;
    return f;
  }
  if (s.u.visible()) {
    CFS_ASSIGN(auto mc, lget(up(p), kMetacopyXattr));
    if (mc) {
      CFS_ASSIGN(std::string origin, origin_of(p));
      CFS_ASSIGN(auto lst, lower_raw(origin));
      if (!lst) return fail(err(p + ": metacopy with no lower data", EIO));
      CFS_ASSIGN(f->lower_, lower_->open_file(lst->st_ino, O_RDONLY));
      // The upper's digest must be the one the data was verified against.
      if (lower_->options().verity != VerityMode::kOff && mc->size() > 4) {
        CFS_ASSIGN(auto xs, lower_->image().xattrs(lst->st_ino));
        auto it = std::find_if(xs.begin(), xs.end(),
                               [](const auto& x) { return x.name == kMetacopyXattr; });
        CFS_ASSIGN(overlay::Metacopy mine, overlay::Metacopy::decode(*mc));
        if (it == xs.end()) return fail(err(p + ": digest of lower data unknown", EIO));
        CFS_ASSIGN(overlay::Metacopy theirs, overlay::Metacopy::decode(it->value));
        if (mine.digest != theirs.digest)
          return fail(err(p + ": upper metacopy digest differs from the image's", EIO));
      }
      return f;
    }
    int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_CLOEXEC | O_NOFOLLOW;
    CFS_ASSIGN(f->upper_, sys::open(up(p), oflags));
    return f;
  }
  CFS_ASSIGN(f->lower_, lower_->open_file(s.l->st_ino, flags));
  return f;
}

Result<std::span<const std::byte>> MergedFs::read(const MergedFile& f, std::uint64_t off,
                                                  std::size_t len, ReadBuffer& buf) const {
  if (f.lower_) return lower_->read(*f.lower_, off, len, buf);
  auto out = buf.get(len);
  CFS_ASSIGN(std::size_t n, sys::pread_full(f.upper_.get(), out, off));
  return std::span<const std::byte>(out.data(), n);
}

Result<std::size_t> MergedFs::write(const MergedFile& f, std::span<const std::byte> data,
                                    std::uint64_t off) const {
  if (!f.writable()) return fail(err("write", EBADF));
  CFS_TRY(sys::pwrite_all(f.upper_.get(), data, off));
  return data.size();
}

Result<struct statvfs> MergedFs::statfs() const {
  struct statvfs sv;
  if (::statvfs(upper_.c_str(), &sv) != 0) return fail_errno("statfs " + upper_);
  return sv;
}

}  // namespace cfs::vfs
