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
#include "cfs/util/sys.h"
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

fuse_entry_param entry_param(const vfs::MergedEntry& m) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = m.node;
  e.attr = m.st;
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kTimeout;
  return e;
}

// The entry counts one lookup only if the kernel got it (an interrupted request's reply fails).
void reply_entry(fuse_req_t req, const Result<vfs::MergedEntry>& r) {
  if (!r) return reply_error(req, r.error());
  fuse_entry_param e = entry_param(*r);
  if (fuse_reply_entry(req, &e) != 0) fs_of(req).forget(r->node, 1);
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

// The kernel dropped its inode (memory pressure, eviction): the node table shrinks with it.
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) noexcept {
  forget_trampoline(req, [&] { fs_of(req).forget(ino, nlookup); });
}
void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) noexcept {
  forget_trampoline(req, [&] {
    for (size_t i = 0; i < count; ++i) fs_of(req).forget(forgets[i].ino, forgets[i].nlookup);
  });
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    auto st = fs_of(req).getattr(ino);
    // An open file whose name is gone (unlinked, replaced) still has its attributes.
    const vfs::MergedFile* f = file_of(fi);
    if (!st && (st.error().is_errno(ESTALE) || st.error().is_errno(ENOENT)) && f != nullptr &&
        f->upper_fd() >= 0) {
      if (auto s = sys::fstat(f->upper_fd())) return (void)fuse_reply_attr(req, &*s, 0);
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
  trampoline(req, [&] { reply_readlink(req, fs_of(req).readlink(ino)); });
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
    fuse_entry_param e = entry_param(*r);
    fi->keep_cache = 0;
    fi->fh = reinterpret_cast<std::uint64_t>(f.get());
    if (fuse_reply_create(req, &e, fi) == 0)
      (void)f.release();
    else
      fs_of(req).forget(r->node, 1);
  });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    thread_local vfs::ReadBuffer buf;
    reply_data(req, fs_of(req).read(open_file(fi), static_cast<std::uint64_t>(off), size, buf));
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
    const int fd = f != nullptr ? f->upper_fd() : -1;
    if (fd < 0) return (void)fuse_reply_err(req, 0);  // lower data: nothing to write back
    reply_status(req, datasync ? sys::fdatasync(fd, "upper file") : sys::fsync(fd, "upper file"));
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
      st.st_ino = d.ino;
      st.st_mode = d.type;
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
  trampoline(req, [&] { reply_xattr_value(req, fs_of(req).getxattr(ino, name), size); });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  trampoline(req, [&] { reply_xattr_names(req, fs_of(req).listxattr(ino), size); });
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

// In the struct's declaration order; the operations left out are ENOSYS on purpose (GCC 12 warns
// about every designated initializer left out, hence the pragma).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
constexpr fuse_lowlevel_ops kOps = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .create = op_create,
    .forget_multi = op_forget_multi,
};
#pragma GCC diagnostic pop

}  // namespace

Status serve(std::unique_ptr<vfs::MergedFs> fs, const ServeOptions& opts) {
  return run_session(kOps, fs.get(), opts, true);
}

}  // namespace cfs::fuse
