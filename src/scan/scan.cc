// SPDX-License-Identifier: Apache-2.0
#include "cfs/scan/scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "cfs/tree/object_name.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::scan {
namespace {

// Files at least this large are queued for any free worker instead of being digested by the
// worker scanning their directory, so one huge file cannot serialize the end of the scan.
constexpr std::uint64_t kDeferDigestMin = 1ULL << 20;
constexpr std::size_t kDirentBufSize = 256 * 1024;
// assemble() hands the freed records back every this many entries: the tree is built while
// the records are freed, and without this both are resident at once (/usr, 204k entries:
// 160 -> 130 MB at the end of the scan, in 12 calls; no CPU change measured).
constexpr std::size_t kTrimEvery = 16384;

struct DirRec;

struct Rec {
  std::string name;
  Node node;
  std::unique_ptr<DirRec> dir;  // directories only
  dev_t dev = 0;
  ino_t ino = 0;
  bool multi_link = false;  // st_nlink > 1 on a non-directory that may be merged
};

struct DirRec {
  std::string relpath;  // relative to the scan root; "" for the root itself
  std::vector<Rec> entries;
};

struct FileTask {
  Rec* rec;
  std::string relpath;
};

// Most files of a system tree are small; hashed one at a time a SHA-NI core idles half the
// time. A directory's files with trees of at most two levels (up to 512 KiB) are read into a
// per-thread buffer and digested together, every level interleaved across them
// (verity::digest_small_many), 16 files or 1 MiB at a time.
constexpr std::size_t kSmallMax = 512 * 1024;
constexpr std::size_t kBatchBytes = 1 << 20;

struct SmallBatch {
  std::size_t count = 0;
  std::size_t used = 0;                                     // bytes of buffer() filled
  std::array<std::size_t, verity::kSmallBatchMax> index{};  // into DirRec::entries
  std::array<std::size_t, verity::kSmallBatchMax> offset{};
  std::array<std::size_t, verity::kSmallBatchMax> size{};
  std::array<std::string, verity::kSmallBatchMax> relpath;
  bool full() const { return count == verity::kSmallBatchMax || used >= kBatchBytes; }
  // Room for a batch just under the threshold plus the largest file and one byte more, read
  // to notice a file that grew.
  static std::span<std::byte> buffer() {
    constexpr std::size_t kSize = kBatchBytes + kSmallMax + 1;
    thread_local AlignedBuffer buf(kSize);
    return buf.get(kSize);
  }
};

std::string join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string p;
  p.reserve(dir.size() + 1 + name.size());
  p.append(dir).append("/").append(name);
  return p;
}

bool smaller_file(const FileTask& a, const FileTask& b) {
  return a.rec->node.size < b.rec->node.size;
}

// Errors name only the entry, as upstream's "error accessing PATH: strerror" does: the
// syscall's own context is replaced, its error code (errno or cfs) kept.
class Scanner {
 public:
  Scanner(std::string root_path, const ScanOptions& opts)
      : root_path_(std::move(root_path)), opts_(opts) {
    params_.alg = opts.hash;
    small_max_ = std::min<std::uint64_t>(kSmallMax, verity::small_many_max(params_));
  }

  Result<ScanResult> run();

 private:
  std::string display(const std::string& relpath) const {
    if (relpath.empty()) return root_path_;
    return root_path_.ends_with('/') ? root_path_ + relpath : root_path_ + "/" + relpath;
  }
  Status fill_entry(int dirfd, const std::string& name, const std::string& relpath,
                    const struct stat& st, Rec& rec, std::vector<FileTask>& deferred, bool& small);
  Status queue_small(int dirfd, const std::string& name, std::string relpath, std::size_t index,
                     std::uint64_t size, SmallBatch& batch);
  Status flush_small(DirRec& dir, SmallBatch& batch);
  Status record_digest(Node& node, const verity::Digest& d, std::uint64_t size, int fd,
                       std::span<const std::byte> content, const std::string& relpath);
  Status read_xattrs(int dirfd, const std::string& name, const std::string& relpath, Node& node);
  Status digest_file(int dirfd, const std::string& name, const std::string& relpath, Node& node);
  Status scan_dir(DirRec& dir, std::vector<DirRec*>& subdirs, std::vector<FileTask>& deferred);
  void worker();
  // Called with mu_ held.
  void record_failure(Error e) {
    if (!failed_) {
      failed_ = true;
      error_ = std::move(e);
    }
    cv_.notify_all();
  }
  void assemble(DirRec& dir, NodeId parent, ScanResult& out);

  std::string root_path_;
  ScanOptions opts_;
  verity::Params params_;
  std::uint64_t small_max_ = 0;  // largest file batched: two tree levels (256 KiB for SHA-512)
  UniqueFd root_fd_;
  DirRec root_;
  Node root_node_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DirRec*> dir_stack_;
  std::vector<FileTask> files_;
  unsigned active_ = 0;
  bool failed_ = false;
  std::optional<Error> error_;
  std::atomic<std::uint64_t> entries_{0};

  std::size_t assembled_since_trim_ = 0;
  // hardlink assembly: (dev, ino) -> owning node
  std::map<std::pair<dev_t, ino_t>, NodeId> links_;
};

Status Scanner::read_xattrs(int dirfd, const std::string& name, const std::string& relpath,
                            Node& node) {
  CFS_ASSIGN(auto keys, sys::list_xattrs_at(dirfd, name, display(relpath)));
  if (keys.empty()) return {};
  std::sort(keys.begin(), keys.end());  // listxattr order is filesystem-specific
  overlay::XattrBudget budget;          // the sum decides, so the order does not matter
  for (const auto& key : keys) {
    if (opts_.user_xattrs && !key.starts_with("user.")) continue;
    CFS_ASSIGN(std::string value, sys::get_xattr_at(dirfd, name, key, display(relpath)));
    if (key.size() > overlay::kMaxXattrKeyLen || value.size() > overlay::kMaxXattrValueLen)
      return fail(Errc::kInvalidInput, display(relpath) + ": xattr " + key + " too large");
    if (!budget.set(key.size(), value.size()))
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: xattrs exceed the per-inode limit of {} bytes", display(relpath),
                              overlay::XattrBudget::kLimit));
    node.set_xattr(key, std::move(value));
  }
  return {};
}

Status Scanner::digest_file(int dirfd, const std::string& name, const std::string& relpath,
                            Node& node) {
  auto fd = sys::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY);
  if (!fd) return fail(Error(fd.error().code(), display(relpath)));
  verity::Digest d;
  std::span<const std::byte> content;
  if (opts_.sink != nullptr && node.size < kDeferDigestMin) {
    // One read serves the digest and the sink, so a store copy does not read the file again.
    thread_local AlignedBuffer mem;
    const std::span<std::byte> buf = mem.get(node.size + 1);  // one more: did the file grow?
    CFS_ASSIGN(std::size_t got, sys::pread_full(fd->get(), buf, 0));
    if (got != node.size)
      return fail(Errc::kInvalidInput, display(relpath) + ": file changed during the scan");
    content = std::span<const std::byte>(buf.data(), got);
    d = verity::digest_bytes(content, params_);
  } else {
    CFS_ASSIGN(d, verity::digest_fd(fd->get(), params_, display(relpath), 1));
  }
  return record_digest(node, d, node.size, fd->get(), content, relpath);
}

Status Scanner::record_digest(Node& node, const verity::Digest& d, std::uint64_t size, int fd,
                              std::span<const std::byte> content, const std::string& relpath) {
  node.digest = d;  // the payload string is made in assemble(), on the main thread
  if (opts_.counters) {
    opts_.counters->files_digested.fetch_add(1, std::memory_order_relaxed);
    opts_.counters->bytes_digested.fetch_add(size, std::memory_order_relaxed);
  }
  if (opts_.sink != nullptr) return opts_.sink->file_digested(d, fd, content, display(relpath));
  return {};
}

Status Scanner::queue_small(int dirfd, const std::string& name, std::string relpath,
                            std::size_t index, std::uint64_t size, SmallBatch& batch) {
  auto fd = sys::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY);
  if (!fd) return fail(Error(fd.error().code(), display(relpath)));
  const std::size_t i = batch.count;
  const std::span<std::byte> room = SmallBatch::buffer().subspan(batch.used, size + 1);
  CFS_ASSIGN(std::size_t got, sys::pread_full(fd->get(), room, 0));
  if (got != size)
    return fail(Errc::kInvalidInput, display(relpath) + ": file changed during the scan");
  batch.index[i] = index;
  batch.offset[i] = batch.used;
  batch.size[i] = got;
  batch.relpath[i] = std::move(relpath);
  // The next file starts on a cache line: the kernel copies into a 64-byte-aligned address as
  // fast as into a page-aligned one, and several times slower 16 bytes past one. The buffer
  // still has room: a file is queued only while used < kBatchBytes.
  batch.used += (got + 63) / 64 * 64;
  ++batch.count;
  return {};
}

Status Scanner::flush_small(DirRec& dir, SmallBatch& batch) {
  const std::size_t n = batch.count;
  if (n == 0) return {};
  batch.count = 0;
  batch.used = 0;
  std::array<std::span<const std::byte>, verity::kSmallBatchMax> in;
  std::array<verity::Digest, verity::kSmallBatchMax> out;
  for (std::size_t i = 0; i < n; ++i)
    in[i] = SmallBatch::buffer().subspan(batch.offset[i], batch.size[i]);
  verity::digest_small_many(std::span(in.data(), n), params_, std::span(out.data(), n));
  for (std::size_t i = 0; i < n; ++i)
    CFS_TRY(record_digest(dir.entries[batch.index[i]].node, out[i], batch.size[i], -1, in[i],
                          batch.relpath[i]));
  return {};
}

Status Scanner::fill_entry(int dirfd, const std::string& name, const std::string& relpath,
                           const struct stat& st, Rec& rec, std::vector<FileTask>& deferred,
                           bool& small) {
  small = false;
  Node& n = rec.node;
  n.mode = st.st_mode;
  n.uid = st.st_uid;
  n.gid = st.st_gid;
  n.rdev = st.st_rdev;
  n.size = static_cast<std::uint64_t>(st.st_size);
  n.nlink = 1;
  if (!opts_.use_epoch) {
    n.mtime_sec = st.st_mtim.tv_sec;
    n.mtime_nsec = static_cast<std::uint32_t>(st.st_mtim.tv_nsec);
  }
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      if (n.size == 0) break;
      if (n.size <= kInlineMax) {
        auto fd = sys::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY);
        if (!fd) return fail(Error(fd.error().code(), display(relpath)));
        std::string content(n.size, '\0');
        CFS_ASSIGN(std::size_t got,
                   sys::read_full(fd->get(), std::as_writable_bytes(std::span(content))));
        if (got != n.size)
          return fail(Errc::kInvalidInput, display(relpath) + ": file changed during the scan");
        n.content = std::move(content);
      } else if (n.size <= small_max_) {
        small = true;  // the caller queues it for a batch
      } else if (n.size < kDeferDigestMin) {
        CFS_TRY(digest_file(dirfd, name, relpath, n));
      } else {
        deferred.push_back(FileTask{nullptr, relpath});  // Rec address set by scan_dir()
      }
      break;
    case S_IFLNK: {
      auto target = sys::readlinkat(dirfd, name);
      if (!target) return fail(Error(target.error().code(), display(relpath)));
      n.payload = std::move(*target);
      break;
    }
    case S_IFDIR:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
    case S_IFSOCK:
      break;
    default:
      return fail(Errc::kInvalidInput, display(relpath) + ": unsupported file type");
  }
  if (opts_.hardlinks && !S_ISDIR(st.st_mode) && st.st_nlink > 1 &&
      !(S_ISCHR(st.st_mode) && st.st_rdev == 0)) {
    rec.multi_link = true;
    rec.dev = st.st_dev;
    rec.ino = st.st_ino;
  }
  if (!opts_.skip_xattrs) CFS_TRY(read_xattrs(dirfd, name, relpath, n));
  return {};
}

Status Scanner::scan_dir(DirRec& dir, std::vector<DirRec*>& subdirs,
                         std::vector<FileTask>& deferred) {
  auto fd = sys::openat(root_fd_.get(), dir.relpath.empty() ? "." : dir.relpath,
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return fail(Error(fd.error().code(), display(dir.relpath)));
  thread_local std::unique_ptr<std::byte[]> buf;
  if (!buf) buf = std::make_unique<std::byte[]>(kDirentBufSize);
  std::string name;
  std::vector<std::size_t> deferred_idx;
  std::size_t deferred_base = deferred.size();
  SmallBatch batch;
  for (;;) {
    CFS_ASSIGN(std::size_t n, sys::getdents(fd->get(), std::span(buf.get(), kDirentBufSize),
                                            display(dir.relpath)));
    if (n == 0) break;
    sys::DirentCursor cur(std::span<const std::byte>(buf.get(), n));
    std::string_view sv;
    unsigned char d_type;
    std::uint64_t d_ino;
    while (cur.next(sv, d_type, d_ino)) {
      if (sv == "." || sv == "..") continue;
      if (opts_.skip_devices && (d_type == DT_BLK || d_type == DT_CHR)) continue;
      name.assign(sv);
      std::string relpath = join(dir.relpath, name);
      auto st = sys::fstatat(fd->get(), name, AT_SYMLINK_NOFOLLOW);
      if (!st) return fail(Error(st.error().code(), display(relpath)));
      if (opts_.skip_devices && (S_ISBLK(st->st_mode) || S_ISCHR(st->st_mode))) continue;
      Rec& rec = dir.entries.emplace_back();
      rec.name = name;
      std::size_t before = deferred.size();
      bool small = false;
      CFS_TRY(fill_entry(fd->get(), name, relpath, *st, rec, deferred, small));
      if (deferred.size() != before) deferred_idx.push_back(dir.entries.size() - 1);
      if (small) {
        CFS_TRY(queue_small(fd->get(), name, relpath, dir.entries.size() - 1,
                            static_cast<std::uint64_t>(st->st_size), batch));
        if (batch.full()) CFS_TRY(flush_small(dir, batch));
      }
      if (S_ISDIR(st->st_mode)) {
        rec.dir = std::make_unique<DirRec>();
        rec.dir->relpath = std::move(relpath);
      }
      if (opts_.counters) opts_.counters->entries.fetch_add(1, std::memory_order_relaxed);
    }
  }
  CFS_TRY(flush_small(dir, batch));
  // Pointers into dir.entries are handed out only now that the vector is complete; it is not
  // touched again until assemble() (which sorts it) runs after every worker has finished.
  // Vector doubling slack is ~25% of the scan's peak memory on large trees.
  dir.entries.shrink_to_fit();
  for (std::size_t i = 0; i < deferred_idx.size(); ++i)
    deferred[deferred_base + i].rec = &dir.entries[deferred_idx[i]];
  for (auto& rec : dir.entries)
    if (rec.dir) subdirs.push_back(rec.dir.get());
  return {};
}

void Scanner::worker() {
  std::vector<DirRec*> subdirs;
  std::vector<FileTask> deferred;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock,
             [&] { return failed_ || !dir_stack_.empty() || !files_.empty() || active_ == 0; });
    if (failed_) return;
    if (!dir_stack_.empty()) {
      DirRec* d = dir_stack_.back();
      dir_stack_.pop_back();
      ++active_;
      lock.unlock();
      subdirs.clear();
      deferred.clear();
      Status st = scan_dir(*d, subdirs, deferred);
      lock.lock();
      --active_;
      if (!st) return record_failure(std::move(st).error());
      // Reverse so the stack pops directories in name order (deterministic traversal).
      dir_stack_.insert(dir_stack_.end(), subdirs.rbegin(), subdirs.rend());
      for (auto& f : deferred) {
        files_.push_back(std::move(f));
        std::push_heap(files_.begin(), files_.end(), smaller_file);
      }
      cv_.notify_all();
    } else if (!files_.empty()) {
      // Largest first, so the last files left when the directories run out are small ones and
      // no worker finishes long after the others.
      std::pop_heap(files_.begin(), files_.end(), smaller_file);
      FileTask task = std::move(files_.back());
      files_.pop_back();
      lock.unlock();
      Status st = digest_file(root_fd_.get(), task.relpath, task.relpath, task.rec->node);
      lock.lock();
      if (!st) return record_failure(std::move(st).error());
    } else {
      return;  // nothing queued and no directory in flight: done
    }
  }
}

Result<ScanResult> Scanner::run() {
  if (opts_.skip_xattrs && opts_.user_xattrs)
    return fail(Errc::kInvalidInput,
                "error accessing " + root_path_ + ": --skip-xattrs and --user-xattrs conflict");
  auto rfd = sys::open(root_path_, O_RDONLY | O_DIRECTORY);
  if (!rfd) return fail(Error(rfd.error().code(), root_path_));
  root_fd_ = std::move(*rfd);
  {
    // The root's own metadata and xattrs, read like any other entry (not following a final
    // symlink, as upstream's lstat of SOURCE).
    auto st = sys::fstatat(AT_FDCWD, root_path_, AT_SYMLINK_NOFOLLOW);
    if (!st) return fail(Error(st.error().code(), root_path_));
    if (!S_ISDIR(st->st_mode)) return fail_errno(root_path_, ENOTDIR);
    Rec rec;
    std::vector<FileTask> none;
    bool small = false;  // never set: the root is a directory
    CFS_TRY(fill_entry(AT_FDCWD, root_path_, "", *st, rec, none, small));
    root_node_ = std::move(rec.node);
  }

  unsigned threads = opts_.threads ? opts_.threads : sys::available_cpus();
  dir_stack_.push_back(&root_);
  {
    std::vector<std::jthread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back([this] { worker(); });
    worker();
  }
  if (failed_) return fail(std::move(*error_));

  ScanResult out;
  std::size_t total = 1;
  {
    std::vector<const DirRec*> stack{&root_};
    while (!stack.empty()) {
      const DirRec* d = stack.back();
      stack.pop_back();
      total += d->entries.size();
      for (const auto& r : d->entries)
        if (r.dir) stack.push_back(r.dir.get());
    }
  }
  out.tree.reserve(total);
  Node& root = out.tree.node(out.tree.root());
  root_node_.parent = root.parent;
  root_node_.nlink = root.nlink;
  root = std::move(root_node_);
  assemble(root_, out.tree.root(), out);
  out.entries = out.tree.size();
  return out;
}

// Re-allocates a node's strings on the calling thread. The workers' allocations are then all
// transient (freed with the per-directory records), so their arenas can be returned to the
// system as a whole instead of staying resident around a few live strings per page.
Node compact(Node n) {
  if (n.is_reg() && n.digest && !n.content)
    n.payload = tree::object_path(*n.digest);
  else if (!n.payload.empty())
    n.payload = std::string(n.payload);
  if (n.content) n.content = std::string(*n.content);
  if (!n.xattrs.empty()) {
    std::vector<Xattr> xs;
    xs.reserve(n.xattrs.size());
    for (const auto& x : n.xattrs) xs.push_back({std::string(x.key), std::string(x.value)});
    n.xattrs = std::move(xs);
  }
  return n;
}

// Depth-first in sorted order, which is also the order hardlink owners are chosen in.
void Scanner::assemble(DirRec& dir, NodeId parent, ScanResult& out) {
  std::sort(dir.entries.begin(), dir.entries.end(),
            [](const Rec& a, const Rec& b) { return name_less(a.name, b.name); });
  out.tree.node(parent).children.reserve(dir.entries.size());
  for (Rec& rec : dir.entries) {
    if (rec.multi_link) {
      auto [it, inserted] = links_.try_emplace({rec.dev, rec.ino}, kNoNode);
      if (!inserted && out.tree.node(it->second).type() == rec.node.type()) {
        out.tree.node(it->second).nlink++;
        out.tree.link(parent, std::string(rec.name), it->second, true);
        continue;
      }
      if (inserted) it->second = static_cast<NodeId>(out.tree.size());
    }
    NodeId id = out.tree.add_node(compact(std::move(rec.node)));
    out.tree.link(parent, std::string(rec.name), id);
    const Node& n = out.tree.node(id);
    if (n.is_reg() && !n.payload.empty()) out.external_files.push_back({id, n.size});
    if (rec.dir) assemble(*rec.dir, id, out);
    rec.dir.reset();
    if (++assembled_since_trim_ >= kTrimEvery) {
      ::malloc_trim(0);
      assembled_since_trim_ = 0;
    }
  }
  dir.entries.clear();
  dir.entries.shrink_to_fit();
}

}  // namespace

Result<ScanResult> scan_directory(const std::string& path, const ScanOptions& opts) {
  Scanner s(path, opts);
  return s.run();
}

}  // namespace cfs::scan
