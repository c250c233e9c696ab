// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/filesystem.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cfs/overlay/file_type.h"
#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/util/sys.h"
#include "cfs/vfs/tree_cache.h"

namespace cfs::vfs {
namespace {

constexpr std::uint32_t kEroBlockSize = 4096;

// overlayfs hides a chardev with rdev 0 in any lower layer (a whiteout); the 256 root stubs
// composefs adds are such whiteouts.
bool is_whiteout(const erofs::InodeInfo& ino) { return overlay::is_whiteout(ino.mode, ino.rdev); }

const erofs::RawXattr* find_xattr(const std::vector<erofs::RawXattr>& xs, std::string_view name) {
  for (const auto& x : xs)
    if (x.name == name) return &x;
  return nullptr;
}

Error eio(std::string what) { return Error::from_errno(std::move(what), EIO); }

}  // namespace

int errno_for(const Error& e) noexcept {
  if (e.code().category() == std::generic_category()) return e.code().value();
  if (e.is(Errc::kObjectMissing)) return ENOENT;
  if (e.is(Errc::kUnsupportedFeature)) return EOPNOTSUPP;
  return EIO;
}

Filesystem::Filesystem(erofs::Image image, Options opts)
    : image_(std::move(image)),
      opts_(std::move(opts)),
      objects_(opts_.objects),
      trees_(std::make_unique<TreeCache>(opts_.tree_cache_bytes, opts_.tree_cache_dir)),
      report_reads_(objects_->wants_reads()) {}

Filesystem::~Filesystem() = default;

Result<std::unique_ptr<Filesystem>> Filesystem::open(const std::string& image_path, Options opts) {
  CFS_ASSIGN(erofs::Image image, erofs::Image::open(image_path));
  return open(std::move(image), std::move(opts));
}

Result<std::unique_ptr<Filesystem>> Filesystem::open(erofs::Image image, Options opts) {
  if (!opts.objects) {
    CFS_ASSIGN(store::ObjectDirs dirs, store::ObjectDirs::open(opts.basedirs));
    opts.objects = store_provider(std::move(dirs));
  }
  // The root must be a readable directory or nothing can be served.
  CFS_ASSIGN(auto root, image.inode(image.root_nid()));
  if (!root.is_dir()) return fail(Errc::kCorruptImage, "image root is not a directory");
  return std::unique_ptr<Filesystem>(new Filesystem(std::move(image), std::move(opts)));
}

Result<erofs::InodeInfo> Filesystem::checked_inode(Ino ino) const {
  auto info = image_.inode(ino);
  if (!info) return fail(eio(info.error().message()));
  return info;
}

Status Filesystem::check_overlay_inode(const erofs::InodeInfo& ino) const {
  if (!ino.is_reg() || ino.xattr_size == 0) return {};
  auto xs = image_.xattrs(ino);
  if (!xs) return fail(eio(xs.error().message()));
  const auto* mc = find_xattr(*xs, overlay::kMetacopy);
  if (!mc) return {};
  // The lookup-time part of store::ObjectDirs::open_backing(): nothing is opened yet.
  Status st = [&]() -> Status {
    CFS_TRY(overlay::Metacopy::check_at_lookup(mc->value));
    const auto* redirect = find_xattr(*xs, overlay::kRedirect);
    if (!redirect) return fail_errno("metacopy file without redirect", EIO);
    CFS_TRY(overlay::redirect_object_path(redirect->value));
    return {};
  }();
  if (!st) report(ino.nid, *xs, st.error());
  return st;
}

void Filesystem::report(Ino ino, const std::vector<erofs::RawXattr>& xattrs, const Error& e) const {
  if (!opts_.on_problem) return;
  Problem p;
  p.ino = ino;
  if (const auto* r = find_xattr(xattrs, overlay::kRedirect))
    p.object = std::string(overlay::redirect_payload(r->value));
  p.reason = e.message();
  opts_.on_problem(p);
}

void Filesystem::report(const OpenFile& f, const Error& e) const {
  if (!opts_.on_problem) return;
  auto xs = image_.xattrs(f.inode_);
  report(f.ino_, xs ? *xs : std::vector<erofs::RawXattr>{}, e);
}

Result<std::string> Filesystem::path_of(Ino ino) const {
  if (ino == root()) return std::string("/");
  // Depth-first over the image until the nid turns up: only for messages, which are rare.
  std::vector<std::pair<Ino, std::string>> todo{{root(), ""}};
  while (!todo.empty()) {
    // Named variables, not a structured binding: the lambda below captures them (clang < 16).
    Ino dir = todo.back().first;
    std::string prefix = std::move(todo.back().second);
    todo.pop_back();
    std::optional<std::string> found;
    CFS_TRY(image_.iterate_dir(dir, 0, [&](const erofs::DirentView& d) {
      if (d.name == "." || d.name == "..") return true;
      std::string path = prefix + "/" + std::string(d.name);
      if (d.nid == ino) {
        found = std::move(path);
        return false;
      }
      if (d.file_type == erofs::FileType::kDirectory) todo.emplace_back(d.nid, std::move(path));
      return true;
    }));
    if (found) return *found;
  }
  return fail_errno("nid " + std::to_string(ino) + " is not in the tree", ENOENT);
}

Result<struct stat> Filesystem::stat_of(const erofs::InodeInfo& ino) const {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_ino = ino.nid;
  st.st_mode = ino.mode;
  st.st_nlink = ino.nlink;
  st.st_uid = ino.uid;
  st.st_gid = ino.gid;
  if (ino.type() == S_IFCHR || ino.type() == S_IFBLK) {
    // EROFS decodes i_u with new_decode_dev(): 12-bit major, 20-bit minor split around it.
    unsigned major = (ino.rdev >> 8) & 0xfffu;
    unsigned minor = (ino.rdev & 0xffu) | ((ino.rdev >> 12) & 0xfff00u);
    st.st_rdev = makedev(major, minor);
  }
  st.st_size = static_cast<off_t>(ino.size);
  st.st_blksize = kEroBlockSize;
  // EROFS reports round_up(i_size, block) / 512 for uncompressed inodes; overlayfs reports the
  // same for a metacopy file until its data has been looked up ("guess lowerdata blocks").
  st.st_blocks =
      static_cast<blkcnt_t>((ino.size + kEroBlockSize - 1) / kEroBlockSize * (kEroBlockSize / 512));
  st.st_mtim.tv_sec = ino.mtime_sec;
  st.st_mtim.tv_nsec = std::min<long>(ino.mtime_nsec, 999999999);  // image values may exceed 10^9
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
  return st;
}

Result<struct stat> Filesystem::getattr(Ino ino) const {
  CFS_ASSIGN(auto info, checked_inode(ino));
  CFS_TRY(check_overlay_inode(info));
  return stat_of(info);
}

Result<struct stat> Filesystem::lookup(Ino parent, std::string_view name) const {
  CFS_ASSIGN(auto dir, checked_inode(parent));
  if (!dir.is_dir()) return fail_errno("lookup", ENOTDIR);
  if (name.empty() || name.size() > 255) return fail_errno("lookup", ENOENT);
  auto found = image_.lookup(parent, name);
  if (!found) return fail(eio(found.error().message()));
  if (!*found) return fail_errno("lookup " + std::string(name), ENOENT);
  CFS_ASSIGN(auto info, checked_inode(**found));
  if (is_whiteout(info)) return fail_errno("lookup " + std::string(name), ENOENT);
  CFS_TRY(check_overlay_inode(info));
  return stat_of(info);
}

Result<std::string> Filesystem::readlink(Ino ino) const {
  CFS_ASSIGN(auto info, checked_inode(ino));
  if (!info.is_symlink()) return fail_errno("readlink", EINVAL);
  auto target = image_.readlink(ino);
  if (!target) return fail(eio(target.error().message()));
  return target;
}

Status Filesystem::readdir(Ino dir, std::uint64_t offset,
                           const std::function<bool(const DirItem&)>& fn) const {
  CFS_ASSIGN(auto info, checked_inode(dir));
  if (!info.is_dir()) return fail_errno("readdir", ENOTDIR);
  Status inner;
  auto st = image_.iterate_dir(info, offset, [&](const erofs::DirentView& d) {
    if (d.file_type == erofs::FileType::kCharDevice) {
      auto child = image_.inode(d.nid);
      if (!child) {
        inner = fail(eio(child.error().message()));
        return false;
      }
      if (is_whiteout(*child)) return true;
    }
    return fn(DirItem{d.name, d.nid, overlay::mode_type(d.file_type), d.next_offset});
  });
  if (!st) return fail(eio(st.error().message()));
  return inner;
}

Result<std::vector<std::string>> Filesystem::listxattr(Ino ino) const {
  CFS_ASSIGN(auto info, checked_inode(ino));
  std::vector<std::string> out;
  if (info.xattr_size == 0) return out;
  auto xs = image_.xattrs(info);
  if (!xs) return fail(eio(xs.error().message()));
  for (const auto& x : *xs)
    if (auto name = overlay::visible_name(x.name)) out.push_back(std::move(*name));
  return out;
}

Result<std::string> Filesystem::getxattr(Ino ino, std::string_view name) const {
  CFS_ASSIGN(auto info, checked_inode(ino));
  if (info.xattr_size == 0) return fail_errno("getxattr", ENODATA);
  auto xs = image_.xattrs(info);
  if (!xs) return fail(eio(xs.error().message()));
  if (const auto* x = find_xattr(*xs, overlay::raw_name(name))) return x->value;
  return fail_errno("getxattr", ENODATA);
}

Result<std::unique_ptr<OpenFile>> Filesystem::open_file(Ino ino, int flags,
                                                        ContentCopy* copy) const {
  if (copy) copy->size = 0;
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) return fail_errno("open", EROFS);
  CFS_ASSIGN(auto info, checked_inode(ino));
  if (info.is_dir()) return fail_errno("open", EISDIR);
  if (!info.is_reg()) return fail_errno("open", EINVAL);
  auto f = std::make_unique<OpenFile>();
  f->ino_ = ino;
  f->inode_ = info;
  if (Status st = open_object(info, *f, copy); !st) {
    if (copy) copy->size = 0;  // nothing of a failed open is offered
    return fail(st.error());
  }
  return f;
}

Status Filesystem::open_object(const erofs::InodeInfo& ino, OpenFile& f, ContentCopy* copy) const {
  if (ino.xattr_size == 0) return open_inline(ino, f);
  auto xs = image_.xattrs(ino);
  if (!xs) return fail(eio(xs.error().message()));
  const auto* mc = find_xattr(*xs, overlay::kMetacopy);
  if (!mc) return open_inline(ino, f);
  Status st = open_backing(*xs, *mc, f, copy);
  if (!st) report(ino.nid, *xs, st.error());
  return st;
}

Status Filesystem::open_inline(const erofs::InodeInfo& ino, OpenFile& f) const {
  // Data stored in the image itself: immutable, served from the mapping.
  f.data_size_ = ino.size;
  f.cacheable_ = true;
  return {};
}

Status Filesystem::open_backing(const std::vector<erofs::RawXattr>& xs, const erofs::RawXattr& mc,
                                OpenFile& f, ContentCopy* copy) const {
  std::optional<std::string_view> redirect;
  if (const auto* r = find_xattr(xs, overlay::kRedirect)) redirect = r->value;
  CFS_ASSIGN(store::Backing b,
             store::open_backing(
                 mc.value, redirect, opts_.verity != VerityMode::kOff,
                 [this](std::string_view rel, const std::optional<verity::Digest>& digest) {
                   return objects_->open_object(rel, digest);
                 }));
  f.fd_ = std::move(b.fd);
  f.data_size_ = b.size;
  if (report_reads_ && b.digest) f.reported_ = *b.digest;
  if (opts_.verity == VerityMode::kOff) return {};
  if (!b.digest) {
    if (opts_.verity == VerityMode::kRequire)
      return fail(eio("object " + b.object + ": metacopy file has no digest specified"));
    return {};
  }
  const bool want_copy = copy && f.data_size_ > 0 && f.data_size_ <= opts_.copy_max_bytes;
  auto tree = trees_->get(
      *b.digest, f.fd_.get(), f.data_size_, b.object,
      [&] { return objects_->take_tree(*b.digest); }, want_copy ? copy : nullptr);
  if (!tree) return fail(eio(tree.error().message()));
  // A tree found in the cache describes the content, not this file: a file of another size
  // can never read back verified, so refuse it now.
  if ((*tree)->data_size != f.data_size_)
    return fail(eio("object " + b.object + ": size differs from the verified content"));
  f.tree_ = std::move(*tree);
  f.data_size_ = f.tree_->data_size;
  f.cacheable_ = true;
  // The file's size is the image's (st_size, what the kernel reads up to); a copy handed on
  // whole would make a page cache that stores it grow the file past it.
  if (copy && copy->size > f.inode_.size) copy->size = static_cast<std::size_t>(f.inode_.size);
  return {};
}

Result<std::span<const std::byte>> Filesystem::read(const OpenFile& f, std::uint64_t off,
                                                    std::size_t len, ReadBuffer& buf) const {
  if (off >= f.data_size_ || len == 0) return std::span<const std::byte>{};
  len = static_cast<std::size_t>(std::min<std::uint64_t>(len, f.data_size_ - off));
  if (!f.fd_) {
    auto data = image_.read(f.inode_, off, len);
    if (!data) return fail(eio(data.error().message()));
    auto out = buf.get(data->size());
    std::memcpy(out.data(), data->data(), data->size());
    return std::span<const std::byte>(out);
  }
  if (!f.tree_) {
    auto out = buf.get(len);
    CFS_ASSIGN(std::size_t n, sys::pread_full(f.fd_.get(), out, off));
    if (f.reported_) objects_->on_read(*f.reported_, off, n);
    return std::span<const std::byte>(out.data(), n);
  }
  // Verified read: whole Merkle data blocks are read and checked, then the requested range is
  // returned from the checked copy (never from the file again: it may change under us).
  const std::uint64_t bs = f.tree_->params.block_size;
  const std::uint64_t first = off / bs;
  const std::uint64_t start = first * bs;
  const std::uint64_t end = std::min<std::uint64_t>((off + len + bs - 1) / bs * bs, f.data_size_);
  auto blocks = buf.get(static_cast<std::size_t>(end - start));
  CFS_ASSIGN(std::size_t n, sys::pread_full(f.fd_.get(), blocks, start));
  if (n != blocks.size()) {
    Error e = Error::from_errno("verified read: object was truncated", EIO);
    report(f, e);
    return fail(std::move(e));
  }
  if (!verity::verify_blocks(*f.tree_, first, blocks)) {
    Error e = Error::from_errno("verified read at offset " + std::to_string(start) +
                                    ": data does not match the fs-verity digest",
                                EIO);
    report(f, e);
    return fail(std::move(e));
  }
  if (f.reported_) objects_->on_read(*f.reported_, off, len);
  return std::span<const std::byte>(blocks.data() + (off - start), len);
}

}  // namespace cfs::vfs
