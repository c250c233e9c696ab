// SPDX-License-Identifier: Apache-2.0
#include "cfs/fuse/server.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>

#include "cfs/util/sys.h"
#include "cfs/verity/merkle.h"
#include "fuse/session.h"

namespace cfs::fuse {
namespace {

// The image never changes while mounted: let the kernel cache entries and attributes for as
// long as it likes (a year), negative entries included.
constexpr double kForever = 365.0 * 24 * 3600;
/// Descriptors the server's table holds from the start (sys::reserve_fd_table): a lazy mount's
/// eight fetch threads hold up to 128 each (a 64-object batch: its unnamed files and their
/// reopened copies), beside the open files; 32 KiB of table.
constexpr unsigned kFdTableSlots = 4096;

// Buffers for the copies opens hash objects from (vfs::ContentCopy), reused: a fresh buffer of
// a few MiB costs a page fault per 4 KiB on first touch and an munmap after, which cost as much
// as hashing it (perf, apt-get's first exec). At most one kept per CPU (the hashing is
// CPU-bound, so more copies at once gain nothing), each at most kKeepBytes: the server's
// memory stays level (docs/fuse.md "Memory").
class CopyPool {
 public:
  static constexpr std::size_t kKeepBytes = 4u << 20;
  std::unique_ptr<vfs::ContentCopy> take() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        auto c = std::move(free_.back());
        free_.pop_back();
        return c;
      }
    }
    // Sized for what is kept from the start, so that a growing copy never reallocates (a new
    // mapping to fault in again); at 4 MiB, AlignedBuffer backs it with huge pages where the
    // kernel has them (one fault per 2 MiB instead of 512).
    auto c = std::make_unique<vfs::ContentCopy>();
    c->bytes.reserve(kKeepBytes);
    return c;
  }
  void give(std::unique_ptr<vfs::ContentCopy> c) {
    c->given.reset();  // a provider's bytes (vfs::Prebuilt) are freed once stored
    if (c->bytes.capacity() > kKeepBytes) return;
    std::lock_guard lock(mu_);
    if (free_.size() < std::max(1u, sys::available_cpus())) free_.push_back(std::move(c));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<vfs::ContentCopy>> free_;
};

// Requests served, by kind, and the time their handlers took (CFS_FUSE_STATS=FILE: written as
// JSON when the server stops; docs/fuse.md). For finding where a program's start goes: the
// handler time against the wall time shows what the kernel and the hand-overs add.
enum class Op { kLookup, kGetattr, kReadlink, kOpen, kRead, kRelease, kReaddir, kXattr, kCount };
constexpr std::array<const char*, static_cast<std::size_t>(Op::kCount)> kOpNames = {
    "lookup", "getattr", "readlink", "open", "read", "release", "readdir", "xattr"};

struct Stats {
  struct Counter {
    std::atomic<std::uint64_t> n{0}, ns{0};
  };
  std::array<Counter, static_cast<std::size_t>(Op::kCount)> ops;
  std::atomic<std::uint64_t> read_bytes{0};    ///< returned by READ
  std::atomic<std::uint64_t> stored_files{0};  ///< verified copies stored at open
  std::atomic<std::uint64_t> stored_bytes{0};

  std::string json() const {
    std::string out = "{";
    for (std::size_t i = 0; i < ops.size(); ++i) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "\"%s\": {\"count\": %llu, \"ms\": %.3f}, ", kOpNames[i],
                    static_cast<unsigned long long>(ops[i].n.load()),
                    static_cast<double>(ops[i].ns.load()) / 1e6);
      out += buf;
    }
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "\"read_bytes\": %llu, \"stored_files\": %llu, \"stored_bytes\": %llu}\n",
                  static_cast<unsigned long long>(read_bytes.load()),
                  static_cast<unsigned long long>(stored_files.load()),
                  static_cast<unsigned long long>(stored_bytes.load()));
    return out + buf;
  }
};

// Counts one request of kind `op` and its handler's time; free when stats are off.
class Timed {
 public:
  Timed(Stats* stats, Op op) : stats_(stats), op_(op) {
    if (stats_) t0_ = std::chrono::steady_clock::now();
  }
  ~Timed() {
    if (!stats_) return;
    auto& c = stats_->ops[static_cast<std::size_t>(op_)];
    c.n.fetch_add(1, std::memory_order_relaxed);
    c.ns.fetch_add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  std::chrono::steady_clock::now() - t0_)
                                                  .count()),
                   std::memory_order_relaxed);
  }
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  Stats* stats_;
  Op op_;
  std::chrono::steady_clock::time_point t0_;
};

// The session's userdata.
struct Server {
  vfs::Filesystem* fs = nullptr;
  fuse_session* se = nullptr;    ///< set before the loop starts, read only afterwards
  std::unique_ptr<Stats> stats;  ///< null unless CFS_FUSE_STATS is set
  CopyPool copies;
  std::mutex mu;
  std::condition_variable first_done;  ///< a first open finished (guarded by mu)
  /// Nodes whose first open is under way (false) or over (true); guarded by mu.
  std::unordered_map<fuse_ino_t, bool> opened;
};

Server& server_of(fuse_req_t req) { return *static_cast<Server*>(fuse_req_userdata(req)); }
vfs::Filesystem& fs_of(fuse_req_t req) { return *server_of(req).fs; }
Timed timed(fuse_req_t req, Op op) { return Timed(server_of(req).stats.get(), op); }

// FUSE reserves node id 1 for the root; every other node id is the EROFS nid (never 1 in a
// valid image: nid 1 would be inside the composefs header).
vfs::Ino to_ino(const vfs::Filesystem& fs, fuse_ino_t id) {
  return id == FUSE_ROOT_ID ? fs.root() : static_cast<vfs::Ino>(id);
}
fuse_ino_t to_node(const vfs::Filesystem& fs, vfs::Ino ino) {
  return ino == fs.root() ? FUSE_ROOT_ID : static_cast<fuse_ino_t>(ino);
}

bool fill_entry(const vfs::Filesystem& fs, const struct stat& st, fuse_entry_param& e) {
  std::memset(&e, 0, sizeof e);
  if (st.st_ino == FUSE_ROOT_ID && st.st_ino != fs.root()) return false;
  e.ino = to_node(fs, st.st_ino);
  e.attr = st;
  e.attr_timeout = kForever;
  e.entry_timeout = kForever;
  return true;
}

// Set at init when the kernel can do without OPENDIR (FUSE_CAP_NO_OPENDIR_SUPPORT).
std::atomic<bool> no_opendir{false};

void op_init(void*, fuse_conn_info* conn) noexcept {
  auto want = [&](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_READDIRPLUS);
  // Always readdirplus: attributes are cheap here (one inode read from the mapped image), and
  // the adaptive mode falls back to plain READDIR after the first chunk of a directory, which
  // costs a LOOKUP round trip per entry later (stat, ls -l, find -printf).
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_CACHE_SYMLINKS);
  // Directories need no per-open state: answering OPENDIR with ENOSYS makes the kernel stop
  // sending OPENDIR/RELEASEDIR and cache every listing (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR),
  // which halves the requests of a warm `find`.
  want(FUSE_CAP_NO_OPENDIR_SUPPORT);
  no_opendir = (conn->want & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  // Never splice from the object file: the bytes must come from the verified copy.
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_SPLICE_READ);
  conn->max_readahead = 1u << 20;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  Timed t = timed(req, Op::kLookup);
  trampoline(req, [&] {
    auto& fs = fs_of(req);
    auto st = fs.lookup(to_ino(fs, parent), name);
    fuse_entry_param e;
    if (!st) {
      if (st.error().is_errno(ENOENT)) {
        // Negative entry, cached for good (ino 0).
        std::memset(&e, 0, sizeof e);
        e.entry_timeout = kForever;
        fuse_reply_entry(req, &e);
        return;
      }
      return reply_error(req, st.error());
    }
    if (!fill_entry(fs, *st, e)) return (void)fuse_reply_err(req, EIO);
    fuse_reply_entry(req, &e);
  });
}

// Node ids are the image's nids: there is no node table to shrink.
void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) noexcept { fuse_reply_none(req); }
void op_forget_multi(fuse_req_t req, size_t, fuse_forget_data*) noexcept { fuse_reply_none(req); }

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) noexcept {
  Timed t = timed(req, Op::kGetattr);
  trampoline(req, [&] {
    auto& fs = fs_of(req);
    auto st = fs.getattr(to_ino(fs, ino));
    if (!st) return reply_error(req, st.error());
    fuse_reply_attr(req, &*st, kForever);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) noexcept {
  Timed t = timed(req, Op::kReadlink);
  trampoline(req, [&] {
    auto& fs = fs_of(req);
    reply_readlink(req, fs.readlink(to_ino(fs, ino)));
  });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  trampoline(req, [&] {
    if (no_opendir) return (void)fuse_reply_err(req, ENOSYS);
    auto& fs = fs_of(req);
    auto st = fs.getattr(to_ino(fs, ino));
    if (!st) return reply_error(req, st.error());
    if (!S_ISDIR(st->st_mode)) return (void)fuse_reply_err(req, ENOTDIR);
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  });
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  auto& fs = fs_of(req);
  std::string buf(size, '\0');
  std::size_t used = 0;
  Status inner;
  auto st =
      fs.readdir(to_ino(fs, ino), static_cast<std::uint64_t>(off), [&](const vfs::DirItem& d) {
        std::string name(d.name);
        std::size_t need;
        auto next = static_cast<off_t>(d.next_offset);
        if (plus) {
          fuse_entry_param e;
          std::memset(&e, 0, sizeof e);
          // "." and ".." carry no entry (the kernel skips them); a child that fails getattr is
          // listed without attributes so the later lookup reports its error.
          if (name != "." && name != "..") {
            if (auto cst = fs.getattr(d.ino); cst && !fill_entry(fs, *cst, e))
              std::memset(&e, 0, sizeof e);
          }
          if (e.ino == 0) {
            e.attr.st_ino = d.ino;
            e.attr.st_mode = d.type;
          }
          need =
              fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &e, next);
        } else {
          struct stat sst;
          std::memset(&sst, 0, sizeof sst);
          sst.st_ino = d.ino;
          sst.st_mode = d.type;
          need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &sst, next);
        }
        if (need > size - used) return false;
        used += need;
        return true;
      });
  if (!st) return reply_error(req, st.error());
  fuse_reply_buf(req, buf.data(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) noexcept {
  Timed t = timed(req, Op::kReaddir);
  trampoline(req, [&] { do_readdir(req, ino, size, off, false); });
}
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    fuse_file_info*) noexcept {
  Timed t = timed(req, Op::kReaddir);
  trampoline(req, [&] { do_readdir(req, ino, size, off, true); });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept { fuse_reply_err(req, 0); }

// The first open of an object hashes all of it (its Merkle tree); a small object is hashed from
// a copy in memory, and that verified copy goes straight into the kernel's page cache for the
// node (FUSE_NOTIFY_STORE), before the open is answered. The reads that follow (an exec's page
// faults, a library's mmap) then find every page cached (FOPEN_KEEP_CACHE) instead of each
// costing a READ round trip and hashing the same bytes a second time. A lazy fetch's tree comes
// with the bytes it was hashed from when the provider kept them (vfs::Prebuilt): they are stored
// the same way, unread and unhashed. A tree known already (a cached one, a fetch's without its
// bytes) gives no copy: reading the object whole would then be extra work for a program that
// reads little of it. Only on the node's first open, and other opens of
// the node wait until it is over: the kernel locks the pages it stores into, and a read holds
// them locked until a worker answers it, so a store that ran while a read of the node was
// queued could wait for a worker that never comes (with -s, or all threads storing). Until the
// first open is answered, no open of the node has been, so no read of it can exist. (The
// waiting opens would otherwise build the same tree a second time.) Best effort: if the kernel
// refuses, the reads come as READ requests and are verified there as always.

// The first open of `node` in this mount gets a FirstOpen that says so (and must finish() it);
// any other open waits while a first one is under way, then gets one that does not.
class FirstOpen {
 public:
  FirstOpen(Server& srv, fuse_ino_t node) : srv_(srv), node_(node) {
    std::unique_lock lock(srv_.mu);
    for (;;) {
      auto [it, inserted] = srv_.opened.try_emplace(node_, false);
      if (inserted) {
        first_ = true;
        return;
      }
      if (it->second) return;
      srv_.first_done.wait(lock);
    }
  }
  ~FirstOpen() { finish(false); }  // an open that ended early (error, exception) gives it back
  FirstOpen(const FirstOpen&) = delete;
  FirstOpen& operator=(const FirstOpen&) = delete;
  bool first() const noexcept { return first_; }
  /// Done with the node: later opens go ahead (as first ones again when `ok` is false).
  void finish(bool ok) {
    if (!first_) return;
    first_ = false;
    {
      std::lock_guard lock(srv_.mu);
      if (ok)
        srv_.opened[node_] = true;
      else
        srv_.opened.erase(node_);
    }
    srv_.first_done.notify_all();
  }

 private:
  Server& srv_;
  fuse_ino_t node_;
  bool first_ = false;
};

void store_verified_copy(Server& srv, fuse_ino_t node, const vfs::ContentCopy& copy) {
  if (copy.size == 0 || !srv.se) return;
  // Not FUSE_BUFVEC_INIT: it is a C compound literal, which clang refuses in C++
  // (-Wc99-extensions; the CI's sanitizer build). The same fields, set one by one.
  fuse_bufvec bv{};
  bv.count = 1;
  bv.buf[0].size = copy.size;
  bv.buf[0].fd = -1;
  bv.buf[0].mem = const_cast<std::byte*>(copy.data().data());
  if (fuse_lowlevel_notify_store(srv.se, node, 0, &bv, static_cast<fuse_buf_copy_flags>(0)) == 0 &&
      srv.stats) {
    srv.stats->stored_files.fetch_add(1, std::memory_order_relaxed);
    srv.stats->stored_bytes.fetch_add(copy.size, std::memory_order_relaxed);
  }
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  Timed t = timed(req, Op::kOpen);
  trampoline(req, [&] {
    auto& srv = server_of(req);
    auto& fs = *srv.fs;
    struct Lend {  // back to the pool however the open ends
      CopyPool& pool;
      std::unique_ptr<vfs::ContentCopy> c;
      ~Lend() { pool.give(std::move(c)); }
    } copy{srv.copies, srv.copies.take()};
    // Only a node's first open asks for a copy: later ones find the pages cached.
    FirstOpen once(srv, ino);
    auto f = fs.open_file(to_ino(fs, ino), fi->flags, once.first() ? copy.c.get() : nullptr);
    if (!f) return reply_error(req, f.error());
    fi->keep_cache = (*f)->cacheable() ? 1 : 0;
    // Only pages the kernel keeps across opens are worth storing.
    if (once.first() && fi->keep_cache) store_verified_copy(srv, ino, *copy.c);
    once.finish(true);
    fi->fh = reinterpret_cast<std::uint64_t>(f->get());
    if (fuse_reply_open(req, fi) == 0) (void)f->release();  // interrupted: f closes here
  });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
  Timed t = timed(req, Op::kRead);
  trampoline(req, [&] {
    thread_local vfs::ReadBuffer buf;
    auto* f = reinterpret_cast<vfs::OpenFile*>(fi->fh);
    auto data = fs_of(req).read(*f, static_cast<std::uint64_t>(off), size, buf);
    if (auto* st = server_of(req).stats.get(); st && data)
      st->read_bytes.fetch_add(data->size(), std::memory_order_relaxed);
    reply_data(req, data);
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  Timed t = timed(req, Op::kRelease);
  delete reinterpret_cast<vfs::OpenFile*>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
  Timed t = timed(req, Op::kXattr);
  trampoline(req, [&] {
    auto& fs = fs_of(req);
    reply_xattr_value(req, fs.getxattr(to_ino(fs, ino), name), size);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  Timed t = timed(req, Op::kXattr);
  trampoline(req, [&] {
    auto& fs = fs_of(req);
    reply_xattr_names(req, fs.listxattr(to_ino(fs, ino)), size);
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t) noexcept {
  trampoline(req, [&] {
    const auto& info = fs_of(req).image().info();
    struct statvfs sv;
    std::memset(&sv, 0, sizeof sv);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = info.blocks;
    sv.f_files = info.inos;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
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
    .readlink = op_readlink,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .forget_multi = op_forget_multi,
    .readdirplus = op_readdirplus,
};
#pragma GCC diagnostic pop

// The kernel caps a FUSE mount's readahead at its VM default (128 KiB), so reads arrive as
// 128 KiB requests. A larger window means fewer round trips and longer hash batches; as root
// we raise it through the mount's bdi (found via mountinfo: a stat of the mount point would
// wait for this very server). Best effort.
void raise_readahead(const std::string& mountpoint) {
  char real[PATH_MAX];
  if (!::realpath(mountpoint.c_str(), real)) return;
  std::FILE* f = std::fopen("/proc/self/mountinfo", "re");
  if (!f) return;
  char line[4096];
  std::string dev;
  while (std::fgets(line, sizeof line, f)) {
    char devbuf[64], mnt[PATH_MAX];
    if (std::sscanf(line, "%*s %*s %63s %*s %4095s", devbuf, mnt) == 2 &&
        std::strcmp(mnt, real) == 0)
      dev = devbuf;  // the last match is the topmost mount
  }
  std::fclose(f);
  if (dev.empty()) return;
  if (std::FILE* ra = std::fopen(("/sys/class/bdi/" + dev + "/read_ahead_kb").c_str(), "we")) {
    std::fputs("1024\n", ra);
    std::fclose(ra);
  }
}

// Keeps a long-running server's memory level (docs/fuse.md "Memory"). glibc gives new threads
// their own arenas (up to 8 per CPU) and, after the first large free, raises its mmap threshold
// so that later large buffers (directory listings of big directories) come from the arenas,
// whose freed pages stay resident. Every walk then leaves a little more resident memory behind,
// on whichever worker threads served it. One arena per CPU and a fixed threshold (which turns
// the adjustment off) keep RSS flat across walks; large buffers are mapped and unmapped whole.
void tune_malloc() {
  constexpr int kMmapThreshold = 128 << 10;  // glibc's initial value
  ::mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, sys::available_cpus())));
  ::mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
}

// The first digest a process computes pays for what hashing sets up once (OpenSSL's digest
// fetch among it): about 1 ms, which fell on the first open of the first program started on a
// new mount (apt-get's own executable, 51 KB: 1.1 ms to open, 0.15 ms after a warm-up). Done on a
// thread of its own as soon as the server runs, while the kernel's first lookups arrive; an open
// that comes earlier waits for the same one-time setup, as before.
void warm_up_hashing() {
  static const std::byte block[8192] = {};
  for (auto alg : {verity::HashAlg::kSha256, verity::HashAlg::kSha512}) {
    verity::Params p;
    p.alg = alg;
    (void)verity::build_merkle_tree(std::span<const std::byte>(block, sizeof block), p, 1);
  }
}

struct ArgsGuard {
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  ~ArgsGuard() { fuse_opt_free_args(&args); }
};

}  // namespace

Status run_session(const fuse_lowlevel_ops& ops, void* userdata, const ServeOptions& opts,
                   bool writable, fuse_session** session) {
  if (::access("/dev/fuse", R_OK | W_OK) != 0)
    return fail_errno("/dev/fuse (load the fuse module, or give the container the device)");
  tune_malloc();
  ArgsGuard a;
  auto add = [&](const std::string& s) {
    if (fuse_opt_add_arg(&a.args, s.c_str()) != 0) throw std::bad_alloc();
  };
  add("cfs");
  if (opts.debug) add("-d");
  std::string o = writable ? "rw" : "ro";
  o += ",default_permissions,subtype=composefs";
  if (!opts.fsname.empty()) {
    std::string name;
    for (char c : opts.fsname) {  // fuse_opt treats ',' and '\' specially
      if (c == ',' || c == '\\') name.push_back('\\');
      name.push_back(c);
    }
    o += ",fsname=" + name;
  }
  // The kernel mount is visible to every user; as root, so is this one.
  if (::geteuid() == 0) o += ",allow_other";
  for (const auto& e : opts.extra) o += "," + e;
  add("-o");
  add(o);

  fuse_session* se = fuse_session_new(&a.args, &ops, sizeof ops, userdata);
  if (!se) return fail(Errc::kInvalidInput, "fuse: cannot create session (bad -o option?)");
  if (session) *session = se;
  struct SessionGuard {
    fuse_session* se;
    bool handlers = false, mounted = false;
    ~SessionGuard() {
      if (mounted) fuse_session_unmount(se);
      if (handlers) fuse_remove_signal_handlers(se);
      fuse_session_destroy(se);
    }
  } guard{se};
  if (fuse_set_signal_handlers(se) != 0) return fail(Errc::kInvalidInput, "fuse: signal handlers");
  guard.handlers = true;
  if (opts.on_signals && !opts.on_signals())
    return fail_errno("mount " + opts.mountpoint + ": interrupted before it was mounted",
                      ECANCELED);
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0)
    return fail_errno("mount " + opts.mountpoint, EIO);
  guard.mounted = true;
  if (::geteuid() == 0) raise_readahead(opts.mountpoint);
  if (opts.on_mounted) opts.on_mounted();
  if (fuse_daemonize(opts.foreground || opts.debug ? 1 : 0) != 0)
    return fail_errno("daemonize", EIO);
  // Now, while this process has one thread (daemonized: the child of a fork): the workers open
  // an object file per open (a lazy mount also two per fetched object), and each time the
  // descriptor table had to double while they ran, every thread opening one waited for an RCU
  // grace period, 7-16 ms (session 12: a lazy `dpkg --version` stalled 15 ms with its open's
  // object verified, twice a run).
  (void)sys::reserve_fd_table(kFdTableSlots);
  if (opts.on_serving) opts.on_serving(!(opts.foreground || opts.debug));
  int rc;
  if (opts.single_thread) {
    rc = fuse_session_loop(se);
  } else {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    if (opts.max_threads) fuse_loop_cfg_set_max_threads(cfg, opts.max_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  // rc > 0 is the signal that ended the loop: a normal way to stop.
  if (rc < 0) return fail_errno("fuse session", -rc);
  return {};
}

Status serve(std::unique_ptr<vfs::Filesystem> fs, const ServeOptions& opts) {
  Server srv;
  srv.fs = fs.get();
  std::jthread warm;  // joined before srv goes away
  ServeOptions o = opts;
  o.on_serving = [&](bool daemonized) {
    // Here, not earlier: the process may have forked to daemonize, and threads do not follow.
    warm = std::jthread(warm_up_hashing);
    if (opts.on_serving) opts.on_serving(daemonized);
  };
  const char* stats_path = std::getenv("CFS_FUSE_STATS");
  if (stats_path && *stats_path) srv.stats = std::make_unique<Stats>();
  Status st = run_session(kOps, &srv, o, false, &srv.se);
  if (srv.stats) {
    // Written whole under a temporary name, so a reader never sees half of it.
    std::string tmp = std::string(stats_path) + ".tmp";
    if (std::FILE* f = std::fopen(tmp.c_str(), "we")) {
      std::string j = srv.stats->json();
      bool ok = std::fwrite(j.data(), 1, j.size(), f) == j.size();
      ok = std::fclose(f) == 0 && ok;
      if (ok) (void)std::rename(tmp.c_str(), stats_path);
    }
  }
  return st;
}

}  // namespace cfs::fuse
