// SPDX-License-Identifier: Apache-2.0
#include "cfs/store/object_store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "cfs/store/fanout_dirs.h"
#include "cfs/store/verify.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/background_sync.h"
#include "cfs/util/mapped_file.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/util/sys_link.h"
#include "cfs/util/temp_file.h"
#include "cfs/verity/kernel.h"
#include "cfs/verity/measure.h"

namespace cfs::store {
namespace {

constexpr std::size_t kCopyBufSize = 256 * 1024;
// Objects from this size on are written with O_DIRECT (see copy_direct()).
constexpr std::uint64_t kDirectMin = 1 << 20;
constexpr std::size_t kDirectChunk = 1 << 20;
constexpr std::size_t kDirectAlign = 4096;
static_assert(AlignedBuffer::kAlign % kDirectAlign == 0);

// The per-thread buffer for copies (page-aligned, as O_DIRECT and the kernel's fast copy out
// of the page cache want).
std::byte* copy_buffer() {
  thread_local AlignedBuffer buf(std::max(kDirectChunk, kCopyBufSize));
  return buf.get(std::max(kDirectChunk, kCopyBufSize)).data();
}

// Removes the temp file unless released (every failure path after it was created).
class TempGuard {
 public:
  TempGuard(int dirfd, std::string name) : dirfd_(dirfd), name_(std::move(name)) {}
  TempGuard(const TempGuard&) = delete;
  TempGuard& operator=(const TempGuard&) = delete;
  ~TempGuard() {
    if (!name_.empty()) (void)sys::unlinkat(dirfd_, name_, 0);
  }
  void release() { name_.clear(); }

 private:
  int dirfd_;
  std::string name_;
};

// Closes fd (if still open) and reports what close() says.
Status close_checked(UniqueFd& fd, const std::string& what) {
  if (!fd) return {};
  auto closed = fd.close();
  if (!closed) return fail(std::move(closed).error().with_context(what));
  return {};
}

// Unsupported, or EINVAL: parameters this filesystem cannot take (ext4 with 1 KiB blocks
// refuses 4 KiB Merkle blocks), which will not change for the next object either.
bool verity_unsupported(const Error& e) {
  return verity::is_verity_unavailable(e) || e.is_errno(EINVAL);
}

}  // namespace

ObjectStore::ObjectStore(UniqueFd fd, std::string path)
    : fd_(std::move(fd)),
      path_(std::move(path)),
      verity_ok_(std::make_unique<std::atomic<bool>>(true)),
      copy_range_ok_(std::make_unique<std::atomic<bool>>(true)),
      direct_ok_(std::make_unique<std::atomic<bool>>(true)),
      tmpfile_ok_(std::make_unique<std::atomic<bool>>(true)),
      measure_ok_(std::make_unique<std::atomic<bool>>(true)),
      fanout_(std::make_unique<FanoutDirs>(fd_.get(), "object store " + path_)) {}
ObjectStore::ObjectStore(ObjectStore&&) noexcept = default;
ObjectStore& ObjectStore::operator=(ObjectStore&&) noexcept = default;
ObjectStore::~ObjectStore() = default;

Result<ObjectStore> ObjectStore::open(const std::string& path, bool create) {
  if (path.empty()) return fail(Errc::kInvalidInput, "object store path is empty");
  if (create) CFS_TRY(sys::mkdirat_p(AT_FDCWD, path, 0755));
  CFS_ASSIGN(UniqueFd fd, sys::open(path, O_RDONLY | O_DIRECTORY));
  ObjectStore store(std::move(fd), path);
  CFS_ASSIGN(store.writeback_, syncfs_every(store.fd(), "object store " + path));
  // Objects are 0644 whatever the umask; one fchmod per object only where the umask would
  // take some of those bits.
  const std::optional<mode_t> mask = sys::current_umask();
  store.chmod_needed_ = !mask || (*mask & 0644) != 0;
  return store;
}

bool ObjectStore::has_object(const verity::Digest& digest) const {
  return sys::fstatat(fd_.get(), tree::object_path(digest), AT_SYMLINK_NOFOLLOW).has_value();
}

Result<UniqueFd> ObjectStore::create_temp(std::string_view dir, std::string& name) const {
  // Named and locked by cfs/util/temp_file.h, so `cfs fsck --repair` can tell the leftover of a
  // killed add from the temp of one still at work.
  return temp::create_named(fd_.get(), std::string(dir) + "/" + std::string(kTempPrefix), O_RDWR,
                            0600, name, "object store " + path_);
}

Result<bool> ObjectStore::copy_direct(int dst_fd, int src_fd, std::uint64_t size,
                                      const std::string& what) const {
  if (!direct_ok_->load(std::memory_order_relaxed) || size < kDirectMin) return false;
  if (!sys::set_direct_io(dst_fd, true)) {
    direct_ok_->store(false, std::memory_order_relaxed);
    return false;
  }
  std::byte* buf = copy_buffer();
  // Where mapping is cheaper than copying (mapped_reads_preferred), each piece is written
  // straight from a mapping of that piece of the source: the DMA reads the page-cache pages,
  // with no copy into buf. One mapping per piece, not one of the whole file: every page of a
  // whole-file mapping that the writes touched would count in the process's RSS until the
  // copy ends (830 MB for the largest file of /usr). A source truncated meanwhile is no
  // SIGBUS here: the kernel's access to the missing pages fails the write with EFAULT.
  const bool mapped = mapped_reads_preferred();
  // Copies [off, off + n) from the mapped piece (or through buf); the write's error is
  // returned as is.
  auto piece = [&](std::uint64_t off, std::size_t n) -> Result<Status> {
    if (mapped) {
      if (auto m = MappedFile::map_range(src_fd, off, n, what)) {
        Status w = sys::pwrite_all(dst_fd, m->bytes(), off);
        if (!w && w.error().is_errno(EFAULT))
          return fail(Errc::kInvalidInput, what + ": file shrank while being copied");
        return w;
      }
    }
    CFS_ASSIGN(std::size_t got, sys::pread_full(src_fd, std::span(buf, n), off));
    if (got != n) return fail(Errc::kInvalidInput, what + ": file shrank while being copied");
    return sys::pwrite_all(dst_fd, std::span<const std::byte>(buf, n), off);
  };
  const std::uint64_t aligned = size / kDirectAlign * kDirectAlign;
  for (std::uint64_t off = 0; off < aligned;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kDirectChunk, aligned - off));
    CFS_ASSIGN(Status w, piece(off, n));
    if (!w && off == 0 && w.error().is_errno(EINVAL)) {
      // The filesystem takes O_DIRECT but not this alignment: buffered copies from now on.
      direct_ok_->store(false, std::memory_order_relaxed);
      CFS_TRY(sys::set_direct_io(dst_fd, false));
      return false;
    }
    if (!w) return fail(std::move(w).error().with_context("object store " + path_));
    off += n;
  }
  // The tail that is not a whole block goes through the page cache.
  CFS_TRY(sys::set_direct_io(dst_fd, false));
  if (aligned < size) {
    CFS_ASSIGN(Status w, piece(aligned, static_cast<std::size_t>(size - aligned)));
    if (!w) return fail(std::move(w).error().with_context("object store " + path_));
  }
  return true;
}

Status ObjectStore::fill(int dst_fd, int src_fd, const std::string& what,
                         StoreCounters* counters) const {
  // Reflink first: instant and shares storage on btrfs/XFS; ext4 and tmpfs refuse.
  if (sys::ficlone(dst_fd, src_fd)) {
    if (counters) counters->reflinked.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  // Large objects: read out of the page cache (the digest just read them) and written to the
  // disk by DMA, instead of copied into new page-cache pages and written back later, which
  // was the largest part of the kernel's work when filling a store (see docs/design.md).
  CFS_ASSIGN(struct stat st, sys::fstat(src_fd, what));
  CFS_ASSIGN(bool direct,
             copy_direct(dst_fd, src_fd, static_cast<std::uint64_t>(st.st_size), what));
  if (direct) return {};
  if (copy_range_ok_->load(std::memory_order_relaxed)) {
    CFS_ASSIGN(sys::CopyRangeResult r, sys::copy_range(src_fd, dst_fd, 0, what));
    if (!r.unsupported) return {};
    // ENOSYS/EXDEV and friends are properties of the (source fs, store fs) pair, which is the
    // same for the whole run: stop trying.
    copy_range_ok_->store(false, std::memory_order_relaxed);
  }
  const std::span<std::byte> buf(copy_buffer(), kCopyBufSize);
  for (;;) {
    auto n = sys::read_full(src_fd, buf);
    if (!n) return fail(std::move(n).error().with_context(what));
    if (*n == 0) return {};
    auto w = sys::write_all(dst_fd, std::span<const std::byte>(buf.data(), *n));
    if (!w) return fail(std::move(w).error().with_context("object store " + path_));
    if (*n < buf.size()) return {};
  }
}

Result<AddOutcome> ObjectStore::add_object(const verity::Digest& digest, int src_fd,
                                           const std::string& what, StoreCounters* counters) {
  CFS_ASSIGN(struct stat st, sys::fstat(src_fd, what));
  return add_with(
      digest, static_cast<std::uint64_t>(st.st_size),
      [&](int dst_fd) { return fill(dst_fd, src_fd, what, counters); }, counters);
}

Result<ObjectStore::Slot> ObjectStore::locate(const verity::Digest& digest, std::uint64_t size) {
  CFS_ASSIGN(FanoutDirs::Probe probe, fanout_->probe(digest));
  Slot slot;
  slot.dirfd = probe.dirfd;
  slot.name = tree::object_path(digest).substr(3);
  // Known absent: no lookup of the name (the linkat at the end still fails with EEXIST if
  // another process adds the object meanwhile).
  if (!probe.known_absent) {
    CFS_ASSIGN(slot.existing, check_existing(slot.dirfd, slot.name, digest, size));
  }
  return slot;
}

Result<ObjectStore::Existing> ObjectStore::check_existing(int dirfd, const std::string& name,
                                                          const verity::Digest& digest,
                                                          std::uint64_t size) const {
  const std::string payload = tree::object_path(digest);
  auto st = sys::fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW);
  if (!st) {
    if (st.error().is_errno(ENOENT) || st.error().is_errno(ENOTDIR)) return Existing::kAbsent;
    return fail(std::move(st).error().with_context("object store " + path_));
  }
  // Whatever is not a regular file of the content's size cannot be the object (a crash can
  // leave a short one under the final name; see the header).
  if (!S_ISREG(st->st_mode) || static_cast<std::uint64_t>(st->st_size) != size)
    return Existing::kBad;
  const bool full = verify_existing_;
  // Where the kernel or the store's filesystem has no fs-verity no object can have a
  // measurement: once the kernel said so, an existing object of the right size costs no open,
  // ioctl and close (a rebuild into a filled store checks every object it would add).
  if (!full && !measure_ok_->load(std::memory_order_relaxed)) return Existing::kGood;
  auto fd = sys::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (!fd) return fail(std::move(fd).error().with_context("object store " + path_));
  const std::string what = path_ + "/" + payload;
  // The kernel's measurement is free where the object has fs-verity; a full digest only when
  // asked (--verify-existing).
  bool no_verity_here = false;
  CFS_ASSIGN(auto measured,
             verity::kernel_measurement(fd->get(), what, digest.alg, &no_verity_here));
  if (no_verity_here) measure_ok_->store(false, std::memory_order_relaxed);
  if (measured) return *measured == digest ? Existing::kGood : Existing::kBad;
  if (!full) return Existing::kGood;
  verity::Params p;
  p.alg = digest.alg;
  CFS_ASSIGN(verity::Measurement m, verity::measure_or_compute(fd->get(), p, what, 1));
  return m.digest == digest ? Existing::kGood : Existing::kBad;
}

Result<AddOutcome> ObjectStore::add_object_bytes(const verity::Digest& digest,
                                                 std::span<const std::byte> content,
                                                 StoreCounters* counters) {
  return add_with(
      digest, content.size(),
      [&](int dst_fd) -> Status {
        auto w = sys::write_all(dst_fd, content);
        if (!w) return fail(std::move(w).error().with_context("object store " + path_));
        return {};
      },
      counters);
}

Result<AddOutcome> ObjectStore::add_with(const verity::Digest& digest, std::uint64_t size,
                                         const std::function<Status(int)>& fill_temp,
                                         StoreCounters* counters) {
  CFS_ASSIGN(Slot slot, locate(digest, size));
  return add_at(slot, digest, size, fill_temp, counters);
}

Result<AddOutcome> ObjectStore::add_at(const Slot& slot, const verity::Digest& digest,
                                       std::uint64_t size,
                                       const std::function<Status(int)>& fill_temp,
                                       StoreCounters* counters) {
  const Existing existing = slot.existing;
  if (existing == Existing::kGood) {
    if (counters) counters->existed.fetch_add(1, std::memory_order_relaxed);
    return AddOutcome::kExisted;
  }
  const std::string payload = tree::object_path(digest);
  const std::string fanout = payload.substr(0, 2);
  // An unnamed file (O_TMPFILE) in the object's fan-out directory, named by linkat() when
  // complete: no temp name to look up, insert, lock, and remove again by a rename (those were
  // a fifth of the CPU time of filling a store, docs/design.md), and a crash leaves nothing
  // behind. Replacing a damaged object needs a rename over it, hence a named temp; so do
  // filesystems without O_TMPFILE. The named temp lives in the fan-out directory too: the
  // rename then locks one directory, not the store root plus the fan-out directory under the
  // filesystem-wide rename lock.
  std::string tmp;
  UniqueFd out;
  if (existing == Existing::kAbsent && tmpfile_ok_->load(std::memory_order_relaxed)) {
    auto unnamed = sys::open_unnamed(slot.dirfd, ".", O_RDWR, 0644);
    if (!unnamed) return fail(std::move(unnamed).error().with_context("object store " + path_));
    if (*unnamed)
      out = std::move(**unnamed);
    else
      tmpfile_ok_->store(false, std::memory_order_relaxed);
  }
  if (!out) {
    CFS_ASSIGN(out, create_temp(fanout, tmp));
  }
  TempGuard guard(fd_.get(), tmp);
  const std::string what = tmp.empty() ? path_ + "/" + fanout + "/(new)" : path_ + "/" + tmp;
  CFS_TRY(fill_temp(out.get()));
  // Writeback overlaps the remaining copies, so the single sync() at the end finds little left
  // to do: a background syncfs every 64 MiB (kSyncEveryDefault), which submits many objects' pages
  // at once, rather than a sync_file_range per object (one request and one doorbell each;
  // docs/design.md). Nobody waits for it here.
  writeback_->added(size);
  // The umask may have taken bits of 0644 (checked once per store, see open()).
  if (chmod_needed_) CFS_TRY(sys::fchmod(out.get(), 0644, what));
  if (verity_ok_->load(std::memory_order_relaxed)) {
    // FS_IOC_ENABLE_VERITY fails with ETXTBSY while any writable fd is open: continue on a
    // read-only one (an unnamed file lives on as long as any fd does).
    auto ro = tmp.empty() ? sys::reopen(out.get(), O_RDONLY, what)
                          : sys::openat(fd_.get(), tmp, O_RDONLY);
    auto closed = out.close();
    if (!closed) return fail(std::move(closed).error().with_context(what));
    if (ro) {
      // The digest's algorithm: the kernel measures what a mount compares with the image.
      verity::Params vp;
      vp.alg = digest.alg;
      auto en = verity::enable_verity(ro->get(), vp, what);
      if (en) {
        if (counters) counters->verity_enabled.fetch_add(1, std::memory_order_relaxed);
      } else if (verity_unsupported(en.error())) {
        verity_ok_->store(false, std::memory_order_relaxed);
      }
      out = std::move(*ro);
    } else if (tmp.empty()) {
      return fail(std::move(ro).error());
    }
  }
  if (existing == Existing::kBad) {
    // A damaged object under the final name: replaced in one rename, so a reader sees the old
    // file or the new one, never a mix.
    CFS_TRY(close_checked(out, what));
    auto st2 = sys::renameat(fd_.get(), tmp, fd_.get(), payload);
    if (!st2) return fail(std::move(st2).error().with_context("object store " + path_));
    guard.release();
    if (counters) {
      counters->replaced.fetch_add(1, std::memory_order_relaxed);
      counters->bytes_added.fetch_add(size, std::memory_order_relaxed);
    }
    return AddOutcome::kReplaced;
  }
  bool published = false;
  if (tmp.empty()) {
    // Relative to the open fan-out directory: no lookup of its name in the store root.
    CFS_ASSIGN(published, sys::link_fd(out.get(), slot.dirfd, slot.name));
    // close() is where delayed write errors would surface: an object whose data may be bad
    // does not keep its name.
    if (auto closed = close_checked(out, what); !closed) {
      if (published) (void)sys::unlinkat(slot.dirfd, slot.name, 0);
      return fail(std::move(closed).error());
    }
  } else {
    CFS_TRY(close_checked(out, what));
    CFS_ASSIGN(published, sys::rename_noreplace(fd_.get(), tmp, fd_.get(), payload));
  }
  if (!published) {
    // Someone else published the same content first: theirs stays, ours is dropped.
    if (counters) counters->existed.fetch_add(1, std::memory_order_relaxed);
    return AddOutcome::kExisted;
  }
  guard.release();
  if (counters) {
    counters->added.fetch_add(1, std::memory_order_relaxed);
    counters->bytes_added.fetch_add(size, std::memory_order_relaxed);
  }
  return AddOutcome::kAdded;
}

Status ObjectStore::add_objects(std::span<const ObjectSource> sources, int src_dirfd,
                                const std::string& src_display, unsigned threads,
                                StoreCounters* counters) {
  // One copy per distinct digest, in the caller's order otherwise.
  std::vector<std::size_t> order(sources.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return sources[a].digest < sources[b].digest;
  });
  std::vector<std::size_t> work;
  work.reserve(order.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    if (i == 0 || sources[order[i]].digest != sources[order[i - 1]].digest)
      work.push_back(order[i]);
  std::sort(work.begin(), work.end());

  auto display = [&](const std::string& p) {
    return src_display.empty()
               ? p
               : (src_display.ends_with('/') ? src_display + p : src_display + "/" + p);
  };
  return parallel_try_for(
      work.size(), threads ? threads : sys::available_cpus(), [&](std::size_t k) -> Status {
        const ObjectSource& src = sources[work[k]];
        // Located once: the source is opened only for an object that is not there.
        CFS_ASSIGN(Slot slot, locate(src.digest, src.size));
        if (slot.existing == Existing::kGood) {
          if (counters) counters->existed.fetch_add(1, std::memory_order_relaxed);
          return {};
        }
        auto fd = sys::openat(src_dirfd, src.path, O_RDONLY | O_NOFOLLOW | O_NOCTTY);
        if (!fd) return fail_errno(display(src.path), fd.error().code().value());
        const std::string what = display(src.path);
        CFS_ASSIGN(struct stat st, sys::fstat(fd->get(), what));
        CFS_TRY(add_at(
            slot, src.digest, static_cast<std::uint64_t>(st.st_size),
            [&](int dst_fd) { return fill(dst_fd, fd->get(), what, counters); }, counters));
        return {};
      });
}

Status ObjectStore::sync() {
  CFS_TRY(sys::syncfs(fd_.get(), path_));
  return writeback_->status();
}

std::uint64_t ObjectStore::writeback_runs() const { return writeback_->runs(); }

}  // namespace cfs::store
