// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/upper.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>

#include "cfs/overlay/limits.h"
#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"

namespace cfs::vfs {
namespace {

constexpr std::uint64_t kUpperInoBit = std::uint64_t{1} << 63;
/// Value of `trusted.overlay.opaque` that hides every lower child of an upper directory.
constexpr std::string_view kOpaqueValue = overlay::kRootOpaqueValue;
/// Our scratch directory inside the workdir, like overlayfs' "work/work": emptied at mount.
constexpr const char* kScratch = "cfs-work";

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

/// The name of a merged path for *at() calls on the upper directory ("." for its root).
std::string at(const std::string& p) { return p.empty() ? "." : p; }

bool is_whiteout(const struct stat& st) { return overlay::is_whiteout(st.st_mode, st.st_rdev); }

Error err(std::string what, int e) { return Error::from_errno(std::move(what), e); }

// Owner, mode, xattrs, then times (the other steps would change ctime/mtime otherwise).
Status apply_meta(int dirfd, const std::string& name, const struct stat& st,
                  const std::vector<std::pair<std::string, std::string>>& xattrs) {
  CFS_TRY(sys::fchownat(dirfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW));
  if (!S_ISLNK(st.st_mode)) CFS_TRY(sys::fchmodat(dirfd, name, st.st_mode & 07777));
  for (const auto& [key, value] : xattrs)
    CFS_TRY(sys::set_xattr_at(dirfd, name, key, value, 0, name));
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  return sys::utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW);
}

// Copies the (verified) data of an open lower file into fd.
Status copy_lower_data(const Filesystem& lower, const OpenFile& f, int fd) {
  ReadBuffer buf;
  std::uint64_t off = 0;
  for (;;) {
    CFS_ASSIGN(auto chunk, lower.read(f, off, 1u << 20, buf));
    if (chunk.empty()) return {};
    CFS_TRY(sys::pwrite_all(fd, chunk, off));
    off += chunk.size();
  }
}

// True when the directory `fd` is `top` or below it, found by walking ".." up to the root
// (no path strings: bind mounts and symlinked names cannot fool it).
Result<bool> is_within(int fd, const struct stat& top) {
  CFS_ASSIGN(struct stat st, sys::fstat(fd));
  UniqueFd cur;
  int cur_fd = fd;
  for (;;) {
    if (st.st_dev == top.st_dev && st.st_ino == top.st_ino) return true;
    CFS_ASSIGN(UniqueFd parent, sys::openat(cur_fd, "..", O_PATH | O_DIRECTORY));
    CFS_ASSIGN(struct stat pst, sys::fstat(parent.get()));
    if (pst.st_dev == st.st_dev && pst.st_ino == st.st_ino) return false;  // the root
    cur = std::move(parent);
    cur_fd = cur.get();
    st = pst;
  }
}

Result<UniqueFd> open_dir(const std::string& path, const char* what) {
  auto fd = sys::open(path, O_PATH | O_DIRECTORY);
  if (!fd) return fail(std::move(fd).error().with_context(std::string(what) + " " + path));
  return fd;
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

MergedFs::MergedFs(std::unique_ptr<Filesystem> lower, UniqueFd upper, UniqueFd work)
    : lower_(std::move(lower)), upper_(std::move(upper)), work_(std::move(work)) {}

MergedFs::~MergedFs() = default;

Result<std::unique_ptr<MergedFs>> MergedFs::open(std::unique_ptr<Filesystem> lower,
                                                 const std::string& upperdir,
                                                 const std::string& workdir) {
  CFS_ASSIGN(UniqueFd upper, open_dir(upperdir, "upperdir"));
  CFS_ASSIGN(UniqueFd work, open_dir(workdir, "workdir"));
  CFS_ASSIGN(struct stat ust, sys::fstat(upper.get(), upperdir));
  CFS_ASSIGN(struct stat wst, sys::fstat(work.get(), workdir));
  if (ust.st_dev != wst.st_dev)
    return fail(Errc::kInvalidInput, "upperdir and workdir must be on the same filesystem");
  CFS_ASSIGN(bool work_in_upper, is_within(work.get(), ust));
  CFS_ASSIGN(bool upper_in_work, is_within(upper.get(), wst));
  if (work_in_upper || upper_in_work)
    return fail(Errc::kInvalidInput, "workdir and upperdir must not contain each other");
  CFS_TRY(sys::remove_tree_at(work.get(), kScratch));
  CFS_TRY(sys::mkdirat(work.get(), kScratch, 0700));
  CFS_ASSIGN(UniqueFd scratch,
             sys::openat(work.get(), kScratch, O_PATH | O_DIRECTORY | O_NOFOLLOW));
  return std::unique_ptr<MergedFs>(
      new MergedFs(std::move(lower), std::move(upper), std::move(scratch)));
}

Result<std::optional<std::string>> MergedFs::upper_xattr(const std::string& p,
                                                         std::string_view key) const {
  return sys::find_xattr_at(upper_.get(), at(p), std::string(key), at(p));
}

Result<MergedFs::UpperState> MergedFs::upper_state(const std::string& p) const {
  UpperState s;
  CFS_ASSIGN(s.st, sys::fstatat_if_exists(upper_.get(), at(p), AT_SYMLINK_NOFOLLOW));
  if (s.is_dir()) {
    CFS_ASSIGN(auto v, upper_xattr(p, overlay::kOpaque));
    s.opaque = v && *v == kOpaqueValue;
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
  CFS_ASSIGN(auto r, upper_xattr(p, overlay::kRedirect));
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
    CFS_ASSIGN(auto mc, upper_xattr(p, overlay::kMetacopy));
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

Result<std::string> MergedFs::path_of(MergedNode n) const { return nodes_.path(n); }

std::size_t MergedFs::node_count() const {
  std::lock_guard lock(mu_);
  return nodes_.size();
}

void MergedFs::forget(MergedNode n, std::uint64_t nlookup) {
  std::lock_guard lock(mu_);
  nodes_.forget(n, nlookup);
}

Result<std::string> MergedFs::child(MergedNode parent, std::string_view name) const {
  if (name.empty() || name.size() > overlay::kMaxNameLen || name == "." || name == ".." ||
      name.find('/') != std::string_view::npos)
    return fail(err("bad name", EINVAL));
  CFS_ASSIGN(std::string dir, path_of(parent));
  return join(dir, name);
}

// The kernel gets parent/name (at merged path p) as an entry: one lookup on its node.
Result<MergedEntry> MergedFs::entry(MergedNode parent, std::string_view name,
                                    const std::string& p) {
  CFS_ASSIGN(State s, state(p));
  CFS_ASSIGN(struct stat st, stat_of(p, s));
  return MergedEntry{nodes_.lookup(parent, name), st};
}

std::string MergedFs::temp_name() {
  // Appended, not `"#" + std::to_string(...)`: GCC 12 at -O3 takes that insert at position 0
  // for an overlapping memcpy (-Werror=restrict, a false positive; see repo/names.cc).
  std::string name = "#";
  name += std::to_string(next_temp_++);
  return name;
}

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
  if (name.empty() || name.size() > overlay::kMaxNameLen || name == "." || name == "..")
    return fail(err("lookup", ENOENT));
  return entry(parent, name, join(dir, name));
}

Result<std::string> MergedFs::readlink(MergedNode n) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("readlink", ENOENT));
  if (s.type() != S_IFLNK) return fail(err("readlink", EINVAL));
  if (s.u.visible()) return sys::readlinkat(upper_.get(), p);
  return lower_->readlink(s.l->st_ino);
}

Result<std::vector<MergedDirent>> MergedFs::list_path(const std::string& p) const {
  CFS_ASSIGN(State s, state(p));
  if (!s.exists()) return fail(err("readdir", ENOENT));
  if (s.type() != S_IFDIR) return fail(err("readdir", ENOTDIR));
  std::vector<MergedDirent> out;
  CFS_ASSIGN(struct stat self, stat_of(p, s));
  out.push_back({".", self.st_ino, S_IFDIR});
  out.push_back({"..", self.st_ino, S_IFDIR});
  std::vector<std::string> upper_names;  // sorted: hides the lower entries of the same name
  if (s.u.visible()) {
    CFS_ASSIGN(upper_names, sys::read_dir_names(upper_.get(), at(p)));
    std::sort(upper_names.begin(), upper_names.end());
    for (const auto& n : upper_names) {
      std::string cp = join(p, n);
      CFS_ASSIGN(State cs, state(cp));
      if (!cs.exists()) continue;  // whiteout
      CFS_ASSIGN(struct stat st, stat_of(cp, cs));
      out.push_back({n, static_cast<std::uint64_t>(st.st_ino), st.st_mode & S_IFMT});
    }
  }
  if (s.has_lower()) {
    Status inner;
    CFS_TRY(lower_->readdir(s.l->st_ino, 0, [&](const DirItem& d) {
      if (d.name == "." || d.name == ".." ||
          std::binary_search(upper_names.begin(), upper_names.end(), d.name))
        return true;
      auto st = lower_->getattr(d.ino);
      if (!st) {
        inner = tl::unexpected(st.error());
        return false;
      }
      out.push_back({std::string(d.name), d.ino, st->st_mode & S_IFMT});
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
  CFS_ASSIGN(auto raw, sys::list_xattrs_at(upper_.get(), at(p), at(p)));
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
  CFS_ASSIGN(auto v, upper_xattr(p, overlay::raw_name(name)));
  if (!v) return fail(err("getxattr", ENODATA));
  return *v;
}

Status MergedFs::setxattr(MergedNode n, std::string_view name, std::string_view value, int flags) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_TRY(copy_up(p, false));
  return sys::set_xattr_at(upper_.get(), at(p), overlay::raw_name(name), value, flags, at(p));
}

Status MergedFs::removexattr(MergedNode n, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  CFS_TRY(copy_up(p, false));
  return sys::remove_xattr_at(upper_.get(), at(p), overlay::raw_name(name), at(p));
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
      CFS_ASSIGN(auto mc, upper_xattr(p, overlay::kMetacopy));
      if (mc) return copy_data_up(p);
    }
    return {};
  }
  CFS_TRY(copy_up_parents(p));
  return copy_up_lower(p, *s.l, data);
}

// Copy-up of a lower entry: a temp entry of the same type in the workdir, then its metadata,
// then a rename into place, so the upper never shows a half-made entry.
Status MergedFs::copy_up_lower(const std::string& p, const struct stat& lst, bool data) {
  CFS_ASSIGN(LowerXattrs x, lower_xattrs(lst.st_ino));
  const std::string tmp = temp_name();
  auto st = make_temp(tmp, p, lst, data, x);
  if (st) st = publish(tmp, p, lst, x.visible);
  if (!st) discard(tmp, lst.st_mode);
  return st;
}

// Visible xattrs are copied in their stored (escaped) form; private ones never are.
Result<MergedFs::LowerXattrs> MergedFs::lower_xattrs(Ino nid) const {
  LowerXattrs out;
  CFS_ASSIGN(auto xs, lower_->image().xattrs(nid));
  for (auto& x : xs) {
    if (x.name == overlay::kMetacopy) out.metacopy = x.value;
    if (overlay::visible_name(x.name)) out.visible.emplace_back(x.name, std::move(x.value));
  }
  return out;
}

Status MergedFs::make_temp(const std::string& tmp, const std::string& p, const struct stat& lst,
                           bool data, LowerXattrs& x) {
  switch (lst.st_mode & S_IFMT) {
    case S_IFDIR:
      return sys::mkdirat(work_.get(), tmp, 0700);
    case S_IFLNK: {
      CFS_ASSIGN(std::string target, lower_->readlink(lst.st_ino));
      return sys::symlinkat(target, work_.get(), tmp);
    }
    case S_IFREG:
      return make_temp_file(tmp, p, lst, data, x);
    default:
      return sys::mknodat(work_.get(), tmp, lst.st_mode & S_IFMT, lst.st_rdev);
  }
}

// A regular file: metacopy (empty, sized, with the metacopy and redirect xattrs) or the data.
Status MergedFs::make_temp_file(const std::string& tmp, const std::string& p,
                                const struct stat& lst, bool data, LowerXattrs& x) {
  // The kernel verifies the lower data before any copy-up (ovl_verify_lowerdata).
  CFS_ASSIGN(auto f, lower_->open_file(lst.st_ino, O_RDONLY));
  CFS_ASSIGN(auto metacopy, metacopy_value(data, x.metacopy, *f));
  CFS_ASSIGN(UniqueFd fd, sys::openat(work_.get(), tmp, O_WRONLY | O_CREAT | O_EXCL, 0600));
  if (metacopy) {
    x.visible.emplace_back(std::string(overlay::kMetacopy), std::move(*metacopy));
    x.visible.emplace_back(std::string(overlay::kRedirect), "/" + p);
  } else {
    CFS_TRY(copy_lower_data(*lower_, *f, fd.get()));
  }
  return sys::ftruncate(fd.get(), static_cast<std::uint64_t>(lst.st_size), tmp);
}

// The metacopy xattr a metadata copy-up writes (empty: no digest), or nullopt when the data
// must be copied: wanted, or no digest to record under verity=require (the kernel copies the
// data then too).
Result<std::optional<std::string>> MergedFs::metacopy_value(
    bool data, const std::optional<std::string>& lower_value, const OpenFile& f) const {
  if (data) return std::optional<std::string>();
  const VerityMode verity = lower_->options().verity;
  if (verity == VerityMode::kOff) return std::optional<std::string>(std::string());
  std::optional<verity::Digest> digest;
  if (lower_value) {
    CFS_ASSIGN(overlay::Metacopy m, overlay::Metacopy::decode(*lower_value));
    digest = m.digest;
  }
  if (digest && f.verified())
    return std::optional<std::string>(overlay::Metacopy::encode(*digest).view());
  if (verity == VerityMode::kRequire) return std::optional<std::string>();
  return std::optional<std::string>(std::string());
}

// Metadata of the temp entry, then rename over the upper name.
Status MergedFs::publish(const std::string& tmp, const std::string& p, const struct stat& meta,
                         const XattrList& xattrs) {
  CFS_TRY(apply_meta(work_.get(), tmp, meta, xattrs));
  return sys::renameat(work_.get(), tmp, upper_.get(), p);
}

// Best effort: a temp left behind is removed at the next mount.
void MergedFs::discard(const std::string& tmp, mode_t mode) {
  (void)sys::unlinkat(work_.get(), tmp, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
}

// Data copy-up of an upper metacopy file: the verified lower data, the upper's metadata.
Status MergedFs::copy_data_up(const std::string& p) {
  CFS_ASSIGN(std::string origin, origin_of(p));
  CFS_ASSIGN(auto lst, lower_raw(origin));
  if (!lst || !S_ISREG(lst->st_mode)) return fail(err(p + ": metacopy with no lower data", EIO));
  CFS_ASSIGN(auto f, lower_->open_file(lst->st_ino, O_RDONLY));
  CFS_ASSIGN(struct stat ust, sys::fstatat(upper_.get(), p, AT_SYMLINK_NOFOLLOW));
  XattrList xattrs;
  CFS_ASSIGN(auto names, sys::list_xattrs_at(upper_.get(), p, p));
  for (const auto& n : names) {
    if (n == overlay::kMetacopy || n == overlay::kRedirect) continue;
    CFS_ASSIGN(auto v, upper_xattr(p, n));
    if (v) xattrs.emplace_back(n, std::move(*v));
  }
  const std::string tmp = temp_name();
  auto st = [&]() -> Status {
    CFS_ASSIGN(UniqueFd fd, sys::openat(work_.get(), tmp, O_WRONLY | O_CREAT | O_EXCL, 0600));
    CFS_TRY(copy_lower_data(*lower_, *f, fd.get()));
    CFS_TRY(sys::ftruncate(fd.get(), static_cast<std::uint64_t>(ust.st_size), tmp));
    return publish(tmp, p, ust, xattrs);
  }();
  if (!st) discard(tmp, S_IFREG);
  return st;
}

Result<struct stat> MergedFs::setattr(MergedNode n, const SetAttr& a, const MergedFile* f) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, path_of(n));
  if (a.size) {
    if (f && f->writable()) {
      CFS_TRY(sys::ftruncate(f->upper_fd(), *a.size, p));
    } else {
      CFS_ASSIGN(State s, state(p));
      if (s.type() == S_IFDIR) return fail(err("truncate", EISDIR));
      CFS_TRY(copy_up(p, true));
      CFS_ASSIGN(UniqueFd fd, sys::openat(upper_.get(), p, O_WRONLY | O_NOFOLLOW));
      CFS_TRY(sys::ftruncate(fd.get(), *a.size, p));
    }
  }
  if (a.mode || a.uid || a.gid || a.atime || a.mtime) CFS_TRY(copy_up(p, false));
  CFS_ASSIGN(State s, state(p));
  if (a.mode) {
    // chmod would follow a symlink, possibly out of the upper; Linux has no symlink modes.
    if (s.type() == S_IFLNK) return fail(err("chmod " + p, EOPNOTSUPP));
    CFS_TRY(sys::fchmodat(upper_.get(), at(p), *a.mode & 07777));
  }
  if (a.uid || a.gid) {
    CFS_TRY(sys::fchownat(upper_.get(), at(p), a.uid ? *a.uid : static_cast<uid_t>(-1),
                          a.gid ? *a.gid : static_cast<gid_t>(-1), AT_SYMLINK_NOFOLLOW));
  }
  if (a.atime || a.mtime) {
    struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (a.atime) times[0] = *a.atime;
    if (a.mtime) times[1] = *a.mtime;
    CFS_TRY(sys::utimensat(upper_.get(), at(p), times, AT_SYMLINK_NOFOLLOW));
  }
  CFS_ASSIGN(s, state(p));
  return stat_of(p, s);
}

Status MergedFs::make_whiteout(const std::string& p) {
  return sys::mknodat(upper_.get(), p, S_IFCHR, makedev(0, 0));
}

// Only whiteouts can be left in an upper directory that looks empty: removes them.
Status MergedFs::clear_whiteouts(const std::string& dir) {
  CFS_ASSIGN(auto names, sys::read_dir_names(upper_.get(), dir));
  for (const auto& n : names) CFS_TRY(sys::unlinkat(upper_.get(), join(dir, n), 0));
  return {};
}

// Before creating p: the name must be free in the merged view; parents are copied up and a
// whiteout in its place is removed.
Status MergedFs::prepare_new(const std::string& p) {
  CFS_ASSIGN(State s, state(p));
  if (s.exists()) return fail(err(p, EEXIST));
  CFS_TRY(copy_up_parents(p));
  if (s.u.whiteout()) CFS_TRY(sys::unlinkat(upper_.get(), p, 0));
  return {};
}

Result<MergedEntry> MergedFs::finish_new(MergedNode parent, std::string_view name,
                                         const std::string& p, Caller c, bool is_dir) {
  // The server creates as root; the caller becomes the owner. In a set-group-ID directory the
  // group was already inherited from it, as it would be for the caller.
  CFS_ASSIGN(struct stat dir, sys::fstatat(upper_.get(), at(parent_of(p)), AT_SYMLINK_NOFOLLOW));
  const gid_t gid = (dir.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : c.gid;
  CFS_TRY(sys::fchownat(upper_.get(), p, c.uid, gid, AT_SYMLINK_NOFOLLOW));
  if (is_dir) {
    // A new directory where the lower has one would merge with it: make it opaque (the
    // kernel does the same when a directory replaces a whiteout).
    CFS_ASSIGN(auto l, lower_at(p));
    if (l)
      CFS_TRY(
          sys::set_xattr_at(upper_.get(), p, std::string(overlay::kOpaque), kOpaqueValue, 0, p));
  }
  return entry(parent, name, p);
}

Result<MergedEntry> MergedFs::mknod(MergedNode parent, std::string_view name, mode_t mode,
                                    dev_t rdev, Caller c) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  // A 0/0 chardev would read back as a whiteout.
  if (S_ISCHR(mode) && rdev == 0) return fail(err("mknod", EPERM));
  CFS_TRY(prepare_new(p));
  CFS_TRY(sys::mknodat(upper_.get(), p, mode, rdev));
  return finish_new(parent, name, p, c, false);
}

Result<MergedEntry> MergedFs::mkdir(MergedNode parent, std::string_view name, mode_t mode,
                                    Caller c) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_TRY(prepare_new(p));
  CFS_TRY(sys::mkdirat(upper_.get(), p, mode & 07777));
  return finish_new(parent, name, p, c, true);
}

Result<MergedEntry> MergedFs::symlink(MergedNode parent, std::string_view name,
                                      const std::string& target, Caller c) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_TRY(prepare_new(p));
  CFS_TRY(sys::symlinkat(target, upper_.get(), p));
  return finish_new(parent, name, p, c, false);
}

Result<MergedEntry> MergedFs::link(MergedNode n, MergedNode parent, std::string_view name) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string src, path_of(n));
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_ASSIGN(State ss, state(src));
  if (ss.type() == S_IFDIR) return fail(err("link", EPERM));
  CFS_TRY(copy_up(src, false));
  CFS_TRY(prepare_new(p));
  CFS_TRY(sys::linkat(upper_.get(), src, upper_.get(), p));
  return entry(parent, name, p);
}

Result<MergedEntry> MergedFs::create(MergedNode parent, std::string_view name, mode_t mode,
                                     int flags, Caller c, std::unique_ptr<MergedFile>& out) {
  std::lock_guard lock(mu_);
  CFS_ASSIGN(std::string p, child(parent, name));
  CFS_TRY(prepare_new(p));
  auto f = std::make_unique<MergedFile>();
  int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_CREAT | O_EXCL;
  CFS_ASSIGN(f->upper_, sys::openat(upper_.get(), p, oflags, mode & 07777));
  f->writable_ = (flags & O_ACCMODE) != O_RDONLY;
  CFS_ASSIGN(MergedEntry e, finish_new(parent, name, p, c, false));
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
  if (s.u.visible()) CFS_TRY(sys::unlinkat(upper_.get(), p, 0));
  if (s.l) CFS_TRY(make_whiteout(p));
  nodes_.remove(parent, name);
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
    CFS_TRY(clear_whiteouts(p));
    CFS_TRY(sys::unlinkat(upper_.get(), p, AT_REMOVEDIR));
  }
  if (s.l) CFS_TRY(make_whiteout(p));
  nodes_.remove(parent, name);
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
    if (t.u.is_dir()) CFS_TRY(clear_whiteouts(to));
    if (t.u.whiteout() && is_dir) CFS_TRY(sys::unlinkat(upper_.get(), to, 0));
  }
  CFS_TRY(sys::renameat(upper_.get(), from, upper_.get(), to));
  // The old name must stay hidden if the lower has it.
  if (s.l) CFS_TRY(make_whiteout(from));
  if (is_dir) {
    CFS_ASSIGN(auto l, lower_at(to));
    if (l)
      CFS_TRY(
          sys::set_xattr_at(upper_.get(), to, std::string(overlay::kOpaque), kOpaqueValue, 0, to));
  }
  nodes_.move(parent, name, newparent, newname);
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
    int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_NOFOLLOW;
    CFS_ASSIGN(f->upper_, sys::openat(upper_.get(), p, oflags));
    f->writable_ = (flags & O_ACCMODE) != O_RDONLY;
    return f;
  }
  if (s.u.visible()) {
    CFS_ASSIGN(auto mc, upper_xattr(p, overlay::kMetacopy));
    if (mc) {
      CFS_ASSIGN(std::string origin, origin_of(p));
      CFS_ASSIGN(auto lst, lower_raw(origin));
      if (!lst) return fail(err(p + ": metacopy with no lower data", EIO));
      CFS_ASSIGN(f->lower_, lower_->open_file(lst->st_ino, O_RDONLY));
      CFS_TRY(check_upper_digest(p, *mc, lst->st_ino));
      return f;
    }
    int oflags = (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_NOFOLLOW;
    CFS_ASSIGN(f->upper_, sys::openat(upper_.get(), p, oflags));
    return f;
  }
  CFS_ASSIGN(f->lower_, lower_->open_file(s.l->st_ino, flags));
  return f;
}

// The upper's digest must be the one the lower data is verified against.
Status MergedFs::check_upper_digest(const std::string& p, const std::string& upper_value,
                                    Ino lower) const {
  if (lower_->options().verity == VerityMode::kOff ||
      upper_value.size() <= overlay::kMetacopyMinSize)
    return {};
  CFS_ASSIGN(auto xs, lower_->image().xattrs(lower));
  auto it = std::find_if(xs.begin(), xs.end(),
                         [](const auto& x) { return x.name == overlay::kMetacopy; });
  CFS_ASSIGN(overlay::Metacopy mine, overlay::Metacopy::decode(upper_value));
  if (it == xs.end()) return fail(err(p + ": digest of lower data unknown", EIO));
  CFS_ASSIGN(overlay::Metacopy theirs, overlay::Metacopy::decode(it->value));
  if (mine.digest != theirs.digest)
    return fail(err(p + ": upper metacopy digest differs from the image's", EIO));
  return {};
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

Result<struct statvfs> MergedFs::statfs() const { return sys::fstatvfs(upper_.get(), "upper"); }

}  // namespace cfs::vfs
