// SPDX-License-Identifier: Apache-2.0
// FUSE glue of the writable mount (vfs::MergedFs): one noexcept trampoline per operation.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "cfs/fuse/server.h"
#include "fuse/session.h"

namespace cfs::fuse {
namespace {

// Every change goes through this server, and the kernel drops what its own operations make
// stale; a short timeout bounds anything else (a copy-up changing st_blocks, say).
constexpr double kTimeout = 1.0;
// Attributes are not cached: a copy-up or a change through another name makes them stale.
constexpr double kAttrTimeout = 0.0;

vfs::MergedFs& fs_of(fuse_req_t req) {
  return *static_cast<vfs::MergedFs*>(fuse_req_userdata(req));
}

vfs::Caller caller(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return vfs::Caller{c->uid, c->gid};
}

void reply_entry(fuse_req_t req, const Result<vfs::MergedEntry>& r) {
  if (!r) return reply_error(req, r.error());
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = r->node;
  e.attr = r->st;
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kTimeout;
  fuse_reply_entry(req, &e);
}

void reply_status(fuse_req_t req, const Status& st) {
  if (!st) return reply_error(req, st.error());
  fuse_reply_err(req, 0);
}

vfs::MergedFile* file_of(fuse_file_info* fi) {
  return fi ? reinterpret_cast<vfs::MergedFile*>(fi->fh) : nullptr;
}
// For operations on an open file (fi is always set).
const vfs::MergedFile& open_file(fuse_file_info* fi) {
  return *reinterpret_cast<const vfs::MergedFile*>(fi->fh);
}

void op_init(void*, fuse_conn_info* conn) noexcept {
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
                                       FUSE_CAP_SPLICE_READ | FUSE_CAP_WRITEBACK_CACHE);
  conn->max_readahead = 1u << 20;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  trampoline(req, [&] {
    auto r = fs_of(req).lookup(parent, name);
    if (!r && r.error().is_errno(ENOENT)) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      e.entry_timeout = kTimeout;
      fuse_reply_entry(req, &e);
      return;
    }
    reply_entry(req, r);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) noexcept { fuse_reply_none(req); }
void op_forget_multi(fuse_req_t req, size_t, fuse_forget_data*) noexcept { fuse_reply_none(req); }

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    auto st = fs_of(req).getattr(ino);
    // An open file whose name is gone (unlinked, replaced) still has its attributes.
    const vfs::MergedFile* f = file_of(fi);
    if (!st && (st.error().is_errno(ESTALE) || st.error().is_errno(ENOENT)) && f != nullptr &&
        f->upper_fd() >= 0) {
      struct stat s;
      if (::fstat(f->upper_fd(), &s) == 0) return (void)fuse_reply_attr(req, &s, 0);
    }
    if (!st) return reply_error(req, st.error());
    fuse_reply_attr(req, &*st, kAttrTimeout);
  });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    vfs::SetAttr a;
    if (to_set & FUSE_SET_ATTR_MODE) a.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) a.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) a.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) a.size = static_cast<std::uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      a.atime = timespec{0, UTIME_NOW};
    else if (to_set & FUSE_SET_ATTR_ATIME)
      a.atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      a.mtime = timespec{0, UTIME_NOW};
    else if (to_set & FUSE_SET_ATTR_MTIME)
      a.mtime = attr->st_mtim;
    auto st = fs_of(req).setattr(ino, a, file_of(fi));
    if (!st) return reply_error(req, st.error());
    fuse_reply_attr(req, &*st, kAttrTimeout);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) noexcept {
  trampoline(req, [&] {
    auto target = fs_of(req).readlink(ino);
    if (!target) return reply_error(req, target.error());
    fuse_reply_readlink(req, target->c_str());
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              dev_t rdev) noexcept {
  trampoline(req,
             [&] { reply_entry(req, fs_of(req).mknod(parent, name, mode, rdev, caller(req))); });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) noexcept {
  trampoline(req, [&] { reply_entry(req, fs_of(req).mkdir(parent, name, mode, caller(req))); });
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) noexcept {
  trampoline(req, [&] { reply_entry(req, fs_of(req).symlink(parent, name, link, caller(req))); });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) noexcept {
  trampoline(req, [&] { reply_entry(req, fs_of(req).link(ino, parent, name)); });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  trampoline(req, [&] { reply_status(req, fs_of(req).unlink(parent, name)); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  trampoline(req, [&] { reply_status(req, fs_of(req).rmdir(parent, name)); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned flags) noexcept {
  trampoline(
      req, [&] { reply_status(req, fs_of(req).rename(parent, name, newparent, newname, flags)); });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    auto f = fs_of(req).open(ino, fi->flags);
    if (!f) return reply_error(req, f.error());
    fi->keep_cache = 0;
    fi->fh = reinterpret_cast<std::uint64_t>(f->get());
    if (fuse_reply_open(req, fi) == 0) (void)f->release();
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    std::unique_ptr<vfs::MergedFile> f;
    auto r = fs_of(req).create(parent, name, mode, fi->flags, caller(req), f);
    if (!r) return reply_error(req, r.error());
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.ino = r->node;
    e.attr = r->st;
    e.attr_timeout = kAttrTimeout;
    e.entry_timeout = kTimeout;
    fi->keep_cache = 0;
    fi->fh = reinterpret_cast<std::uint64_t>(f.get());
    if (fuse_reply_create(req, &e, fi) == 0) (void)f.release();
  });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    thread_local vfs::ReadBuffer buf;
    auto data = fs_of(req).read(open_file(fi), static_cast<std::uint64_t>(off), size, buf);
    if (!data) return reply_error(req, data.error());
    fuse_reply_buf(req, reinterpret_cast<const char*>(data->data()), data->size());
  });
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    auto n = fs_of(req).write(
        open_file(fi), std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf), size),
        static_cast<std::uint64_t>(off));
    if (!n) return reply_error(req, n.error());
    fuse_reply_write(req, *n);
  });
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept { fuse_reply_err(req, 0); }

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    const vfs::MergedFile* f = file_of(fi);
    int fd = f != nullptr ? f->upper_fd() : -1;
    if (fd >= 0 && (datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0)
      return reply_status(req, fail_errno("fsync"));
    fuse_reply_err(req, 0);
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  delete file_of(fi);
  fuse_reply_err(req, 0);
}

// A directory stream is a snapshot taken at opendir: offsets are indices into it, so they stay
// valid whatever happens to the directory meanwhile.
struct DirSnapshot {
  std::vector<vfs::MergedDirent> entries;
};

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    auto list = fs_of(req).list_dir(ino);
    if (!list) return reply_error(req, list.error());
    auto snap = std::make_unique<DirSnapshot>();
    snap->entries = std::move(*list);
    fi->fh = reinterpret_cast<std::uint64_t>(snap.get());
    if (fuse_reply_open(req, fi) == 0) (void)snap.release();
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    const auto* snap = reinterpret_cast<const DirSnapshot*>(fi->fh);
    std::string buf(size, '\0');
    std::size_t used = 0;
    for (auto i = static_cast<std::size_t>(off); i < snap->entries.size(); ++i) {
      const auto& d = snap->entries[i];
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = d.st.st_ino;
      st.st_mode = d.st.st_mode & S_IFMT;
      std::size_t need = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                                           static_cast<off_t>(i + 1));
      if (need > size - used) break;
      used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  delete reinterpret_cast<DirSnapshot*>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
  trampoline(req, [&] {
    auto v = fs_of(req).getxattr(ino, name);
    if (!v) return reply_error(req, v.error());
    reply_xattr_data(req, *v, size);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  trampoline(req, [&] {
    auto names = fs_of(req).listxattr(ino);
    if (!names) return reply_error(req, names.error());
    const bool root = fuse_req_ctx(req)->uid == 0;
    std::string out;
    for (const auto& n : *names) {
      if (!root && n.rfind("trusted.", 0) == 0) continue;
      out += n;
      out.push_back('\0');
    }
    reply_xattr_data(req, out, size);
  });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) noexcept {
  trampoline(req, [&] {
    reply_status(req, fs_of(req).setxattr(ino, name, std::string_view(value, size), flags));
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) noexcept {
  trampoline(req, [&] { reply_status(req, fs_of(req).removexattr(ino, name)); });
}

void op_statfs(fuse_req_t req, fuse_ino_t) noexcept {
  trampoline(req, [&] {
    auto sv = fs_of(req).statfs();
    if (!sv) return reply_error(req, sv.error());
    fuse_reply_statfs(req, &*sv);
  });
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.fsync = op_fsync;
  ops.release = op_release;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.setxattr = op_setxattr;
  ops.removexattr = op_removexattr;
  ops.statfs = op_statfs;
  return ops;
}

}  // namespace

Status serve(std::unique_ptr<vfs::MergedFs> fs, const ServeOptions& opts) {
  static const fuse_lowlevel_ops ops = make_ops();
  return run_session(ops, fs.get(), opts, true);
}

}  // namespace cfs::fuse
