// SPDX-License-Identifier: Apache-2.0
// The lazy object provider (see cfs/registry/lazy.h).
#include "cfs/registry/lazy.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/repo/lazy.h"
#include "cfs/repo/repository.h"
#include "cfs/store/object_dirs.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/huge_pages.h"
#include "cfs/util/mapped_file.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/util/sys_link.h"
#include "registry/elf.h"
#include "registry/loader.h"
#include "registry/range_plan.h"

namespace cfs::registry {
namespace {

using detail::follow_path;
using detail::loader_objects;
using detail::object_of;

Error eio(std::string what) { return Error::from_errno(std::move(what), EIO); }

/// The zstd decompression contexts of the mount's fetches, lent to a fetch's members one frame
/// at a time: a batch's members decode one after another (at most two at once, when the bytes
/// of a member before the object asked for are held back mid-frame). ZSTD_createDCtx costs
/// ~12 µs and its first use faults in fresh pages: 64 of them were ~0.8 ms before each 64-object
/// request went out (session 11), so a fetch of 64 small files creates none once the mount has
/// decoded a few, and contexts outlive their fetch (session 13). Thread-safe; at most kKeep are
/// kept.
class DctxPool {
 public:
  static constexpr std::size_t kKeep = 8;
  DctxPool() = default;
  DctxPool(const DctxPool&) = delete;
  DctxPool& operator=(const DctxPool&) = delete;
  ~DctxPool() {
    for (ZSTD_DCtx* d : free_) ZSTD_freeDCtx(d);
  }
  /// A context ready for a new frame, decoding into one buffer that holds the whole frame when
  /// `stable_out` (ZSTD_d_stableOutBuffer: no window buffer of its own, no copy out of it), else
  /// into whatever buffer each call gives; nullptr when none can be allocated.
  ZSTD_DCtx* take(bool stable_out) {
    ZSTD_DCtx* d = nullptr;
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        d = free_.back();
        free_.pop_back();
      }
    }
    if (d)
      ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    else if (!(d = ZSTD_createDCtx()))
      return nullptr;
    // ZSTD_d_stableOutBuffer is ZSTD_d_experimentalParam2 outside ZSTD_STATIC_LINKING_ONLY; a
    // libzstd without it (before 1.4.7) refuses it, and the sink then decodes as usual.
    if (ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_experimentalParam2, stable_out ? 1 : 0)) &&
        stable_out) {
      give(d);
      return nullptr;
    }
    return d;
  }
  void give(ZSTD_DCtx* d) {
    if (!d) return;
    {
      std::lock_guard lock(mu_);
      if (free_.size() < kKeep) {
        free_.push_back(d);
        return;
      }
    }
    ZSTD_freeDCtx(d);
  }

 private:
  std::mutex mu_;
  std::vector<ZSTD_DCtx*> free_;
};

/// Faults in the pages of a new buffer with one call instead of a page fault per 4 KiB as the
/// bytes are written (8 MiB: ~1 ms instead of 2.4-7.8 ms on the benchmark's host, loaded; session
/// 13). Whether they are huge pages is the buffer's allocator's choice (HugePageAllocator).
/// Best effort (before Linux 5.14 the pages fault in as they are written).
void prefault(std::byte* p, std::size_t n) noexcept {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; glibc 2.36's headers lack it
#endif
  const std::uintptr_t a = (at + page - 1) & ~(page - 1), b = (at + n) & ~(page - 1);
  if (b > a) (void)::madvise(reinterpret_cast<void*>(a), b - a, MADV_POPULATE_WRITE);
}

/// Compressed objects whose bytes are kept for their opens (at most kKeptCopyMax, 8 MiB) are
/// decompressed straight into one buffer of their size, which is then kept; others up to
/// kScratchBufferMax too (an object nobody opens then takes no more memory than that), larger ones
/// through a small buffer, with the zstd context's own window.
constexpr std::uint64_t kWholeBufferMax = 8u << 20;
constexpr std::uint64_t kScratchBufferMax = 2u << 20;

/// Writes an object's bytes into a new object file of `repo` while building their Merkle tree
/// (which the open then verifies reads against, instead of reading the file back to build it
/// again); decompresses one zstd frame first when the range is compressed. Refuses more bytes
/// than the object has.
/// The file is created with the first byte: the neighbours of a batch cost no file (and no
/// filesystem journal handle) before the request goes out, nor if their bytes never come.
/// `keep_bytes`: the object's bytes are also kept in memory, as hashed (take_bytes), for the open
/// to serve without reading them back and hashing them again.
/// A compressed object of at most kWholeBufferMax bytes when kept, kScratchBufferMax when not,
/// is decoded into one buffer of its size (the kept bytes, when kept), faulted in at once: the
/// context then needs no window buffer of its own (a fresh mapping of up to the object's size
/// per fetch, faulted in a page at a time and unmapped after) and copies nothing out of it
/// (session 13).
class ObjectSink final : public BlobSink {
 public:
  /// `dctxs` lends a zstd context from the first byte of a compressed object to the end of its
  /// frame; it must outlive the sink.
  ObjectSink(repo::Repository& repo, const ocirepo::ObjectLocation& r, const verity::Params& p,
             std::string what, DctxPool& dctxs, bool keep_bytes = false)
      : repo_(repo),
        range_(r),
        zstd_(r.compression == ocirepo::ObjectCompression::kZstd),
        whole_(zstd_ && r.size > 0 && r.size <= (keep_bytes ? kWholeBufferMax : kScratchBufferMax)),
        keep_(keep_bytes),
        tree_(p, r.size),
        what_(std::move(what)),
        dctxs_(dctxs) {}
  ~ObjectSink() override { dctxs_.give(std::exchange(dctx_, nullptr)); }
  ObjectSink(const ObjectSink&) = delete;
  ObjectSink& operator=(const ObjectSink&) = delete;

  Status write(std::span<const std::byte> data) override {
    received_ += data.size();
    if (!zstd_) return out(data);
    if (!dctx_ && !frame_done_) {
      dctx_ = whole_ ? dctxs_.take(true) : nullptr;
      if (dctx_) {
        if (!buf_) buf_ = new_buffer(range_.size, false);  // sized, not kept as it grows
      } else {
        whole_ = false;
        dctx_ = dctxs_.take(false);
      }
    }
    if (!dctx_) {
      if (frame_done_) return fail(eio(what_ + ": bytes after the end of its zstd frame"));
      return fail_errno(what_ + ": zstd context", ENOMEM);
    }
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      if (frame_done_) return fail(eio(what_ + ": bytes after the end of its zstd frame"));
      std::size_t rc = 0;
      if (whole_) {
        // The same buffer in every call, its position where the last call left it.
        ZSTD_outBuffer o{buf_->data(), buf_->size(), static_cast<std::size_t>(written_)};
        const std::size_t in_before = in.pos;
        rc = ZSTD_decompressStream(dctx_, &o, &in);
        if (ZSTD_isError(rc)) {
          if (ZSTD_getErrorCode(rc) == ZSTD_error_dstSize_tooSmall) return too_much();
          return fail(eio(what_ + ": zstd frame: " + ZSTD_getErrorName(rc)));
        }
        CFS_TRY(out_written(o.pos - written_));
        if (rc != 0 && in.pos == in_before && o.pos == buf_->size()) return too_much();
      } else {
        std::byte buf[64 << 10];
        ZSTD_outBuffer o{buf, sizeof buf, 0};
        rc = ZSTD_decompressStream(dctx_, &o, &in);
        if (ZSTD_isError(rc)) return fail(eio(what_ + ": zstd frame: " + ZSTD_getErrorName(rc)));
        CFS_TRY(out(std::span<const std::byte>(buf, o.pos)));
      }
      if (rc == 0) {
        frame_done_ = true;
        dctxs_.give(std::exchange(dctx_, nullptr));  // for the next member's frame
      }
    }
    return {};
  }

  /// Checks the object is complete and returns its Merkle tree (and so its fs-verity digest).
  Result<verity::MerkleTree> finish() {
    if (zstd_ && !frame_done_) return fail(eio(what_ + ": the zstd frame is truncated"));
    if (written_ != range_.size)
      return fail(eio(what_ + ": " + std::to_string(written_) + " bytes instead of " +
                      std::to_string(range_.size)));
    return tree_.finish();
  }
  std::uint64_t received() const noexcept { return received_; }
  /// The bytes hashed into finish()'s tree, in order, when kept (after finish() succeeded).
  std::shared_ptr<const HugeBytes> take_bytes() {
    if (!keep_) return nullptr;
    return std::move(buf_);
  }
  /// The object file (after finish() succeeded, so it exists).
  repo::NewObject& object() { return *obj_; }

 private:
  /// A buffer for `n` bytes, its pages faulted in at once: of size n (`empty` false: decoded
  /// into), or empty with room for n (appended to).
  static std::shared_ptr<HugeBytes> new_buffer(std::uint64_t n, bool empty) {
    auto b = std::make_shared<HugeBytes>();
    b->reserve(static_cast<std::size_t>(n));
    prefault(b->data(), b->capacity());
    if (!empty) b->resize(static_cast<std::size_t>(n));
    return b;
  }

  Status too_much() {
    return fail(eio(what_ + ": more than the object's " + std::to_string(range_.size) + " bytes"));
  }

  /// Stores bytes that are not in buf_ (an uncompressed range, or decoded through a small
  /// buffer), and keeps them in buf_ when asked to.
  Status out(std::span<const std::byte> data) {
    if (data.empty()) return {};
    if (data.size() > range_.size - written_) return too_much();
    if (keep_ && !buf_) buf_ = new_buffer(range_.size, true);  // out() refuses more than r.size
    CFS_TRY(store(data));
    if (keep_) buf_->insert(buf_->end(), data.begin(), data.end());
    written_ += data.size();
    return {};
  }

  /// Stores the next `n` bytes decoded into buf_.
  Status out_written(std::size_t n) {
    if (n == 0) return {};
    CFS_TRY(store(std::span<const std::byte>(buf_->data() + written_, n)));
    written_ += n;
    return {};
  }

  Status store(std::span<const std::byte> data) {
    if (!obj_) {
      CFS_ASSIGN(repo::NewObject obj, repo_.create_object());
      obj_.emplace(std::move(obj));
    }
    CFS_TRY(sys::write_all(obj_->fd(), data));
    return tree_.update(data);
  }

  repo::Repository& repo_;
  std::optional<repo::NewObject> obj_;
  const ocirepo::ObjectLocation& range_;
  bool zstd_;
  bool whole_;  // decoded into buf_, sized range_.size (while it can be)
  bool keep_;
  verity::MerkleBuilder tree_;
  std::string what_;
  DctxPool& dctxs_;
  ZSTD_DCtx* dctx_ = nullptr;       // from dctxs_, while a frame is being decoded
  std::shared_ptr<HugeBytes> buf_;  // decoded into (whole_) or the kept bytes
  bool frame_done_ = false;
  std::uint64_t written_ = 0;
  std::uint64_t received_ = 0;
};

/// Hands each object of a batch its own bytes of one Range response over their span (the bytes
/// between them, tar headers or files not taken, are dropped). A member whose bytes are wrong
/// fails alone and gets no more; the transfer stops early only when every member has failed.
/// `on_complete(i)` is called (on the transfer's thread) as soon as member i's last byte has
/// been handed on, so its waiters need not wait for the rest of the span. The member asked for
/// (`first`) goes ahead of the neighbours before it in the span once `wanted()` says an open
/// waits for it: from then on their bytes are held in memory (at most the batch budget) until
/// it is complete, so that neither their files nor their hashing delay it. (A prefetch nobody
/// waits for keeps the span's order: a neighbour before it may be the one opened next.)
class BatchSink final : public BlobSink {
 public:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  struct Range {
    std::uint64_t offset, length;  // in the blob
    ObjectSink* sink;
    Status status;
  };
  /// `ranges` must not overlap (add_neighbours picks them so); `first` is an index into them, or
  /// kNone.
  BatchSink(std::vector<Range> ranges, std::size_t first, std::function<bool()> wanted,
            std::function<void(std::size_t)> on_complete)
      : ranges_(std::move(ranges)),
        first_(first),
        wanted_(std::move(wanted)),
        on_complete_(std::move(on_complete)) {
    order_.resize(ranges_.size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    std::sort(order_.begin(), order_.end(),
              [&](std::size_t a, std::size_t b) { return ranges_[a].offset < ranges_[b].offset; });
    begin_ = ranges_[order_.front()].offset;
    for (const auto& r : ranges_) end_ = std::max(end_, r.offset + r.length);
    pos_ = begin_;
  }
  std::uint64_t begin() const noexcept { return begin_; }
  std::uint64_t end() const noexcept { return end_; }
  std::uint64_t received() const noexcept { return pos_ - begin_; }

  /// Called once, when the response's first bytes arrive (the "response" trace event).
  std::function<void()> on_first_bytes;

  Status write(std::span<const std::byte> data) override {
    if (pos_ == begin_ && on_first_bytes) std::exchange(on_first_bytes, nullptr)();
    // Once on, holding stays on until the first member is complete: a member's bytes must reach
    // its sink in order.
    if (!hold_ && first_ != kNone && !first_done_ && wanted_ && wanted_()) hold_ = true;
    const std::uint64_t from = pos_;
    pos_ += data.size();
    for (; next_ < order_.size(); ++next_) {
      const std::size_t i = order_[next_];
      const Range& r = ranges_[i];
      if (r.offset >= pos_) break;  // starts after these bytes
      const std::uint64_t a = std::max(r.offset, from), b = std::min(r.offset + r.length, pos_);
      if (a < b) CFS_TRY(deliver(i, data.subspan(a - from, b - a)));
      if (r.offset + r.length > pos_) break;  // continues in the next bytes
      CFS_TRY(complete(i));
    }
    return {};
  }

  /// Hands on whatever is still held: the transfer ended before the first member was complete.
  Status release() {
    first_done_ = true;
    auto held = std::move(held_);
    auto done = std::move(held_done_);
    for (auto& [i, bytes] : held)
      CFS_TRY(deliver(i, std::as_bytes(std::span(bytes.data(), bytes.size()))));
    for (std::size_t i : done)
      if (on_complete_) on_complete_(i);
    return {};
  }

  /// Member i's Merkle tree, or why its bytes are not an object.
  Result<verity::MerkleTree> finish(std::size_t i) {
    if (!ranges_[i].status) return fail(ranges_[i].status.error());
    return ranges_[i].sink->finish();
  }

 private:
  bool holding(std::size_t i) const noexcept { return hold_ && !first_done_ && i != first_; }

  Status deliver(std::size_t i, std::span<const std::byte> bytes) {
    if (holding(i)) {
      if (held_.empty() || held_.back().first != i) held_.emplace_back(i, std::string());
      held_.back().second.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      return {};
    }
    Range& r = ranges_[i];
    if (!r.status) return {};
    r.status = r.sink->write(bytes);
    if (!r.status && ++failed_ == ranges_.size()) return fail(r.status.error());
    return {};
  }

  Status complete(std::size_t i) {
    if (holding(i)) {
      held_done_.push_back(i);
      return {};
    }
    if (on_complete_) on_complete_(i);
    return i == first_ ? release() : Status{};
  }

  std::vector<Range> ranges_;
  std::size_t first_;
  std::function<bool()> wanted_;
  bool hold_ = false, first_done_ = false;
  std::function<void(std::size_t)> on_complete_;
  std::vector<std::size_t> order_;  // ranges_ by offset
  std::uint64_t begin_ = 0, end_ = 0, pos_ = 0;
  std::size_t next_ = 0, failed_ = 0;
  std::vector<std::pair<std::size_t, std::string>> held_;  // bytes of members before first_
  std::vector<std::size_t> held_done_;                     // their completions, in order
};

/// One object of a request of several ranges (a loader closure, a group of ELF hints): its bytes
/// to its own ObjectSink, `done` once its last byte came. Bytes that are not the object fail it
/// alone (status) and it takes no more; the request goes on for the others.
struct PartSink final : BlobSink {
  ObjectSink* s = nullptr;
  std::uint64_t left = 0, received = 0;
  Status status;
  std::function<void()> done;
  Status write(std::span<const std::byte> data) override {
    if (status) status = s->write(data);
    received += data.size();
    left -= std::min<std::uint64_t>(left, data.size());
    if (left == 0 && done) std::exchange(done, nullptr)();
    return {};
  }
};

/// One range of a request of several ranges over several objects of a layer blob that lie at most
/// kRangeGapBytes apart (merge_ranges): each object's bytes to its own PartSink, in blob order,
/// the bytes between them (tar headers, zstd:chunked's header frames) skipped. Never fails the
/// request: each object keeps its own status, so a wrong byte fails only the object it lands in.
/// After a broken answer the client asks for the rest of the range alone (Client::fetch_ranges):
/// its bytes continue where they stopped.
struct SpanSink final : BlobSink {
  struct Member {
    std::uint64_t offset, length;
    PartSink* sink;
  };
  std::uint64_t lo = 0, hi = 0;
  std::vector<Member> members;  // by offset, none overlapping
  std::size_t first = 0;        // the earliest of its members in the request's order
  std::uint64_t pos = 0;        // of the next byte, in the blob
  std::uint64_t skipped = 0;    // bytes between members
  std::size_t next = 0;         // into members
  Status write(std::span<const std::byte> data) override {
    const std::uint64_t from = pos;
    pos += data.size();
    std::uint64_t given = 0;
    for (; next < members.size(); ++next) {
      const Member& m = members[next];
      if (m.offset >= pos) break;  // starts after these bytes
      const std::uint64_t a = std::max(m.offset, from), b = std::min(m.offset + m.length, pos);
      if (a < b) {
        (void)m.sink->write(data.subspan(a - from, b - a));  // keeps its own status
        given += b - a;
      }
      if (m.offset + m.length > pos) break;  // continues in the next bytes
    }
    skipped += data.size() - given;
    return {};
  }
};

/// The ranges of one request of several ranges for `locs` (objects of one layer blob, in the order
/// they are wanted, each with its sink in `sinks`): objects at most `gap` bytes apart in the blob
/// share one range (docker-registry's CPU per range: kRangeGapBytes), which goes where the
/// earliest of them was in `locs`, as long as that brings at most kRangeReorderBytes of them ahead
/// of an object wanted before them (see there). The object at `lead` (an index, or locs.size() for
/// none) starts a range of its own: those of the object an open waits for must not queue behind
/// a neighbour's. Objects without bytes or overlapping another (only a broken index has them) keep
/// a range of their own. The plan is detail::plan_ranges's.
std::vector<SpanSink> merge_ranges(std::span<const ocirepo::ObjectLocation* const> locs,
                                   std::span<PartSink> sinks, std::size_t lead, std::uint64_t gap) {
  std::vector<detail::RangeObject> objects;
  objects.reserve(locs.size());
  for (const ocirepo::ObjectLocation* l : locs) objects.push_back({l->offset, l->length});
  std::vector<SpanSink> out;
  out.reserve(locs.size());
  for (const detail::PlannedRange& r :
       detail::plan_ranges(objects, lead, gap, kRangeReorderBytes)) {
    SpanSink& s = out.emplace_back();
    s.lo = s.pos = r.lo;
    s.hi = r.hi;
    s.first = r.first;
    for (std::size_t i : r.members)
      s.members.push_back({locs[i]->offset, locs[i]->length, &sinks[i]});
  }
  return out;
}

/// This thread's CPU time so far, in seconds (0 when the clock cannot be read).
double thread_cpu_s() {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// Names the calling thread (the kernel keeps 15 bytes), as perf, `top -H` and `ps -L` show it:
/// a profile of the serving process is read by its threads' kinds (who uses the CPUs while a
/// program waits for its loader closure). Best effort.
void name_thread(const char* name) { (void)::prctl(PR_SET_NAME, name, 0, 0, 0); }

// Opens first, then the libraries a fetched ELF file will load (ELF hints), then --prefetch, then
// the fill.
enum class Priority { kOpen, kHint, kPrefetch, kFill };
constexpr int kQueues = 4;
constexpr int kFillQueue = static_cast<int>(Priority::kFill);
constexpr unsigned kForegroundFetchers = 4;
/// Most objects one Range request brings (LazyOptions::batch_bytes).
constexpr std::size_t kMaxBatch = 64;
/// Bytes of fetched objects kept for their opens (take_tree), which store them in the page cache
/// (vfs::Prebuilt) instead of the program's reads each coming as a READ that reads and hashes
/// them again: only objects an open or an ELF hint asked for, and their neighbours, each at most
/// the vfs's copy limit (vfs::Options::copy_max_bytes). 16 MiB: a program's libraries fetched
/// ahead by ELF hints (apt-get's: 12 MB) wait for their opens, which take them one after another.
constexpr std::size_t kKeptCopyBytes = 16u << 20;
constexpr std::uint64_t kKeptCopyMax = 8u << 20;
static_assert(kKeptCopyMax <= kWholeBufferMax, "a kept object is decoded into its kept bytes");

}  // namespace

struct LazyProvider::Impl {
  /// One object being fetched: everybody who needs it waits on the same flight.
  struct Flight {
    bool claimed = false;
    bool done = false;
    Status status;
    /// The verified object, still unnamed (being made durable and committed): opens are served
    /// from it at once.
    std::shared_ptr<UniqueFd> verified;
    /// Opens that asked for it (read by the fetch without the lock).
    std::atomic<unsigned> waiters{0};
    /// An open or an ELF hint asked for it (not only the fill or --prefetch): its batch's bytes
    /// are kept for the opens (kKeptCopyBytes). Read by the fetch without the lock.
    std::atomic<bool> keep_bytes{false};
    /// Queued again once after a broken answer of several ranges (run()).
    bool requeued = false;
  };

  LazyOptions o;
  std::unique_ptr<RangeSource> ranges;
  store::ObjectDirs dirs;
  /// The index's objects of each layer in blob order (by offset): a fetch's neighbours.
  std::vector<std::vector<const ocirepo::ObjectLocation*>> by_offset;
  std::vector<std::size_t> layer_pos;  // of o.index.objects[i] in by_offset[its layer]

  mutable std::mutex mu;
  mutable std::condition_variable work_cv;  // workers: a queue got an entry, or stop
  mutable std::condition_variable done_cv;  // waiters: a flight finished
  mutable std::map<verity::Digest, std::shared_ptr<Flight>> flights;
  mutable std::deque<verity::Digest> queues[kQueues];  // by Priority
  mutable std::set<verity::Digest> hinted;             // ELF objects whose libraries were queued
  mutable std::set<verity::Digest> closure_leads;      // opens that queued their loader closure
  std::vector<std::thread> workers;
  bool started = false;
  bool stopping = false;
  /// Merkle trees of fetched objects not yet taken by an open (take_tree), oldest first in
  /// tree_order, at most LazyOptions::kept_tree_bytes of them: an object fetched ahead of its open
  /// (an ELF hint, a neighbour, the fill) is opened later or never.
  mutable std::map<verity::Digest, vfs::Prebuilt> trees;
  mutable std::deque<verity::Digest> tree_order;
  mutable std::size_t tree_bytes = 0;
  mutable std::size_t copy_bytes = 0;  ///< of the trees' bytes (kKeptCopyBytes)
  /// The directory (its nid in the image) of each object of the index, by its position in
  /// o.index.objects (kNoDir: none found), from a walk of the image that start() begins on a
  /// thread of its own; read only once dirs_ready. add_neighbours prefers the asked object's
  /// directory.
  static constexpr std::uint64_t kNoDir = ~std::uint64_t{0};
  std::vector<std::uint64_t> dir_of;
  std::atomic<bool> dirs_ready{false};
  std::atomic<bool> stop_walk{false};
  std::atomic<bool> cancelled{false};  // the provider is stopping: its range source is cancelled
  std::thread dir_walker;
  /// From the same walk: the directories under /usr/lib/locale, and the objects of glibc's
  /// gconv-modules.cache files (/usr/lib/<dir>/gconv/, /usr/lib/gconv/, /usr/lib64/gconv/).
  std::set<std::uint64_t> locale_dirs;
  std::vector<verity::Digest> gconv_caches;
  mutable bool gconv_hinted = false;  // guarded by mu
  std::size_t fill_left = 0;          // fill entries not yet finished
  FillProgress fill_progress;         // guarded by mu

  mutable std::atomic<std::uint64_t> fetched{0}, fetched_bytes{0}, failed{0};
  mutable DctxPool dctxs;  // every fetch's (ObjectSink)
  mutable std::atomic<bool> fill_done{false};

  /// A verified object of an open's or an ELF hint's fetch, waiting to be made durable and
  /// named (LazyOptions::commit_quiet_s): its flight stays claimed and serves opens from the
  /// unnamed file meanwhile, and the repository stays open (shared lock: gc waits) with the
  /// fetch lock of its batch's first object held (another process waits rather than fetch it).
  struct PendingCommit {
    repo::NewObject obj;
    verity::Digest d;
    std::shared_ptr<Flight> f;
    std::string what;
    std::uint64_t bytes = 0;
    std::shared_ptr<repo::Repository> repo;
    std::shared_ptr<repo::FetchLock> lock;
    std::chrono::steady_clock::time_point since;
  };
  mutable std::deque<PendingCommit> pending;  // guarded by mu, oldest first
  mutable std::uint64_t pending_bytes = 0;    // guarded by mu
  /// Fetches of opens and ELF hints running (guarded by mu); with their queues, what keeps the
  /// committer waiting; last_busy: when one last ended or an open last asked for an object.
  mutable unsigned foreground_running = 0;
  mutable unsigned waiting_opens = 0;  // guarded by mu
  mutable std::chrono::steady_clock::time_point last_busy;
  mutable std::condition_variable commit_cv;  // the committer: pending, quiet, or stop
  bool commit_stop = false;                   // guarded by mu: the fetch threads are joined
  /// LazyProvider::when_quiet's task (guarded by mu) and when it was given.
  std::function<void()> quiet_task;
  std::chrono::steady_clock::time_point quiet_task_since;
  mutable bool fill_end_waits = false;  // guarded by mu: "fill complete" after the commits
  std::thread committer;

  Impl(std::unique_ptr<RangeSource> r, LazyOptions opts)
      : o(std::move(opts)), ranges(std::move(r)) {}

  std::string object_name(const verity::Digest& d) const { return tree::object_path(d); }

  bool present(const verity::Digest& d) const {
    return dirs.open_object(object_name(d)).has_value();
  }

  void log(const std::string& line) const {
    // The fetches the stop cut short are not failures worth a line each.
    if (o.log && !cancelled.load(std::memory_order_relaxed)) o.log(line);
  }

  /// A fetch event for LazyOptions::trace: what happened to which object (its hex, shortened).
  void trace(std::string_view event, const verity::Digest& d, std::string_view more = {}) const {
    if (!o.trace) return;
    std::string line(event);
    // Appended piecewise: g++ 12 -O3 warns (-Wrestrict) on `" " + std::string`.
    line += ' ';
    line += std::string_view(d.hex()).substr(0, 12);
    if (!more.empty()) {
      line += ' ';
      line += more;
    }
    o.trace(line);
  }

  /// One object of a batch (see LazyOptions::batch_bytes): where it is, who waits for it, how
  /// its fetch went.
  struct Member {
    verity::Digest d;
    const ocirepo::ObjectLocation* loc = nullptr;
    std::shared_ptr<Flight> f;
    Status status;
    /// Verified and handed to the committer (commit_loop): its flight stays until it is named.
    bool deferred = false;
    /// The request of several ranges it was part of broke off before its bytes were settled
    /// (a malformed or cut multipart answer): not its bytes' fault, so it is queued again once.
    bool again = false;
  };

  /// The position of `loc` (an entry of o.index.objects) in the index.
  std::size_t index_pos(const ocirepo::ObjectLocation& loc) const {
    return static_cast<std::size_t>(&loc - o.index.objects.data());
  }

  /// Fills dir_of from the image (each directory once, so a corrupt one that links back
  /// cannot loop), then sets dirs_ready. Any error only leaves objects without a directory.
  void map_directories() {
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = thread_cpu_s();
    const erofs::Image& image = *o.image;
    // Each file's object by its digest's first bits: the index is sorted by digest (of one
    // algorithm), so the objects whose digests share them are one run of it, a few entries
    // (2^bits >= objects). ObjectIndex::find's binary search took ~2 ms of this walk for the
    // Debian image's 5,157 files (session 13, perf), each of its ~13 steps a likely cache miss
    // in 0.6 MB of locations, on a thread that runs while the first program's closure arrives.
    // Anything unexpected (two algorithms, an unsorted index) falls back to find().
    const auto& objects = o.index.objects;
    const unsigned bits =
        std::clamp(static_cast<unsigned>(std::bit_width(objects.size())), 1u, 16u);
    auto bucket = [bits](const verity::Digest& d) {
      return (static_cast<std::uint32_t>(d.bytes[0]) << 8 | d.bytes[1]) >> (16 - bits);
    };
    std::vector<std::uint32_t> run_start((std::size_t{1} << bits) + 1, 0);
    bool by_prefix = !objects.empty() && objects.size() < UINT32_MAX;
    for (std::size_t i = 0; by_prefix && i < objects.size(); ++i) {
      const verity::Digest& d = objects[i].digest;
      by_prefix = d.alg == objects[0].digest.alg && d.size >= 2 &&
                  (i == 0 || bucket(d) >= bucket(objects[i - 1].digest));
      ++run_start[bucket(d) + 1];
    }
    for (std::size_t b = 1; by_prefix && b < run_start.size(); ++b)
      run_start[b] += run_start[b - 1];
    auto find = [&](const verity::Digest& d) -> const ocirepo::ObjectLocation* {
      if (!by_prefix) return o.index.find(d);
      if (d.alg != objects[0].digest.alg || d.size < 2) return nullptr;
      const std::uint32_t b = bucket(d);
      for (std::uint32_t i = run_start[b]; i < run_start[b + 1]; ++i)
        if (objects[i].digest == d) return &objects[i];
      return nullptr;
    };
    std::vector<std::uint64_t> out(o.index.objects.size(), kNoDir);
    std::vector<std::pair<std::uint64_t, bool>> todo{{image.root_nid(), false}};  // in locale?
    std::set<std::uint64_t> seen{image.root_nid()};
    std::set<std::uint64_t> locales;
    const auto locale_root = follow_path(image, "/usr/lib/locale");
    std::size_t mapped = 0;
    while (!todo.empty() && !stop_walk.load(std::memory_order_relaxed)) {
      // Not a structured binding: the lambda below uses both, and clang 14 (Debian 12's, the CI's
      // sanitizer build) cannot capture structured bindings (C++20 P1091/P1381).
      const std::uint64_t dir = todo.back().first;
      const bool in_locale = todo.back().second;
      todo.pop_back();
      if (in_locale) locales.insert(dir);
      (void)image.iterate_dir(dir, 0, [&](const erofs::DirentView& e) {
        if (e.name == "." || e.name == "..") return true;
        auto info = image.inode(e.nid);
        if (!info) return true;
        if (info->is_dir()) {
          const bool below = in_locale || (locale_root && *locale_root == e.nid);
          if (seen.insert(e.nid).second) todo.emplace_back(e.nid, below);
          return true;
        }
        if (!info->is_reg() || info->xattr_size == 0) return true;
        auto d = image.metacopy_digest(*info);
        const auto* loc = d && *d ? find(**d) : nullptr;
        if (loc && out[index_pos(*loc)] == kNoDir) {
          out[index_pos(*loc)] = dir;
          ++mapped;
        }
        return true;
      });
    }
    if (stop_walk.load(std::memory_order_relaxed)) return;
    std::vector<std::string> gconv_paths{"/usr/lib/gconv/gconv-modules.cache",
                                         "/usr/lib64/gconv/gconv-modules.cache"};
    if (auto lib = follow_path(image, "/usr/lib"); lib && *lib)
      (void)image.iterate_dir(**lib, 0, [&](const erofs::DirentView& e) {
        if (e.name != "." && e.name != "..")
          gconv_paths.push_back("/usr/lib/" + std::string(e.name) + "/gconv/gconv-modules.cache");
        return true;
      });
    for (const auto& path : gconv_paths) {
      auto nid = follow_path(image, path);
      if (!nid || !*nid) continue;
      auto d = object_of(image, **nid);
      if (d && *d && o.index.find(**d) &&
          std::find(gconv_caches.begin(), gconv_caches.end(), **d) == gconv_caches.end())
        gconv_caches.push_back(**d);
    }
    locale_dirs = std::move(locales);
    dir_of = std::move(out);
    dirs_ready.store(true, std::memory_order_release);
    if (o.trace) {
      const auto ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
      o.trace(fmt::format("directories {} objects in {} directories, {} us (cpu {} us)", mapped,
                          seen.size(), static_cast<long>(ms.count() * 1000),
                          static_cast<long>((thread_cpu_s() - cpu0) * 1e6)));
    }
  }

  /// Adds to `batch` (its first member the object asked for) the objects stored next to it in
  /// its layer that the same Range request can bring: missing, not being fetched, the whole span
  /// at most o.batch_bytes longer than the first object's own bytes; of the two sides, the one
  /// in the first object's directory (once dir_of is known), else the nearer.
  /// Their flights are claimed here, so opens of them wait for this batch. Called with mu held.
  void add_neighbours(std::vector<Member>& batch) const {
    const ocirepo::ObjectLocation& first = *batch[0].loc;
    if (o.batch_bytes == 0) return;
    const auto& order = by_offset[first.layer];
    std::size_t pos = layer_pos[index_pos(first)];
    std::size_t after = pos + 1, before = pos;  // next candidates: order[after], order[before-1]
    std::uint64_t lo = first.offset, hi = first.offset + first.length;
    const std::uint64_t limit = first.length + o.batch_bytes;
    const std::uint64_t first_dir =
        dirs_ready.load(std::memory_order_acquire) ? dir_of[index_pos(first)] : kNoDir;
    // The asked object's directory may take more (LazyOptions::directory_batch_bytes): the file
    // a program opens next is most likely there.
    const std::uint64_t dir_limit = first.length + std::max(o.batch_bytes, o.directory_batch_bytes);
    auto limit_of = [&](const ocirepo::ObjectLocation& c) {
      return first_dir != kNoDir && dir_of[index_pos(c)] == first_dir ? dir_limit : limit;
    };
    while (batch.size() < kMaxBatch) {
      const ocirepo::ObjectLocation* next = after < order.size() ? order[after] : nullptr;
      const ocirepo::ObjectLocation* prev = before > 0 ? order[before - 1] : nullptr;
      // Ranges that overlap the batch (only a broken index has them) are nobody's neighbours.
      if (next && next->offset < hi) {
        ++after;
        continue;
      }
      if (prev && prev->offset + prev->length > lo) {
        --before;
        continue;
      }
      const bool fits_next = next && next->offset + next->length - lo <= limit_of(*next);
      const bool fits_prev = prev && hi - prev->offset <= limit_of(*prev);
      if (!fits_next && !fits_prev) return;
      bool take_next =
          fits_next && (!fits_prev || next->offset + next->length - hi <= lo - prev->offset);
      // The files of the asked object's directory before the nearer bytes of another: a program
      // reads a directory's files one after another (glibc's locale data, configuration
      // directories), and one of them may lie beyond the budget's reach on the other side
      // (session 11: dpkg's LC_ADDRESS and LC_CTYPE sit before LC_IDENTIFICATION, which it
      // opens first, and 63 small files of other directories after it filled the batch).
      if (fits_next && fits_prev && first_dir != kNoDir) {
        const bool next_here = dir_of[index_pos(*next)] == first_dir;
        if (next_here != (dir_of[index_pos(*prev)] == first_dir)) take_next = next_here;
      }
      const ocirepo::ObjectLocation* c = take_next ? next : prev;
      if (take_next)
        ++after;
      else
        --before;
      auto it = flights.find(c->digest);
      if ((it != flights.end() && it->second->claimed) || present(c->digest))
        continue;  // passed over: its bytes are dropped
      auto& f = flights[c->digest];
      if (!f) f = std::make_shared<Flight>();
      f->claimed = true;
      trace("batched", c->digest, std::string_view(first.digest.hex()).substr(0, 12));
      batch.push_back(Member{c->digest, c, f, {}});
      lo = std::min(lo, c->offset);
      hi = std::max(hi, c->offset + c->length);
    }
  }

  /// Fetches a batch's objects with one Range request over their span and checks each against
  /// its own digest: bad bytes fail that member alone (its status), and nothing of it is stored.
  /// A verified object is handed to its flight's waiters before the fsync and the commit, which
  /// only make it durable and named; with `defer`, those are the committer's (commit_loop).
  void fetch(std::vector<Member>& batch, bool multi = false, bool defer = false) const {
    const oci::ContentDigest& blob = o.index.layers[batch[0].loc->layer].digest;
    auto what_of = [&](const ocirepo::ObjectLocation& r) {
      return "object " + object_name(r.digest) + " (" + o.source.str() + " blob " + blob.str() +
             " bytes " + std::to_string(r.offset) + "+" + std::to_string(r.length) + ")";
    };
    bool first_present = false;  // another process stored it meanwhile: only neighbours left
    auto fail_all = [&](const Error& e) {
      for (auto& m : batch)
        if (!(first_present && &m == &batch[0])) m.status = fail(e);
    };
    repo::OpenOptions w;
    w.write = true;
    auto opened = repo::Repository::open(o.repo_path, w);
    if (!opened) return fail_all(opened.error());
    // Shared with the commits it defers (PendingCommit): open until they are done.
    auto repo = std::make_shared<repo::Repository>(std::move(*opened));
    // Another process (a lazy mount, `cfs oci pull` finishing a fill) may be fetching the object
    // asked for: wait for it, then find it committed, rather than fetch it twice. Neighbours are
    // taken without waiting (at worst another process fetches one of them too; the commit keeps
    // the first copy).
    auto held = repo::lock_object_fetch(*repo, batch[0].d);
    if (!held) return fail_all(held.error());
    trace("locked", batch[0].d);
    first_present = present(batch[0].d);
    if (first_present && batch.size() == 1) return;
    struct Part {
      Member* m;
      std::string what;
      std::unique_ptr<ObjectSink> sink;
    };
    const bool keep = batch[0].f->keep_bytes.load(std::memory_order_relaxed);
    std::vector<Part> parts;
    std::vector<BatchSink::Range> ranges_out;
    for (auto& m : batch) {
      if (first_present && &m == &batch[0]) continue;
      verity::Params p;
      p.alg = m.d.alg;
      std::string what = what_of(*m.loc);
      auto sink = std::make_unique<ObjectSink>(*repo, *m.loc, p, what, dctxs,
                                               keep && m.loc->size <= kKeptCopyMax);
      parts.push_back(Part{&m, std::move(what), std::move(sink)});
    }
    for (auto& part : parts)
      ranges_out.push_back({part.m->loc->offset, part.m->loc->length, part.sink.get(), {}});
    // Each member is settled once: checked against its digest and, when right, handed to its
    // waiters as soon as its own last byte has arrived (BatchSink's on_complete), not when the
    // whole span has: the object asked for may come first in a span of many neighbours, and an
    // open of a neighbour waits only for that neighbour's bytes.
    std::vector<bool> settled(parts.size());
    std::vector<Part*> good;
    BatchSink* batch_sink = nullptr;
    // A group of ELF hints (multi): each member's bytes straight to its own sink (PartSink);
    // settled when its last byte came.
    std::vector<PartSink> part_sinks(multi ? parts.size() : 0);
    auto finish_of = [&](std::size_t i) -> Result<verity::MerkleTree> {
      if (!multi) return batch_sink->finish(i);
      if (!part_sinks[i].status) return fail(part_sinks[i].status.error());
      return parts[i].sink->finish();
    };
    auto settle = [&](std::size_t i) {
      if (settled[i]) return;
      settled[i] = true;
      Part& part = parts[i];
      Member& m = *part.m;
      auto got = finish_of(i);
      if (!got) {
        m.status = fail(eio(got.error().message()));
      } else if (!(got->digest == m.d)) {
        m.status = fail(eio(part.what + ": the bytes have fs-verity digest " + got->digest.hex() +
                            ", not the image's; nothing stored"));
      } else {
        trace("verified", m.d);
        good.push_back(&part);
        std::shared_ptr<const HugeBytes> bytes = part.sink->take_bytes();
        if (auto ro = sys::reopen(part.sink->object().fd(), O_RDONLY | O_CLOEXEC, part.what)) {
          std::lock_guard lock(mu);
          keep_tree(std::make_shared<const verity::MerkleTree>(std::move(*got)), bytes);
          m.f->verified = std::make_shared<UniqueFd>(std::move(*ro));
          done_cv.notify_all();
        }
        // Only the object asked for: a neighbour's libraries are a guess upon a guess.
        if (o.image && o.elf_prefetch && (multi || &m == &batch[0]))
          queue_loader_objects(part.sink->object().fd(), bytes.get(), m.d, part.what);
      }
      if (!m.status && &m != &batch[0]) log(m.status.error().message());
    };
    if (multi) {
      for (std::size_t i = 0; i < parts.size(); ++i) {
        PartSink& ps = part_sinks[i];
        ps.s = parts[i].sink.get();
        ps.left = parts[i].m->loc->length;
        ps.done = [&settle, i] { settle(i); };
      }
      // Objects a header apart come as one range (kRangeGapBytes), each still verified alone.
      std::vector<const ocirepo::ObjectLocation*> locs;
      std::size_t lead = parts.size();
      for (std::size_t i = 0; i < parts.size(); ++i) {
        locs.push_back(parts[i].m->loc);
        // The object an open waits for (a closure's program): its bytes first.
        if (parts[i].m == &batch[0] && batch[0].f->waiters.load(std::memory_order_relaxed) > 0)
          lead = i;
      }
      std::vector<SpanSink> spans =
          merge_ranges(locs, part_sinks, lead, std::min(kRangeGapBytes, o.batch_bytes));
      std::vector<BlobRange> asked;
      std::uint64_t total = 0;
      for (auto& sp : spans) {
        asked.push_back(
            {sp.lo, sp.hi - sp.lo,
             sp.members.size() == 1 ? sp.members[0].sink : static_cast<BlobSink*>(&sp)});
        total += sp.hi - sp.lo;
      }
      trace("ranges", batch[0].d,
            std::to_string(total) + " bytes, " + std::to_string(parts.size()) + " objects, " +
                std::to_string(asked.size()) + " ranges");
      auto st = ranges->fetch_ranges(blob, asked);
      std::uint64_t received = 0;
      for (auto& ps : part_sinks) received += ps.received;
      for (auto& sp : spans) received += sp.skipped;
      fetched_bytes += received;
      trace("ranges done", batch[0].d);
      if (!st) {
        const Error e = eio(what_of(*batch[0].loc) + " with " + std::to_string(parts.size() - 1) +
                            " other ELF hints: " + st.error().message());
        for (std::size_t i = 0; i < parts.size(); ++i)
          if (!settled[i]) {
            settled[i] = true;
            parts[i].m->status = fail(e);
            parts[i].m->again = true;
          }
      }
      for (std::size_t i = 0; i < parts.size(); ++i) settle(i);
      commit(repo, *held, good, batch, defer);
      return;
    }
    // parts[0] is the object asked for, unless another process stored it meanwhile.
    const Flight& asked = *batch[0].f;
    BatchSink sink(
        std::move(ranges_out), first_present ? BatchSink::kNone : 0,
        [&asked] { return asked.waiters.load(std::memory_order_relaxed) > 0; }, settle);
    batch_sink = &sink;
    if (o.trace) sink.on_first_bytes = [&] { trace("response", batch[0].d); };
    const std::uint64_t lo = sink.begin(), hi = sink.end();
    trace("range", batch[0].d,
          std::to_string(hi - lo) + " bytes, " + std::to_string(parts.size()) + " objects");
    auto st = ranges->fetch_range(blob, lo, hi - lo, sink);
    (void)sink.release();  // the members' own statuses say what went wrong
    fetched_bytes += sink.received();
    trace("range done", batch[0].d);
    if (!st) {
      // Members verified before the transfer broke off are whole and right: they are kept.
      const std::string span = parts.size() == 1
                                   ? parts[0].what
                                   : what_of(*batch[0].loc) + " with " +
                                         std::to_string(parts.size() - 1) + " neighbours (bytes " +
                                         std::to_string(lo) + "+" + std::to_string(hi - lo) + ")";
      const Error e = eio(span + ": " + st.error().message());
      for (std::size_t i = 0; i < parts.size(); ++i)
        if (!settled[i]) {
          settled[i] = true;
          parts[i].m->status = fail(e);
        }
    }
    for (std::size_t i = 0; i < parts.size(); ++i) settle(i);  // those the span ended early
    commit(repo, *held, good, batch, defer);
  }

  /// Makes a fetch's verified objects durable and named, or with `defer` hands them to the
  /// committer (commit_loop) with the repository and the fetch lock `held`.
  template <typename PartT>
  void commit(const std::shared_ptr<repo::Repository>& repo, repo::FetchLock& held,
              std::vector<PartT*>& good, std::vector<Member>& batch, bool defer) const {
    if (defer && !good.empty()) {
      auto lock_held = std::make_shared<repo::FetchLock>(std::move(held));
      const auto now = std::chrono::steady_clock::now();
      std::lock_guard lock(mu);
      for (PartT* part : good) {
        part->m->deferred = true;
        const std::uint64_t n = part->m->loc->size;
        pending.push_back(PendingCommit{std::move(part->sink->object()), part->m->d, part->m->f,
                                        part->what, n, repo, lock_held, now});
        pending_bytes += n;
      }
      commit_cv.notify_all();
      return;
    }
    // Durable before it has a name: the image already names it, so no later sync() would order
    // it, and a power cut must not leave a named object with lost data. The writeback of every
    // member starts first, so that the fsyncs wait for writes already under way and share
    // journal commits, instead of one commit per object in turn (a batch has up to 64 objects,
    // and this thread takes no other fetch meanwhile).
    if (o.sync_each_object && good.size() > 1)
      for (PartT* part : good) sys::start_writeback(part->sink->object().fd());
    for (PartT* part : good) {
      repo::NewObject& obj = part->sink->object();
      Status done = o.sync_each_object ? sys::fsync(obj.fd(), part->what) : Status{};
      if (done) done = repo->commit_object(std::move(obj), part->m->d).map([](auto&&) {});
      if (done) ++fetched;
      part->m->status = std::move(done);
    }
    if (!good.empty()) trace("committed", batch[0].d, std::to_string(good.size()) + " objects");
  }

  /// When the (verified) object `d` in `fd` is a dynamically linked ELF file, queues the objects
  /// of its interpreter and libraries (ELF hints): the loader will open them one after another,
  /// each a round trip; fetched now they arrive together. Never fails: a file that is not ELF or
  /// is malformed gives no hint, and the object it came with is served as usual.
  /// `bytes`: the object's bytes when the fetch kept them (read there instead of mapping the file:
  /// no page faults, no unmapping that interrupts the other threads' CPUs), else null.
  void queue_loader_objects(int fd, const HugeBytes* bytes, const verity::Digest& d,
                            const std::string& what) const {
    // With a loader graph, the push resolved every object already: what it lists is queued
    // (once per object, unless an open queued it), and nothing is parsed.
    if (!o.loader_graph.empty()) {
      std::unique_lock lock(mu);
      queue_closure(d, lock);
      return;
    }
    {
      std::lock_guard lock(mu);
      if (!hinted.insert(d).second) return;
    }
    std::optional<MappedFile> map;
    std::span<const std::byte> view;
    if (bytes) {
      view = std::span<const std::byte>(bytes->data(), bytes->size());
    } else {
      auto mapped = MappedFile::map_fd(fd, what);
      if (!mapped) return;
      map.emplace(std::move(*mapped));
      view = map->bytes();
    }
    auto info = detail::parse_elf_load_info(view, what);
    if (!info || !*info) return;
    std::vector<verity::Digest> libs;
    for (const auto& lib : loader_objects(*o.image, **info))
      if (o.index.find(lib) && !present(lib)) libs.push_back(lib);
    trace("elf hints", d, std::to_string(libs.size()) + " objects");
    std::lock_guard lock(mu);
    for (const auto& lib : libs)
      if (!flights.count(lib) || !flights[lib]->claimed) request(lib, Priority::kHint);
  }

  /// The objects the loader opens for `d` and for those in turn (LazyOptions::loader_graph),
  /// breadth first (the loader's order), queued as ELF hints at once: the hint workers group
  /// those of one layer blob into one request of several ranges (add_hints). Each is marked
  /// hinted, so that its own fetch does not queue them again. Once per object; called with
  /// `lock` (on mu) held, released for the present() checks.
  /// Returns how many were queued.
  std::size_t queue_closure(const verity::Digest& d, std::unique_lock<std::mutex>& lock) const {
    if (!o.image || !o.elf_prefetch || o.loader_graph.empty()) return 0;
    const auto* loc = o.index.find(d);
    if (!loc || !hinted.insert(d).second) return 0;
    const auto order = loader_closure(o.loader_graph, static_cast<std::uint32_t>(index_pos(*loc)),
                                      kMaxLoaderClosure);
    if (order.empty()) return 0;
    std::vector<verity::Digest> closure;
    for (std::uint32_t k : order)
      if (hinted.insert(o.index.objects[k].digest).second)
        closure.push_back(o.index.objects[k].digest);
    lock.unlock();
    std::vector<verity::Digest> missing;
    for (const auto& c : closure)
      if (!present(c)) missing.push_back(c);
    lock.lock();
    trace(
        "elf closure", d,
        std::to_string(order.size()) + " objects, " + std::to_string(missing.size()) + " missing");
    std::size_t queued = 0;
    for (const auto& c : missing)
      if (auto it = flights.find(c); it == flights.end() || !it->second->claimed) {
        request(c, Priority::kHint);
        ++queued;
      }
    return queued;
  }

  /// The flight for `d`, created and queued at `prio` if there is none. Called with mu held.
  std::shared_ptr<Flight> request(const verity::Digest& d, Priority prio) const {
    auto& f = flights[d];
    if (!f) f = std::make_shared<Flight>();
    if (prio <= Priority::kHint) f->keep_bytes = true;
    // A waiting open overtakes the fill: queue it again, ahead (a claimed one is skipped).
    if (!f->claimed) queues[static_cast<int>(prio)].push_back(d);
    work_cv.notify_all();  // a worker of the right kind must wake (see worker())
    return f;
  }

  /// Runs the flight of `d` on this thread, with its neighbours (add_neighbours) unless
  /// `alone`; its verified objects are committed by the committer when `defer`. Called with
  /// `lock` held, returns with it held.
  void run(const verity::Digest& d, const std::shared_ptr<Flight>& f,
           std::unique_lock<std::mutex>& lock, bool alone = false, bool group = false,
           bool defer = false) const {
    f->claimed = true;
    trace("claimed", d);
    std::vector<Member> batch{Member{d, nullptr, f, {}}};
    const auto* loc = o.index.find(d);
    const bool placed = loc && loc->layer < o.index.layers.size();
    if (placed) batch[0].loc = loc;
    // A group's hints are claimed before the lock is let go: another worker would otherwise
    // take them meanwhile, as a group of their own (an open's loader closure without the open).
    if (placed && alone && group) add_hints(batch);
    lock.unlock();
    // Another fetcher (or a pull) may have stored it meanwhile (a group's hints are fetched
    // all the same: fetch() leaves out the one present).
    const bool have = present(d);
    lock.lock();
    if (!have && !placed)
      batch[0].status = fail_errno("object " + object_name(d) + ": not in the lazy index", ENOENT);
    else if (!have && !alone)
      add_neighbours(batch);
    lock.unlock();
    if (placed && (!have || batch.size() > 1)) fetch(batch, group && batch.size() > 1, defer);
    lock.lock();
    for (auto& m : batch) {
      if (m.deferred) continue;  // the committer finishes its flight (commit_loop)
      m.f->verified.reset();     // named now (or failed): opens use the repository
      // The hints a broken answer of several ranges never delivered (session 13: the rest of
      // the group, failed and fetched one by one only as the program opened them) are queued
      // again as they were, once, while their opens keep waiting: the client asks this
      // registry for one range per request from then on (Client::fetch_ranges).
      if (!m.status && m.again && !m.f->requeued && !cancelled.load(std::memory_order_relaxed)) {
        m.f->requeued = true;
        m.f->claimed = false;
        trace("requeued", m.d);
        request(m.d, m.f->waiters.load(std::memory_order_relaxed) > 0 ? Priority::kOpen
                                                                      : Priority::kHint);
        continue;
      }
      if (!m.status) ++failed;
      m.f->status = std::move(m.status);
      m.f->done = true;
      if (auto it = flights.find(m.d); it != flights.end() && it->second == m.f) flights.erase(it);
    }
    fill_complete_if_named();
    done_cv.notify_all();
  }

  /// Adds to `batch` (its first member an ELF hint nobody has opened yet) the other such hints
  /// queued of the same layer blob, claimed here: one request of several ranges brings them all
  /// (Client::fetch_ranges), which costs the registry about a third of the CPU of a request
  /// each. Called with mu held.
  void add_hints(std::vector<Member>& batch) const {
    const std::uint32_t layer = batch[0].loc->layer;
    for (const auto& h : queues[static_cast<int>(Priority::kHint)]) {
      if (batch.size() >= kMaxBatch) return;
      auto it = flights.find(h);
      if (it == flights.end() || it->second->claimed ||
          it->second->waiters.load(std::memory_order_relaxed) != 0)
        continue;
      const auto* loc = o.index.find(h);
      if (!loc || loc->layer != layer || loc->length == 0 || present(h)) continue;
      it->second->claimed = true;
      trace("grouped", h, std::string_view(batch[0].d.hex()).substr(0, 12));
      batch.push_back(Member{h, loc, it->second, {}});
    }
  }

  /// Takes entries from queues 0..last_queue, highest priority first.
  void worker(int last_queue) {
    std::unique_lock lock(mu);
    for (;;) {
      int q = 0;
      work_cv.wait(lock, [&] {
        for (q = 0; q <= last_queue; ++q)
          if (!queues[q].empty()) break;
        return stopping || q <= last_queue;
      });
      if (stopping) return;
      verity::Digest d = queues[q].front();
      queues[q].pop_front();
      auto it = flights.find(d);
      if (it == flights.end() || it->second->claimed) {
        note_fill_end(q, d, false);
        continue;
      }
      auto f = it->second;
      // An ELF hint nobody has opened yet is a guess: its neighbours would be a guess upon a
      // guess, and their bytes and objects compete with the program's next opens (session 10
      // trace: /etc/ld.so.cache's 63 neighbours, 48 KB, delayed it by 30-40 ms).
      const bool guess =
          q == static_cast<int>(Priority::kHint) && f->waiters.load(std::memory_order_relaxed) == 0;
      // An open whose loader closure it queued (queue_closure) leads that closure's request of
      // several ranges: one request instead of two side by side, the object's bytes first
      // (session 13: the closure's 5 MB beside it delayed apt-get's own 50 KB by ~7 ms). Its
      // neighbours are left out: a program's neighbours are rarely opened next, its libraries are.
      const bool leads = q == 0 && o.multirange && closure_leads.erase(d) > 0;
      // An open's or a hint's objects are committed when the mount is quiet (commit_loop); the
      // fill's and --prefetch's at once, as nothing waits on them.
      const bool foreground = q <= static_cast<int>(Priority::kHint);
      if (foreground) ++foreground_running;
      run(d, f, lock, guess || leads, (guess && o.multirange) || leads,
          foreground && committer.joinable());
      if (foreground && --foreground_running == 0) {
        last_busy = std::chrono::steady_clock::now();
        commit_cv.notify_all();
      }
      if (!f->status && q != 0) log(f->status.error().message());
      note_fill_end(q, d, !f->status);
    }
  }

  /// Called with mu held after the queue entry `d` was handled.
  void note_fill_end(int q, const verity::Digest& d, bool failed_now) {
    if (q != kFillQueue) return;
    if (o.progress) {
      FillProgress& p = fill_progress;
      ++p.objects;
      if (const auto* loc = o.index.find(d)) p.bytes += loc->length;
      if (failed_now) ++p.failed;
      o.progress(p);
    }
    if (--fill_left != 0) return;
    // Every object is fetched or claimed; "fill complete" says they are in the repository too.
    fill_end_waits = true;
    commit_cv.notify_all();  // the pending commits must not wait for a quiet mount any more
    fill_complete_if_named();
  }

  /// Logs "fill complete" once the fill has ended and no object of the index is still being
  /// fetched or waits for its commit (mu held). An entry the fill found claimed by an open may
  /// still be on its way to `pending` (its open is served before commit() queues it): the
  /// claimed flights say so, not `pending` alone (CI, session 19: "fill complete" with the
  /// open's object still unnamed).
  void fill_complete_if_named() const {
    if (!fill_end_waits || !pending.empty()) return;
    for (const auto& [d, f] : flights)
      if (f->claimed && !f->done) return;
    fill_end_waits = false;
    fill_complete();
  }

  /// The fill's end (mu held): every object of the index fetched and committed (or failed).
  void fill_complete() const {
    fill_done = true;
    log("fill complete: " + std::to_string(fetched.load()) + " objects fetched (" +
        std::to_string(fetched_bytes.load()) + " bytes), " + std::to_string(failed.load()) +
        " failed");
  }

  static std::chrono::steady_clock::duration seconds(double s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(s));
  }
  /// No open waits and no open's or hint's fetch is queued or running (mu held).
  bool foreground_idle() const {
    return foreground_running == 0 && waiting_opens == 0 &&
           queues[static_cast<int>(Priority::kOpen)].empty() &&
           queues[static_cast<int>(Priority::kHint)].empty();
  }
  /// The pending commits must not wait longer (mu held, pending not empty).
  bool commits_forced(std::chrono::steady_clock::time_point now) const {
    return stopping || fill_end_waits || pending.size() >= LazyOptions::kMaxPendingCommitObjects ||
           pending_bytes >= LazyOptions::kMaxPendingCommitBytes ||
           now >= pending.front().since + seconds(o.commit_max_wait_s);
  }

  /// The committer's thread: makes the verified objects of opens and ELF hints durable and names
  /// them (fsync, then Repository::commit_object, as a fetch did itself before session 14) once the
  /// mount has been quiet for o.commit_quiet_s, or when they must not wait longer
  /// (commits_forced); a round started while quiet stops between objects when an open asks for a
  /// missing object again. Each flight is finished (done, unclaimed) only once its object is
  /// named or has failed, so an open meanwhile is served from the verified unnamed file, and the
  /// fill, the neighbours and the ELF hints leave it alone. Returns once commit_stop is set and
  /// nothing is pending.
  void commit_loop() {
    std::unique_lock lock(mu);
    for (;;) {
      if (pending.empty()) {
        fill_complete_if_named();
        if (quiet_task) {
          // After the commits (a program's objects first), in the same quiet moments.
          const auto now = std::chrono::steady_clock::now();
          const auto bound = quiet_task_since + seconds(o.commit_max_wait_s);
          if (commit_stop || stopping || now >= bound ||
              (foreground_idle() && now >= last_busy + seconds(o.commit_quiet_s))) {
            auto task = std::move(quiet_task);
            quiet_task = nullptr;
            lock.unlock();
            task();
            lock.lock();
            continue;
          }
          commit_cv.wait_until(lock, foreground_idle()
                                         ? std::min(bound, last_busy + seconds(o.commit_quiet_s))
                                         : bound);
          continue;
        }
        if (commit_stop) return;
        commit_cv.wait(lock);
        continue;
      }
      auto now = std::chrono::steady_clock::now();
      const bool forced = commits_forced(now);
      if (!forced && !(foreground_idle() && now >= last_busy + seconds(o.commit_quiet_s))) {
        auto until = pending.front().since + seconds(o.commit_max_wait_s);
        if (foreground_idle()) until = std::min(until, last_busy + seconds(o.commit_quiet_s));
        commit_cv.wait_until(lock, until);
        continue;
      }
      std::vector<PendingCommit> todo(std::make_move_iterator(pending.begin()),
                                      std::make_move_iterator(pending.end()));
      pending.clear();
      pending_bytes = 0;
      lock.unlock();
      // The writeback of every object starts first, so that the fsyncs wait for writes already
      // under way and can share journal commits.
      if (todo.size() > 1)
        for (auto& p : todo) sys::start_writeback(p.obj.fd());
      std::size_t done = 0;
      std::vector<Status> results;
      for (auto& p : todo) {
        if (done > 0 && !forced) {
          std::lock_guard l(mu);
          // An open asks for a missing object again: the rest waits for the next quiet moment
          // (their writeback is under way).
          if (!foreground_idle() && !commits_forced(std::chrono::steady_clock::now())) break;
        }
        Status st = sys::fsync(p.obj.fd(), p.what);
        if (st) st = p.repo->commit_object(std::move(p.obj), p.d).map([](auto&&) {});
        results.push_back(std::move(st));
        ++done;
      }
      lock.lock();
      for (std::size_t i = 0; i < done; ++i) {
        PendingCommit& p = todo[i];
        p.f->verified.reset();  // named now (or failed): opens use the repository
        if (results[i])
          ++fetched;
        else {
          ++failed;
          log(results[i].error().message());
        }
        p.f->status = std::move(results[i]);
        p.f->done = true;
        if (auto it = flights.find(p.d); it != flights.end() && it->second == p.f)
          flights.erase(it);
      }
      if (done > 0) trace("committed", todo[0].d, std::to_string(done) + " objects");
      // Not committed in this round: back in front, oldest first.
      for (std::size_t i = todo.size(); i-- > done;) {
        pending_bytes += todo[i].bytes;
        pending.push_front(std::move(todo[i]));
      }
      done_cv.notify_all();
      lock.unlock();
      todo.clear();  // the repositories and fetch locks no commit needs any more
      lock.lock();
    }
  }

  /// What a kept tree counts against LazyOptions::kept_tree_bytes.
  static std::size_t kept_cost(const verity::MerkleTree& t) {
    return std::max(t.tree.size(), LazyOptions::kKeptTreeEntryBytes);
  }
  /// Keeps the tree of a verified object for its open, with the bytes hashed into it when
  /// there are any (mu held).
  void keep_tree(std::shared_ptr<const verity::MerkleTree> t,
                 std::shared_ptr<const HugeBytes> bytes) const {
    const verity::Digest d = t->digest;
    const std::size_t size = kept_cost(*t);
    if (bytes && bytes->size() > kKeptCopyBytes) bytes.reset();
    const std::size_t nbytes = bytes ? bytes->size() : 0;
    if (size > o.kept_tree_bytes ||
        !trees.emplace(d, vfs::Prebuilt{std::move(t), std::move(bytes)}).second)
      return;
    tree_order.push_back(d);
    tree_bytes += size;
    copy_bytes += nbytes;
    while (tree_bytes > o.kept_tree_bytes) {
      auto it = trees.find(tree_order.front());
      if (it != trees.end()) {
        tree_bytes -= kept_cost(*it->second.tree);
        if (it->second.bytes) copy_bytes -= it->second.bytes->size();
        trees.erase(it);
      }
      tree_order.pop_front();
    }
    // Over the bytes' budget, the oldest kept bytes go first; their trees stay (an open of
    // such an object reads its pages as READ requests, verified as always).
    for (std::size_t i = 0; copy_bytes > kKeptCopyBytes && i < tree_order.size(); ++i) {
      auto it = trees.find(tree_order[i]);
      if (it == trees.end() || !it->second.bytes) continue;
      copy_bytes -= it->second.bytes->size();
      it->second.bytes.reset();
    }
    // Taken trees leave their entries behind (take_tree): drop them before they pile up.
    if (tree_order.size() > 2 * trees.size() + 64)
      std::erase_if(tree_order, [&](const verity::Digest& k) { return !trees.count(k); });
  }

  vfs::Prebuilt take_tree(const verity::Digest& d) const {
    std::lock_guard lock(mu);
    auto it = trees.find(d);
    if (it == trees.end()) return {};
    vfs::Prebuilt t = std::move(it->second);
    trees.erase(it);
    tree_bytes -= kept_cost(*t.tree);
    if (t.bytes) copy_bytes -= t.bytes->size();
    // Its entry in tree_order stays until it reaches the front: eviction skips it.
    return t;
  }

  /// An open of a missing locale file (a directory under /usr/lib/locale): glibc opens
  /// gconv-modules.cache next, while it loads the locale (before the locale's other files), in
  /// another directory, so neither neighbours nor ELF hints bring it. Queued as an ELF hint is,
  /// once per mount. Called with mu held.
  void hint_gconv_cache(const verity::Digest& d) const {
    if (gconv_hinted || !dirs_ready.load(std::memory_order_acquire)) return;
    const auto* loc = o.index.find(d);
    if (!loc || !locale_dirs.count(dir_of[index_pos(*loc)])) return;
    gconv_hinted = true;
    for (const auto& g : gconv_caches) {
      auto it = flights.find(g);
      if ((it != flights.end() && it->second->claimed) || present(g)) continue;
      trace("locale hint", g);
      request(g, Priority::kHint);
    }
  }

  /// Waits for `d` at most the timeout (fetching on this thread before start(): no workers).
  /// Returns the verified object when it is not committed yet, else nullopt (it is in the
  /// repository).
  Result<std::optional<UniqueFd>> ensure(const verity::Digest& d) const {
    trace("open", d);
    std::unique_lock lock(mu);
    last_busy = std::chrono::steady_clock::now();  // the committer waits for quiet
    // Its loader closure first (an open only: a lookup or a stat never comes here), queued as
    // ELF hints, then the open itself, without unlocking between: the worker that takes the
    // open finds the closure queued and asks for the object and its closure with one request
    // (worker(), closure_leads), the object's range first.
    if (started && queue_closure(d, lock) > 0) closure_leads.insert(d);
    auto f = request(d, Priority::kOpen);
    ++f->waiters;
    hint_gconv_cache(d);
    if (!started && !f->claimed) {
      run(d, f, lock);
      CFS_TRY(f->status);
      return std::optional<UniqueFd>();
    }
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(o.timeout_s));
    ++waiting_opens;
    const bool got = done_cv.wait_until(lock, deadline, [&] { return f->done || f->verified; });
    if (--waiting_opens == 0) {
      last_busy = std::chrono::steady_clock::now();
      commit_cv.notify_all();
    }
    if (!got)
      return fail(eio("object " + object_name(d) + ": not fetched from " + o.source.str() +
                      " within " + std::to_string(o.timeout_s) + " s"));
    if (!f->done) {
      // An open file of its own (offset and all), on the same verified inode.
      std::shared_ptr<UniqueFd> v = f->verified;
      lock.unlock();
      CFS_ASSIGN(UniqueFd fd, sys::reopen(v->get(), O_RDONLY | O_CLOEXEC, object_name(d)));
      return std::make_optional(std::move(fd));
    }
    CFS_TRY(f->status);
    return std::optional<UniqueFd>();
  }
};

LazyProvider::LazyProvider(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LazyProvider::~LazyProvider() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  // Before the joins: a worker inside a Range transfer or a retry wait would otherwise hold the
  // server's exit for as long as the registry takes (31 s of backoff when it is gone).
  impl_->cancelled = true;
  impl_->ranges->cancel();
  impl_->stop_walk = true;
  impl_->work_cv.notify_all();
  impl_->commit_cv.notify_all();  // stopping: whatever is pending is committed now
  for (auto& t : impl_->workers) t.join();
  if (impl_->dir_walker.joinable()) impl_->dir_walker.join();
  if (impl_->committer.joinable()) {
    {
      std::lock_guard lock(impl_->mu);
      impl_->commit_stop = true;
    }
    impl_->commit_cv.notify_all();
    impl_->committer.join();
  }
}

Result<std::shared_ptr<LazyProvider>> LazyProvider::create(Client client, LazyOptions options) {
  /// The registry client as a range source.
  class ClientRanges final : public RangeSource {
   public:
    ClientRanges(Client c, Reference repo) : client_(std::move(c)), repo_(std::move(repo)) {}
    Status fetch_range(const oci::ContentDigest& blob, std::uint64_t offset, std::uint64_t length,
                       BlobSink& sink) override {
      return client_.fetch_range(repo_, blob, offset, length, sink);
    }
    Status fetch_ranges(const oci::ContentDigest& blob,
                        std::span<const BlobRange> ranges) override {
      return client_.fetch_ranges(repo_, blob, ranges);
    }
    void cancel() override { client_.cancel(); }

   private:
    Client client_;
    Reference repo_;
  };
  Reference repo = options.source;
  return create(std::make_unique<ClientRanges>(std::move(client), std::move(repo)),
                std::move(options));
}

Result<std::shared_ptr<LazyProvider>> LazyProvider::create(std::unique_ptr<RangeSource> source,
                                                           LazyOptions options) {
  auto impl = std::make_unique<Impl>(std::move(source), std::move(options));
  std::string objects = impl->o.repo_path + "/" + std::string(repo::kObjectsDir);
  CFS_ASSIGN(impl->dirs, store::ObjectDirs::open({objects}));
  if (impl->o.fetchers == 0) impl->o.fetchers = 1;
  const auto& all = impl->o.index.objects;
  impl->by_offset.resize(impl->o.index.layers.size());
  for (const auto& loc : all)
    if (loc.layer < impl->by_offset.size()) impl->by_offset[loc.layer].push_back(&loc);
  impl->layer_pos.resize(all.size());
  for (auto& order : impl->by_offset) {
    std::sort(order.begin(), order.end(),
              [](const auto* a, const auto* b) { return a->offset < b->offset; });
    for (std::size_t i = 0; i < order.size(); ++i)
      impl->layer_pos[static_cast<std::size_t>(order[i] - all.data())] = i;
  }
  return std::shared_ptr<LazyProvider>(new LazyProvider(std::move(impl)));
}

Result<UniqueFd> LazyProvider::open_object(std::string_view rel,
                                           const std::optional<verity::Digest>& digest) const {
  auto fd = impl_->dirs.open_object(rel);
  if (fd && digest) impl_->trace("present", *digest);  // when a workload opened what
  if (fd || !fd.error().is_errno(ENOENT) || !digest) return fd;
  // Only the object the image names is fetched: a redirect that is not its digest's name is served
  // from the store or not at all.
  if (impl_->object_name(*digest) != rel || !impl_->o.index.find(*digest)) return fd;
  auto verified = impl_->ensure(*digest);
  if (impl_->o.trace) {
    // The process's CPU so far with each open's outcome: what the mount has spent, without a
    // profiler, at each moment a workload waited for it (session 13).
    const sys::CpuTime cpu = sys::process_cpu_time();
    impl_->trace(verified ? "served" : "failed", *digest,
                 fmt::format("cpu {:.1f}+{:.1f} ms", cpu.user_ms, cpu.sys_ms));
  }
  if (!verified) return fail(std::move(verified).error());
  if (*verified) return std::move(**verified);
  return impl_->dirs.open_object(rel);
}

void LazyProvider::when_quiet(std::function<void()> task) {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.committer.joinable() && !m.commit_stop) {
      m.quiet_task = std::move(task);
      m.quiet_task_since = std::chrono::steady_clock::now();
      m.commit_cv.notify_all();
      return;
    }
  }
  task();
}

vfs::Prebuilt LazyProvider::take_tree(const verity::Digest& digest) const {
  return impl_->take_tree(digest);
}

bool LazyProvider::wants_reads() const { return static_cast<bool>(impl_->o.trace); }

void LazyProvider::on_read(const verity::Digest& digest, std::uint64_t off, std::size_t len) const {
  impl_->trace("read", digest, fmt::format("{} {}", off, len));
}

void LazyProvider::start() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.started) return;
  m.started = true;
  std::set<verity::Digest> queued;
  for (const auto& d : m.o.prefetch)
    if (m.o.index.find(d) && queued.insert(d).second && !m.present(d))
      m.request(d, Priority::kPrefetch);
  if (m.o.fill) {
    for (const auto& loc : m.o.index.objects) {
      if (queued.count(loc.digest) || m.present(loc.digest)) continue;
      m.request(loc.digest, Priority::kFill);
      ++m.fill_left;
      m.fill_progress.bytes_total += loc.length;
    }
    m.fill_progress.objects_total = m.fill_left;
    if (m.o.progress) m.o.progress(m.fill_progress);
    if (m.fill_left == 0) {
      m.fill_done = true;
      m.log("fill complete: every object was present");
    }
  }
  // Which directory each object is in, for add_neighbours: a few ms for an image of thousands
  // of files, off the opens' path (batches formed before it ends keep the layer's order alone).
  // Each kind of thread named, for profiles (perf's comm): who uses the CPUs while a program waits.
  if (m.o.image && m.o.batch_bytes > 0)
    m.dir_walker = std::thread([&m] {
      name_thread("cfs-lazy-dirs");
      m.map_directories();
    });
  // Before the fetch threads: they defer their commits to it when it runs.
  if (m.o.sync_each_object && m.o.commit_quiet_s >= 0) {
    m.last_busy = std::chrono::steady_clock::now();
    m.committer = std::thread([&m] {
      name_thread("cfs-lazy-commit");
      m.commit_loop();
    });
  }
  for (unsigned i = 0; i < m.o.fetchers; ++i)
    m.workers.emplace_back([&m] {
      name_thread("cfs-lazy-fetch");
      m.worker(kQueues - 1);
    });
  // Opens and ELF hints have threads of their own: the fill never delays them, and a program's
  // libraries are fetched up to fetchers + kForegroundFetchers at a time.
  for (unsigned i = 0; i < kForegroundFetchers; ++i)
    m.workers.emplace_back([&m] {
      name_thread("cfs-lazy-open");
      m.worker(static_cast<int>(Priority::kHint));
    });
}

std::optional<std::uint64_t> batch_budget(double round_trip_s, double bytes_per_s) {
  if (!std::isfinite(round_trip_s) || !std::isfinite(bytes_per_s) || !(round_trip_s > 0) ||
      !(bytes_per_s > 0))
    return std::nullopt;
  const double bytes = round_trip_s * bytes_per_s;
  if (bytes >= static_cast<double>(kMaxBatchBytes)) return kMaxBatchBytes;
  return static_cast<std::uint64_t>(std::llround(bytes));
}

Result<std::vector<verity::Digest>> objects_of_paths(const erofs::Image& image,
                                                     const std::vector<std::string>& paths) {
  std::vector<verity::Digest> out;
  std::set<verity::Digest> seen;
  for (const auto& path : paths) {
    CFS_ASSIGN(auto nid, follow_path(image, path));
    if (!nid) return fail_errno("prefetch " + path + ": not in the image", ENOENT);
    CFS_ASSIGN(auto d, object_of(image, *nid));
    if (d && seen.insert(*d).second) out.push_back(*d);
  }
  return out;
}

}  // namespace cfs::registry
