// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/repository.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>

#include "cfs/store/fanout_dirs.h"
#include "cfs/util/background_sync.h"
#include "cfs/util/hex.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/util/sys_link.h"
#include "cfs/verity/kernel.h"
#include "repo/names.h"

namespace cfs::repo {
namespace {

constexpr int kLockOps[] = {LOCK_SH, LOCK_EX};

Status take_lock(int fd, LockMode mode, const std::string& path,
                 const std::function<void()>& on_wait) {
  int op = kLockOps[mode == LockMode::kExclusive ? 1 : 0];
  if (on_wait) {
    CFS_ASSIGN(bool got, sys::flock(fd, op | LOCK_NB, path));
    if (got) return {};
    on_wait();
  }
  CFS_TRY(sys::flock(fd, op, path));
  return {};
}

// Old repositories have no meta.json: the algorithm is the one whose digests have the length
// of the object names (62 or 126 hex digits after the fan-out directory).
Result<std::optional<verity::HashAlg>> infer_algorithm(int repo_fd) {
  auto objects = sys::openat(repo_fd, std::string(kObjectsDir), O_RDONLY | O_DIRECTORY);
  if (!objects) return std::optional<verity::HashAlg>();
  CFS_ASSIGN(auto fanouts, sys::list_dir(objects->get(), "objects"));
  std::sort(fanouts.begin(), fanouts.end());
  for (const auto& [dir, type] : fanouts) {
    if (dir.size() != 2 || !from_hex(dir)) continue;
    auto sub = sys::openat(objects->get(), dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!sub) continue;
    CFS_ASSIGN(auto names, sys::list_dir(sub->get(), "objects/" + dir));
    for (const auto& [name, t] : names) {
      for (auto alg : {verity::HashAlg::kSha256, verity::HashAlg::kSha512})
        if (name.size() == 2 * verity::digest_size(alg) - 2 && from_hex(name))
          return std::optional<verity::HashAlg>(alg);
    }
  }
  return std::optional<verity::HashAlg>();
}

// Writes meta.json whole or not at all: an unnamed file, fsynced, fs-verity enabled on it for
// a secure repository, then linked under its name (never replacing one).
Result<bool> write_meta(int repo_fd, const std::string& path, const Meta& meta, bool secure) {
  std::string bytes = meta.to_json();
  UniqueFd rw;
  std::string temp_name;
  CFS_ASSIGN_CTX(auto tmp, sys::open_unnamed(repo_fd, ".", O_RDWR, 0644), path);
  if (tmp) {
    rw = std::move(*tmp);
  } else {
    temp_name = names::temp_file_name();
    CFS_ASSIGN(rw, sys::openat(repo_fd, temp_name, O_RDWR | O_CREAT | O_EXCL, 0644));
  }
  auto cleanup = [&] {
    if (!temp_name.empty()) (void)sys::unlinkat(repo_fd, temp_name, 0);
  };
  auto st = sys::write_all(rw.get(), std::as_bytes(std::span(bytes)));
  if (st) st = sys::fsync(rw.get(), path + "/meta.json");
  Result<UniqueFd> ro = st ? sys::reopen(rw.get(), O_RDONLY, path + "/meta.json")
                           : Result<UniqueFd>(tl::unexpected(st.error()));
  if (st) st = rw.close();
  if (ro && st && secure) {
    verity::Params p;
    p.alg = meta.algorithm;
    st = verity::enable_verity(ro->get(), p, path + "/meta.json");
    if (!st && verity::is_verity_unavailable(st.error()))
      st = fail(Errc::kUnsupportedFeature,
                path +
                    ": the filesystem has no fs-verity; a secure repository needs it "
                    "(use --insecure to create one without)");
  }
  if (!ro || !st) {
    cleanup();
    return fail(!ro ? std::move(ro).error() : std::move(st).error());
  }
  Result<bool> linked = temp_name.empty() ? sys::link_fd(ro->get(), repo_fd, std::string(kMetaFile))
                                          : sys::rename_noreplace(repo_fd, temp_name, repo_fd,
                                                                  std::string(kMetaFile));
  cleanup();
  if (!linked) return linked;
  if (*linked) CFS_TRY(sys::fsync(repo_fd, path));
  return *linked;
}

std::string describe(const Meta& m) {
  return "algorithm " + algorithm_name(m.algorithm) + ", EROFS format " +
         std::to_string(m.erofs_version());
}

}  // namespace

std::string default_path() {
  if (const char* env = std::getenv("CFS_REPO"); env && *env) return env;
  if (::geteuid() == 0) return "/sysroot/composefs";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "") + "/.var/lib/composefs";
}

bool valid_ref_name(std::string_view name) { return names::valid_ref(name); }

Repository::Repository(Repository&&) noexcept = default;
Repository& Repository::operator=(Repository&&) noexcept = default;
Repository::~Repository() = default;

Result<Repository> Repository::init(const std::string& path, const InitOptions& options) {
  if (options.erofs_version > 1)
    return fail(Errc::kUnsupportedFeature, "EROFS format " + std::to_string(options.erofs_version) +
                                               ": cfs writes formats 0 and 1");
  if (auto slash = path.find_last_of('/'); slash != std::string::npos && slash > 0)
    CFS_TRY(sys::mkdirat_p(AT_FDCWD, path.substr(0, slash), 0755));
  CFS_TRY(sys::mkdirat_p(AT_FDCWD, path, 0700));
  CFS_ASSIGN(auto fd, sys::open(path, O_RDONLY | O_DIRECTORY));
  CFS_TRY(sys::flock(fd.get(), LOCK_SH, path));

  CFS_ASSIGN(auto inferred, infer_algorithm(fd.get()));
  verity::HashAlg alg = options.algorithm.value_or(inferred.value_or(verity::HashAlg::kSha512));
  if (inferred && *inferred != alg)
    return fail(Errc::kConflict, path + ": its objects are named by " +
                                     verity::hash_alg_name(*inferred) + " digests, not " +
                                     verity::hash_alg_name(alg));
  Meta want = Meta::make(alg, options.erofs_version);
  // An existing meta.json is compared, not written again: a secure one could otherwise not be
  // written on a filesystem without fs-verity, and the error would blame the filesystem.
  bool created = false;
  CFS_ASSIGN(auto meta_st,
             sys::fstatat_if_exists(fd.get(), std::string(kMetaFile), AT_SYMLINK_NOFOLLOW));
  if (!meta_st) {
    CFS_ASSIGN(created, write_meta(fd.get(), path, want, !options.insecure));
  }
  if (!created) {
    // Initialising again is fine when nothing would change (as cfsctl init).
    CFS_ASSIGN(auto bytes, sys::read_file(path + "/" + std::string(kMetaFile)));
    CFS_ASSIGN(Meta have, Meta::parse(bytes, path + "/meta.json"));
    if (!(have == want))
      return fail(Errc::kConflict, path + ": already initialised with " + describe(have) +
                                       ", not " + describe(want));
  }
  CFS_TRY(sys::mkdirat_p(fd.get(), std::string(kObjectsDir), 0755));
  OpenOptions oo;
  oo.write = true;
  CFS_ASSIGN(Repository r, open_fd(std::move(fd), path, oo));
  // The security mode is a setting too: an insecure repository initialised again without
  // --insecure stayed insecure, silently.
  if (!created && r.secure() == options.insecure)
    return fail(Errc::kConflict,
                path + ": already initialised as " + (r.secure() ? "a secure" : "an insecure") +
                    " repository, not " + (r.secure() ? "an insecure" : "a secure") + " one");
  return r;
}

Result<Repository> Repository::open(const std::string& path, const OpenOptions& options) {
  auto fd = sys::open(path, O_RDONLY | O_DIRECTORY);
  if (!fd) {
    if (fd.error().is_errno(ENOENT))
      return fail(Errc::kInvalidInput,
                  path + ": no repository there (create one with `cfs repo init`)");
    return fail(std::move(fd).error());
  }
  CFS_TRY(take_lock(fd->get(), options.lock, path, options.on_wait));
  CFS_ASSIGN(Repository r, open_fd(std::move(*fd), path, options));
  r.lock_ = options.lock;
  return r;
}

Result<Repository> Repository::open_fd(UniqueFd fd, std::string path, const OpenOptions& options) {
  Repository r;
  r.path_ = std::move(path);
  r.object_cache_ = std::make_shared<ObjectCache>();
  const std::string meta_what = r.path_ + "/meta.json";
  auto meta_fd = sys::openat(fd.get(), std::string(kMetaFile), O_RDONLY | O_NOFOLLOW);
  if (meta_fd) {
    CFS_ASSIGN(auto bytes, sys::read_fd(meta_fd->get(), meta_what));
    CFS_ASSIGN(r.meta_, Meta::parse(bytes, meta_what));
    auto access = check(r.meta_);
    if (!access) return fail(std::move(access).error().with_context(r.path_));
    r.access_ = std::move(*access);
    // The security mode is fs-verity on meta.json itself (composefs-rs): any digest means
    // secure, "not enabled" or "not supported" means insecure.
    auto measured = verity::measure_verity(meta_fd->get(), meta_what);
    if (measured) {
      r.secure_ = true;
    } else if (!verity::is_verity_unavailable(measured.error())) {
      return fail(std::move(measured).error());
    }
  } else if (meta_fd.error().is_errno(ENOENT)) {
    CFS_ASSIGN(auto inferred, infer_algorithm(fd.get()));
    if (!inferred)
      return fail(Errc::kInvalidInput, r.path_ +
                                           ": not a composefs repository (no meta.json and no "
                                           "objects; create one with `cfs repo init`)");
    r.legacy_ = true;
    r.meta_.algorithm = *inferred;  // no features, no erofs_formats: composefs-rs reads V2
    r.access_.writable = false;
  } else {
    return fail(std::move(meta_fd).error());
  }
  if (options.write) {
    if (r.legacy_)
      return fail(Errc::kUnsupportedFeature,
                  r.path_ +
                      ": old repository without meta.json; run `cfs repo init` on it "
                      "first");
    if (!r.access_.writable) {
      std::string names;
      for (const auto& f : r.access_.unknown_ro_compat) names += (names.empty() ? "" : ", ") + f;
      return fail(Errc::kUnsupportedFeature,
                  r.path_ + ": read-only for this cfs (unknown read-only-compatible features: " +
                      names + ")");
    }
    CFS_ASSIGN(bool ro_fs, sys::is_read_only_fs(fd.get(), r.path_));
    if (ro_fs) return fail_errno(r.path_, EROFS);
    if (!sys::can_write(fd.get(), ".")) return fail_errno(r.path_, EACCES);
  }
  r.fd_ = std::move(fd);
  return r;
}

Status Repository::relock(LockMode mode, const std::function<void()>& on_wait) {
  CFS_TRY(take_lock(fd_.get(), mode, path_, on_wait));
  lock_ = mode;
  return {};
}

bool Repository::try_exclusive_last() {
  auto got = sys::flock(fd_.get(), LOCK_EX | LOCK_NB, path_);
  if (got && *got) lock_ = LockMode::kExclusive;
  return got && *got;
}

std::string Repository::object_path(const verity::Digest& digest) const {
  return std::string(kObjectsDir) + "/" + names::object_name(digest);
}

Result<verity::Digest> Repository::parse_digest(std::string_view text) const {
  return names::parse_digest(text, meta_.algorithm);
}

Result<verity::Digest> Repository::resolve_image(std::string_view name) const {
  std::string ref;
  if (name.starts_with("refs/")) {
    ref = std::string(name.substr(5));
  } else if (auto d = parse_digest(name)) {
    auto st =
        sys::fstatat(fd_.get(), std::string(kImagesDir) + "/" + d->hex(), AT_SYMLINK_NOFOLLOW);
    if (!st) return fail(Errc::kObjectMissing, "image " + std::string(name) + ": not in " + path_);
    return *d;
  } else {
    ref = std::string(name);
  }
  if (!valid_ref_name(ref))
    return fail(Errc::kInvalidInput, "image name '" + std::string(name) + "' is not valid");
  std::string link = std::string(kImagesDir) + "/" + std::string(kRefsDir) + "/" + ref;
  auto target = sys::readlinkat(fd_.get(), link);
  if (!target) {
    if (target.error().is_errno(ENOENT))
      return fail(Errc::kObjectMissing, "image '" + std::string(name) + "': no such name in " +
                                            path_ + " (see `cfs repo images`)");
    return fail(std::move(target).error());
  }
  auto entry = names::ref_target_entry(link, *target, kImagesDir);
  if (!entry)
    return fail(Errc::kCorruptImage,
                path_ + "/" + link + ": points at '" + *target + "', not at an image");
  auto d = parse_digest(*entry);
  if (!d)
    return fail(Errc::kCorruptImage,
                path_ + "/" + link + ": points at '" + *target + "', not at an image");
  if (!sys::fstatat(fd_.get(), std::string(kImagesDir) + "/" + *entry, AT_SYMLINK_NOFOLLOW))
    return fail(Errc::kObjectMissing,
                path_ + "/" + link + ": image " + *entry + " is not in the repository");
  return *d;
}

Result<std::pair<verity::Digest, std::string>> Repository::resolve_stream(
    std::string_view name) const {
  std::string id(name);
  if (name.starts_with("refs/")) {
    std::string ref(name.substr(5));
    if (!valid_ref_name(ref))
      return fail(Errc::kInvalidInput, "stream name '" + std::string(name) + "' is not valid");
    std::string link = std::string(kStreamsDir) + "/" + std::string(kRefsDir) + "/" + ref;
    CFS_ASSIGN(auto target, sys::readlinkat(fd_.get(), link));
    auto entry = names::ref_target_entry(link, target, kStreamsDir);
    if (!entry)
      return fail(Errc::kCorruptImage,
                  path_ + "/" + link + ": points at '" + target + "', not at a stream");
    id = *entry;
  }
  if (!names::valid_entry(id))
    return fail(Errc::kInvalidInput, "stream '" + std::string(name) + "': not a stream name");
  std::string link = std::string(kStreamsDir) + "/" + id;
  auto target = sys::readlinkat(fd_.get(), link);
  if (!target) {
    if (target.error().is_errno(ENOENT))
      return fail(Errc::kObjectMissing,
                  "stream '" + std::string(name) + "': no such stream in " + path_);
    return fail(std::move(target).error());
  }
  auto d = names::entry_target_object(*target, meta_.algorithm);
  if (!d)
    return fail(Errc::kCorruptImage,
                path_ + "/" + link + ": points at '" + *target + "', not at an object");
  return std::make_pair(*d, id);
}

Result<UniqueFd> Repository::open_object(const verity::Digest& digest) const {
  std::string rel = object_path(digest);
  // Never out of objects/ (no symlinks, no "..", no other mount), never blocking on a FIFO.
  auto fd =
      sys::openat2(fd_.get(), rel, O_RDONLY | O_NONBLOCK,
                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
  if (!fd) {
    if (fd.error().is_errno(ENOENT) || fd.error().is_errno(ELOOP))
      return fail(Errc::kObjectMissing, path_ + "/" + rel + ": object missing");
    return fail(std::move(fd).error().with_context(path_));
  }
  CFS_ASSIGN(auto st, sys::fstat(fd->get(), rel));
  if (!S_ISREG(st.st_mode))
    return fail(Errc::kCorruptImage, path_ + "/" + rel + ": not a regular file");
  if (secure_) {
    auto measured = verity::measure_verity(fd->get(), path_ + "/" + rel);
    if (!measured) {
      if (verity::is_verity_unavailable(measured.error()))
        return fail(Errc::kDigestMismatch,
                    path_ + "/" + rel +
                        ": fs-verity is not enabled on the object of a secure "
                        "repository");
      return fail(std::move(measured).error());
    }
    if (!(*measured == digest))
      return fail(Errc::kDigestMismatch, path_ + "/" + rel + ": fs-verity digest " +
                                             measured->hex() + " does not match its name");
  }
  return std::move(*fd);
}

bool Repository::has_object(const verity::Digest& digest) const {
  return sys::fstatat(fd_.get(), object_path(digest), AT_SYMLINK_NOFOLLOW).has_value();
}

Status Repository::link_image(const verity::Digest& image) {
  return names::replace_symlink(fd_.get(), std::string(kImagesDir), image.hex(),
                                "../" + object_path(image));
}

Status Repository::link_stream(std::string_view content_id, const verity::Digest& stream) {
  if (!names::valid_entry(content_id))
    return fail(Errc::kInvalidInput, "stream name '" + std::string(content_id) + "' is not valid");
  return names::replace_symlink(fd_.get(), std::string(kStreamsDir), std::string(content_id),
                                "../" + object_path(stream));
}

Status Repository::set_ref(Kind kind, std::string_view name, std::string_view target) {
  if (!valid_ref_name(name))
    return fail(Errc::kInvalidInput,
                "name '" + std::string(name) + "' is not valid (no empty, '.' or '..' components)");
  std::string top(kind == Kind::kImage ? kImagesDir : kStreamsDir);
  if (!sys::fstatat(fd_.get(), top + "/" + std::string(target), AT_SYMLINK_NOFOLLOW))
    return fail(Errc::kObjectMissing, std::string(kind == Kind::kImage ? "image " : "stream ") +
                                          std::string(target) + " is not in " + path_);
  std::string link = top + "/" + std::string(kRefsDir) + "/" + std::string(name);
  auto slash = link.rfind('/');
  std::string dir = link.substr(0, slash);
  CFS_TRY(sys::mkdirat_p(fd_.get(), dir, 0755));
  // One "../" per directory between the link and the top-level directory.
  std::string up;
  for (char c : link.substr(top.size() + 1, slash - top.size()))
    if (c == '/') up += "../";
  return names::replace_symlink(fd_.get(), dir, link.substr(slash + 1), up + std::string(target));
}

Status Repository::remove_ref(Kind kind, std::string_view name) {
  if (!valid_ref_name(name))
    return fail(Errc::kInvalidInput, "name '" + std::string(name) + "' is not valid");
  std::string base =
      std::string(kind == Kind::kImage ? kImagesDir : kStreamsDir) + "/" + std::string(kRefsDir);
  std::string link = base + "/" + std::string(name);
  auto st = sys::fstatat(fd_.get(), link, AT_SYMLINK_NOFOLLOW);
  if (!st || !S_ISLNK(st->st_mode))
    return fail(Errc::kObjectMissing, "no name '" + std::string(name) + "' in " + path_);
  CFS_TRY(sys::unlinkat(fd_.get(), link, 0));
  // Directories the name leaves empty go too (a failure just means another name is there).
  for (auto slash = link.rfind('/'); slash != std::string::npos && slash > base.size();
       slash = link.rfind('/', slash - 1)) {
    if (!sys::unlinkat(fd_.get(), link.substr(0, slash), AT_REMOVEDIR)) break;
  }
  return {};
}

Result<std::vector<NamedRef>> Repository::list_refs(Kind kind) const {
  std::string_view top = kind == Kind::kImage ? kImagesDir : kStreamsDir;
  std::vector<NamedRef> out;
  CFS_ASSIGN(auto links, names::walk_refs(fd_.get(), top));
  for (auto& l : links) {
    if (l.temp) continue;
    NamedRef r;
    r.name = std::move(l.name);
    if (l.target) {
      if (auto entry = names::ref_target_entry(l.path, *l.target, top)) r.target = *entry;
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(),
            [](const NamedRef& a, const NamedRef& b) { return a.name < b.name; });
  return out;
}

Result<std::vector<std::string>> Repository::list_entries(Kind kind) const {
  std::string top(kind == Kind::kImage ? kImagesDir : kStreamsDir);
  auto dir = sys::openat(fd_.get(), top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return std::vector<std::string>();
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), path_ + "/" + top));
  std::vector<std::string> out;
  for (auto& [name, type] : entries)
    if (name != kRefsDir && !names::is_temp(name)) out.push_back(std::move(name));
  std::sort(out.begin(), out.end());
  return out;
}

NewObject::~NewObject() {
  if (!temp_name_.empty() && dir_) (void)sys::unlinkat(dir_->get(), temp_name_, 0);
}

Status NewObject::write(std::span<const std::byte> data) {
  CFS_TRY(sys::write_all(fd_.get(), data));
  written_ += data.size();
  return {};
}

struct Repository::ObjectCache {
  std::mutex mu;
  UniqueFd dir;  // objects/, set once under mu
  // Writeback of committed objects in batches instead of leaving it all to sync() (set with dir).
  std::unique_ptr<BackgroundSync> writeback;
  // The fan-out directories, opened once (set with dir); which new objects need no lookup.
  std::unique_ptr<store::FanoutDirs> fanout;
  std::atomic<bool> verity_unavailable{false};
};

Result<int> Repository::objects_dir() {
  if (!object_cache_) return fail(Errc::kInvalidInput, path_ + ": repository not open");
  std::lock_guard lock(object_cache_->mu);
  if (!object_cache_->dir) {
    CFS_TRY(sys::mkdirat_p(fd_.get(), std::string(kObjectsDir), 0755));
    CFS_ASSIGN(object_cache_->dir, sys::openat(fd_.get(), std::string(kObjectsDir),
                                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    CFS_ASSIGN(object_cache_->writeback, syncfs_every(object_cache_->dir.get(), path_));
    object_cache_->fanout = std::make_unique<store::FanoutDirs>(
        object_cache_->dir.get(), path_ + "/" + std::string(kObjectsDir));
  }
  return object_cache_->dir.get();
}

Result<bool> Repository::need_object(const verity::Digest& digest) {
  if (digest.alg != meta_.algorithm)
    return fail(Errc::kInvalidInput, path_ + ": an object digest of another algorithm");
  CFS_TRY(objects_dir());
  CFS_ASSIGN(store::FanoutDirs::Probe probe, object_cache_->fanout->probe(digest));
  if (probe.known_absent) return true;
  return !sys::fstatat(probe.dirfd, names::object_name(digest).substr(3), AT_SYMLINK_NOFOLLOW)
              .has_value();
}

Result<NewObject> Repository::create_object() {
  NewObject o;
  // objects/ is opened once per repository; each object shares that descriptor (and keeps it
  // open should the repository go first): no path walk, and no dup and close per object.
  CFS_TRY(objects_dir());
  o.dir_ = std::shared_ptr<const UniqueFd>(object_cache_, &object_cache_->dir);
  std::string where = path_ + "/" + std::string(kObjectsDir);
  CFS_ASSIGN_CTX(auto tmp, sys::open_unnamed(o.dir_->get(), ".", O_RDWR, 0644), where);
  if (tmp) {
    o.fd_ = std::move(*tmp);
  } else {
    std::string name = names::temp_file_name();
    CFS_ASSIGN(o.fd_, sys::openat(o.dir_->get(), name, O_RDWR | O_CREAT | O_EXCL, 0644));
    o.temp_name_ = name;
  }
  return o;
}

Result<verity::Digest> Repository::commit_object(NewObject object) {
  verity::Params p;
  p.alg = meta_.algorithm;
  CFS_ASSIGN(
      verity::Digest digest,
      verity::digest_fd(object.fd_.get(), p, path_ + "/" + std::string(kObjectsDir) + "/(new)"));
  return commit_object(std::move(object), digest);
}

Result<UniqueFd> Repository::seal_object(NewObject& object, const verity::Digest& digest,
                                         const std::string& where, const std::string& name) {
  ObjectCache& cache = *object_cache_;
  verity::Params p;
  p.alg = meta_.algorithm;
  // An insecure repository on a filesystem without fs-verity (learned from an earlier object)
  // links the written file as it is: no reopen for an ioctl that would fail again.
  const bool try_verity = secure_ || !cache.verity_unavailable.load(std::memory_order_relaxed);
  if (!try_verity) return std::move(object.fd_);
  // fs-verity needs a file nobody has open for writing.
  CFS_ASSIGN(UniqueFd linked, sys::reopen(object.fd_.get(), O_RDONLY, where + "/" + name));
  CFS_TRY(object.fd_.close());
  if (auto st = verity::enable_verity(linked.get(), p, where + "/" + name); !st) {
    if (!verity::is_verity_unavailable(st.error()) || secure_)
      return fail(std::move(st).error().with_context(
          secure_ ? "a secure repository needs fs-verity on every object" : "enable fs-verity"));
    cache.verity_unavailable.store(true, std::memory_order_relaxed);
  } else {
    // The kernel measured what is on disk: a caller's digest that disagrees names nothing.
    CFS_ASSIGN(verity::Digest measured, verity::measure_verity(linked.get(), where + "/" + name));
    if (measured != digest)
      return fail(Errc::kDigestMismatch,
                  where + "/" + name + ": the kernel measured " + measured.hex());
  }
  return linked;
}

Result<verity::Digest> Repository::commit_object(NewObject object, const verity::Digest& digest) {
  std::string where = path_ + "/" + std::string(kObjectsDir);
  if (digest.alg != meta_.algorithm)
    return fail(Errc::kInvalidInput, where + ": an object digest of another algorithm");
  if (!object_cache_) return fail(Errc::kInvalidInput, path_ + ": repository not open");
  ObjectCache& cache = *object_cache_;
  std::string name = names::object_name(digest);
  CFS_ASSIGN(UniqueFd linked, seal_object(object, digest, where, name));
  // Named relative to its fan-out directory, opened (or made) once per repository.
  CFS_ASSIGN(int fanout, cache.fanout->dir(digest));
  if (object.temp_name_.empty()) {
    const std::string leaf = name.substr(3);
    CFS_ASSIGN(bool added, sys::link_fd(linked.get(), fanout, leaf));
    // close() is where delayed write errors would surface: an object whose data may be bad
    // does not keep its name.
    if (auto closed = linked.close(); !closed) {
      if (added) (void)sys::unlinkat(fanout, leaf, 0);
      return fail(std::move(closed).error().with_context(where + "/" + name));
    }
  } else {
    CFS_TRY_CTX(linked.close(), where + "/" + name);
    CFS_ASSIGN(bool moved, sys::rename_noreplace(object.dir_->get(), object.temp_name_,
                                                 object.dir_->get(), name));
    if (moved) object.temp_name_.clear();
  }
  if (cache.writeback) cache.writeback->added(object.written_);
  return digest;
}

Result<verity::Digest> Repository::replace_object(NewObject object, const verity::Digest& digest) {
  std::string where = path_ + "/" + std::string(kObjectsDir);
  if (digest.alg != meta_.algorithm)
    return fail(Errc::kInvalidInput, where + ": an object digest of another algorithm");
  if (!object_cache_) return fail(Errc::kInvalidInput, path_ + ": repository not open");
  ObjectCache& cache = *object_cache_;
  std::string name = names::object_name(digest);
  CFS_ASSIGN(UniqueFd linked, seal_object(object, digest, where, name));
  CFS_ASSIGN(int fanout, cache.fanout->dir(digest));
  const std::string leaf = name.substr(3);
  if (object.temp_name_.empty()) {
    // An unnamed file cannot be renamed: it gets a temporary name beside the old one first
    // (fsck and gc know such leftovers), then takes the old name over in one rename.
    const std::string temp = names::temp_file_name();
    CFS_ASSIGN(bool added, sys::link_fd(linked.get(), fanout, temp));
    if (!added) return fail_errno(where + "/" + name.substr(0, 3) + temp, EEXIST);
    auto st = linked.close();
    if (st) st = sys::renameat(fanout, temp, fanout, leaf);
    if (!st) {
      (void)sys::unlinkat(fanout, temp, 0);
      return fail(std::move(st).error().with_context(where + "/" + name));
    }
  } else {
    CFS_TRY_CTX(linked.close(), where + "/" + name);
    CFS_TRY(sys::renameat(object.dir_->get(), object.temp_name_, object.dir_->get(), name));
    object.temp_name_.clear();
  }
  if (cache.writeback) cache.writeback->added(object.written_);
  return digest;
}

Status Repository::publish_image(const verity::Digest& image,
                                 const std::optional<std::string>& ref) {
  if (ref && !valid_ref_name(*ref))
    return fail(Errc::kInvalidInput, "name '" + *ref + "' is not valid");
  CFS_TRY(sync());
  CFS_TRY(link_image(image));
  if (ref) CFS_TRY(set_ref(Kind::kImage, *ref, image.hex()));
  return {};
}

Status Repository::sync() const {
  CFS_TRY(sys::syncfs(fd_.get(), path_));
  // An error a background writeback run saw (its syncfs reported it, not ours).
  if (object_cache_ && object_cache_->writeback) CFS_TRY(object_cache_->writeback->status());
  return {};
}

Status Repository::sync_object(const verity::Digest& digest) {
  CFS_ASSIGN(int objects, objects_dir());
  const std::string name = names::object_name(digest);
  const std::string where = path_ + "/" + std::string(kObjectsDir);
  CFS_ASSIGN_CTX(UniqueFd obj, sys::openat(objects, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC),
                 where);
  CFS_TRY(sys::fsync(obj.get(), where + "/" + name));
  const std::string fanout = name.substr(0, 2);
  CFS_ASSIGN_CTX(UniqueFd dir, sys::openat(objects, fanout, O_RDONLY | O_DIRECTORY | O_CLOEXEC),
                 where);
  CFS_TRY(sys::fsync(dir.get(), where + "/" + fanout));
  return sys::fsync(objects, where);
}

std::uint64_t Repository::writeback_runs() const {
  return object_cache_ && object_cache_->writeback ? object_cache_->writeback->runs() : 0;
}

}  // namespace cfs::repo
