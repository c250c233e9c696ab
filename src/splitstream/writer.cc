// SPDX-License-Identifier: Apache-2.0
#include "cfs/splitstream/writer.h"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cfs/splitstream/format.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "zstd_internal.h"

namespace cfs::splitstream {

namespace detail {

Result<CCtx> make_cctx() {
  CCtx c(ZSTD_createCCtx());
  if (!c) return fail(Errc::kInvalidInput, "zstd: cannot allocate a compression context");
  std::size_t r = ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, 3);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 0);
  if (ZSTD_isError(r)) return fail(zstd_error("splitstream", r));
  return c;
}

}  // namespace detail

namespace {

using detail::CCtx;

// A streamed object's piece (write_external_stream): a task for a worker every 1 MiB (the
// read ring's views are at most 4 MiB and 12 MiB of it may be unreleased, so several pieces
// are in flight).
constexpr std::size_t kStreamPiece = 1u << 20;

std::span<const std::byte> as_bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

/// The compressed stream: memory first, then an unlinked temporary file.
class Spool {
 public:
  Spool(std::size_t memory_limit, std::string dir) : limit_(memory_limit), dir_(std::move(dir)) {}

  Status append(std::span<const std::byte> data) {
    size_ += data.size();
    if (!file_) {
      if (mem_.size() + data.size() <= limit_) {
        mem_.append(reinterpret_cast<const char*>(data.data()), data.size());
        return {};
      }
      CFS_TRY(spill());
    }
    return sys::write_all(file_.get(), data);
  }

  std::uint64_t size() const noexcept { return size_; }

  Status replay(const ByteOutput& out) {
    if (!file_) return mem_.empty() ? Status{} : out(as_bytes_of(mem_));
    AlignedBuffer mem;
    const std::span<std::byte> buf = mem.get(1u << 20);
    for (std::uint64_t off = 0; off < size_;) {
      CFS_ASSIGN(std::size_t n, sys::pread_full(file_.get(), buf, off));
      if (n == 0) return fail(Errc::kInvalidInput, "splitstream spool file shrank");
      CFS_TRY(out(std::span(buf.data(), n)));
      off += n;
    }
    return {};
  }

 private:
  Status spill() {
    std::string dir = dir_;
    if (dir.empty()) {
      const char* t = std::getenv("TMPDIR");
      dir = t && *t ? t : "/var/tmp";
    }
    auto fd = sys::open(dir, O_TMPFILE | O_RDWR, 0600);
    if (!fd) return fail(std::move(fd).error().with_context("splitstream spool"));
    file_ = std::move(*fd);
    CFS_TRY(sys::write_all(file_.get(), as_bytes_of(mem_)));
    std::string().swap(mem_);
    return {};
  }

  std::size_t limit_;
  std::string dir_;
  std::string mem_;
  UniqueFd file_;
  std::uint64_t size_ = 0;
};

/// A zstd frame written incrementally: e_continue for data, e_end with no input at finish.
class Compressor {
 public:
  explicit Compressor(CCtx c) : c_(std::move(c)), out_(ZSTD_CStreamOutSize()) {}

  Status write(std::span<const std::byte> data, const ByteOutput& sink) {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer o{out_.data(), out_.size(), 0};
      std::size_t r = ZSTD_compressStream2(c_.get(), &o, &in, ZSTD_e_continue);
      if (ZSTD_isError(r)) return fail(detail::zstd_error("splitstream", r));
      if (o.pos > 0) CFS_TRY(sink(std::span(out_.data(), o.pos)));
    }
    return {};
  }

  Status end(const ByteOutput& sink) {
    ZSTD_inBuffer in{nullptr, 0, 0};
    for (;;) {
      ZSTD_outBuffer o{out_.data(), out_.size(), 0};
      std::size_t r = ZSTD_compressStream2(c_.get(), &o, &in, ZSTD_e_end);
      if (ZSTD_isError(r)) return fail(detail::zstd_error("splitstream", r));
      if (o.pos > 0) CFS_TRY(sink(std::span(out_.data(), o.pos)));
      if (r == 0) return {};
    }
  }

 private:
  CCtx c_;
  std::vector<std::byte> out_;
};

void put_le64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

/// Digests in order of first appearance, each once: the raw bytes back to back (the on-disk
/// table) plus an open-addressing index over them (digests are uniformly distributed, so
/// their first 8 bytes are the hash). About 40 bytes per SHA-256 object.
class UniqueDigests {
 public:
  std::size_t ensure(const verity::Digest& d) {
    if (2 * (count_ + 1) > slots_.size()) grow();
    for (std::size_t i = hash(d.bytes.data()) & mask_;; i = (i + 1) & mask_) {
      std::uint32_t slot = slots_[i];
      if (slot == kEmpty) {
        slots_[i] = static_cast<std::uint32_t>(count_);
        bytes_.append(reinterpret_cast<const char*>(d.bytes.data()), d.size);
        size_ = d.size;
        return count_++;
      }
      if (std::memcmp(bytes_.data() + std::size_t{slot} * d.size, d.bytes.data(), d.size) == 0)
        return slot;
    }
  }
  const std::string& bytes() const noexcept { return bytes_; }
  std::size_t size() const noexcept { return count_; }

 private:
  static constexpr std::uint32_t kEmpty = UINT32_MAX;
  static std::size_t hash(const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<std::size_t>(v);
  }
  void grow() {
    std::vector<std::uint32_t> bigger(std::max<std::size_t>(64, slots_.size() * 2), kEmpty);
    mask_ = bigger.size() - 1;
    for (std::uint32_t idx = 0; idx < count_; ++idx) {
      std::size_t i =
          hash(reinterpret_cast<const std::uint8_t*>(bytes_.data()) + idx * size_) & mask_;
      while (bigger[i] != kEmpty) i = (i + 1) & mask_;
      bigger[i] = idx;
    }
    slots_ = std::move(bigger);
  }

  std::string bytes_;
  std::vector<std::uint32_t> slots_;
  std::size_t mask_ = 0;
  std::size_t count_ = 0;
  std::size_t size_ = 0;
};

/// A piece of a streamed object (write_external_stream): the caller's memory until done.
struct StreamPiece {
  std::span<const std::byte> data;
  bool written = false;           // under Impl::mu
  bool hashed = false;            // under Impl::mu
  std::atomic<bool> done{false};  // both: the view is retired (set under Impl::mu, release)
};

/// A streamed object's two chains: one worker at a time writes its pieces in order (the
/// kernel serialises buffered writes to one file anyway) while one at a time hashes them in
/// order, so the copy into the page cache and the digest of one object run on two cores and
/// neither runs on the producer's thread. Under Impl::mu but `hasher` (the hashing chain's).
struct Stream {
  explicit Stream(const verity::Params& p) : hasher(p) {}
  verity::Hasher hasher;
  std::deque<StreamPiece> pieces;  // not yet retired; pieces.front() is piece number `base`
  std::uint64_t base = 0;
  std::uint64_t next_write = 0;  // piece numbers
  std::uint64_t next_hash = 0;
  bool writing = false;  // a worker runs the chain (or it is queued)
  bool hashing = false;
  bool closed = false;  // the last piece is queued
  std::optional<Error> error;
};

/// One object on its way: content in the ring (or streamed to `writer`), digest when done.
struct Job {
  std::uint64_t size = 0;
  std::byte* data = nullptr;
  std::unique_ptr<ObjectWriter> writer;
  std::unique_ptr<Stream> stream;  // written in pieces by the workers (with `writer`)
  verity::Digest digest;
  std::optional<Error> error;
  std::atomic<bool> done{false};  // set under Impl::mu (release), polled without it (acquire)
};

/// What a worker takes: a whole job, or one chain of a streamed object.
enum class Chain : std::uint8_t { kWhole, kWrite, kHash };
struct Task {
  Job* job;
  Chain chain = Chain::kWhole;
};

/// A view in use (write order): done once no worker reads it.
struct Ticket {
  const std::atomic<bool>* done;
  Stream* stream = nullptr;  // a piece of it (its front one once retired)
};

/// A piece of the stream waiting for an earlier object's digest.
struct Segment {
  std::string inline_data;     // inline bytes, or
  std::unique_ptr<Job> job;    // an object being digested, or
  verity::Digest ref;          // an object already stored (ref.size != 0)
  std::uint64_t size = 0;      // external size
  std::uint64_t ring_end = 0;  // ring offset to release up to when retired (objects in the ring)
  bool in_ring = false;
};

}  // namespace

struct Writer::Impl {
  using Next = Writer::Next;

  Impl(ObjectSink& s, const WriterOptions& o, CCtx c)
      : sink(s),
        opt(o),
        params{s.algorithm(), 4096, {}},
        spool(o.spool_memory, o.spool_dir),
        zstd(std::move(c)) {}

  ObjectSink& sink;
  WriterOptions opt;
  verity::Params params;
  Spool spool;
  Compressor zstd;
  std::optional<Error> failed;  // sticky: every later call returns it

  // Output side (producer thread only).
  std::string coalesce;  // inline bytes of the current chunk
  UniqueDigests object_refs;
  UniqueDigests stream_refs;
  std::map<std::string, std::size_t> named_refs;
  WriterStats stats;

  // Pipeline.
  std::deque<Segment> pending;
  std::size_t pending_inline = 0;
  std::size_t pending_jobs = 0;
  std::deque<Ticket> tickets;  // the views not yet retired, in write order
  std::uint64_t views_retired = 0;
  std::unique_ptr<std::byte[]> ring;
  std::size_t ring_cap = 0;
  std::size_t ring_head = 0;  // oldest byte in use
  std::size_t ring_tail = 0;  // next free byte
  std::size_t ring_used = 0;  // bytes in use, including skipped ends
  std::vector<std::byte> stage;

  std::mutex mu;
  std::condition_variable work_cv;
  std::condition_variable done_cv;
  std::deque<Task> work;
  bool stop = false;
  bool cancel = false;
  unsigned idle = 0;              // workers waiting for work
  bool producer_waiting = false;  // the producer waits for a job
  std::vector<std::thread> workers;

  ~Impl() {
    {
      std::lock_guard lk(mu);
      stop = true;
      cancel = true;
    }
    work_cv.notify_all();
    for (auto& t : workers) t.join();
  }

  ByteOutput spool_out() {
    return [this](std::span<const std::byte> b) { return spool.append(b); };
  }

  tl::unexpected<Error> set_failed(Error e) {
    if (!failed) failed = e;
    return fail(std::move(e));
  }

  // --- output (stream order) ---

  Status flush_inline() {
    if (coalesce.empty()) return {};
    std::string hdr;
    put_le64(hdr, static_cast<std::uint64_t>(-static_cast<std::int64_t>(coalesce.size())));
    CFS_TRY(zstd.write(as_bytes_of(hdr), spool_out()));
    CFS_TRY(zstd.write(as_bytes_of(coalesce), spool_out()));
    coalesce.clear();
    return {};
  }

  Status emit_inline(std::span<const std::byte> data) {
    coalesce.append(reinterpret_cast<const char*>(data.data()), data.size());
    // Chunks end only at the end of a write, so a caller writing whole tar blocks never has
    // one split across chunks (composefs-rs' reader needs that).
    if (coalesce.size() >= kMaxInlineChunk) return flush_inline();
    return {};
  }

  Status emit_ref(const verity::Digest& d, std::uint64_t size) {
    CFS_TRY(flush_inline());
    std::string hdr;
    put_le64(hdr, object_refs.ensure(d));
    CFS_TRY(zstd.write(as_bytes_of(hdr), spool_out()));
    stats.external_bytes += size;
    ++stats.external_chunks;
    return {};
  }

  // --- pipeline ---

  void start_workers() {
    if (!workers.empty()) return;
    unsigned n = opt.threads == 0 ? sys::available_cpus() : opt.threads;
    workers.reserve(n);
    for (unsigned i = 0; i < n; ++i) workers.emplace_back([this] { worker(); });
  }

  bool is_small(const Job& j) const {
    return !j.writer && j.size <= verity::small_many_max(params);
  }

  void worker() {
    std::vector<Job*> batch;
    std::vector<std::span<const std::byte>> inputs;
    std::vector<verity::Digest> out;
    for (;;) {
      bool skip = false;
      Task chain{nullptr};
      {
        std::unique_lock lk(mu);
        ++idle;
        work_cv.wait(lk, [&] { return stop || !work.empty(); });
        --idle;
        if (work.empty()) return;
        batch.clear();
        const Task t = work.front();
        work.pop_front();
        if (t.chain != Chain::kWhole) {
          chain = t;
        } else {
          batch.push_back(t.job);
          if (is_small(*batch[0]))
            while (batch.size() < verity::kSmallBatchMax && !work.empty() &&
                   work.front().chain == Chain::kWhole && is_small(*work.front().job)) {
              batch.push_back(work.front().job);
              work.pop_front();
            }
        }
        skip = cancel;
      }
      if (chain.job) {
        run_chain(*chain.job, chain.chain);
        continue;
      }
      if (!skip) process(batch, inputs, out);
      bool wake;
      {
        std::lock_guard lk(mu);
        for (Job* j : batch) j->done.store(true, std::memory_order_release);
        wake = producer_waiting;
      }
      if (wake) done_cv.notify_one();
    }
  }

  /// Runs one chain of a streamed object until no queued piece is left for it; the worker that
  /// finishes the last piece commits the object.
  void run_chain(Job& j, Chain c) {
    Stream& s = *j.stream;
    for (;;) {
      StreamPiece* p;
      bool skip;
      {
        std::lock_guard lk(mu);
        std::uint64_t& next = c == Chain::kWrite ? s.next_write : s.next_hash;
        if (next == s.base + s.pieces.size()) {
          (c == Chain::kWrite ? s.writing : s.hashing) = false;
          return;
        }
        p = &s.pieces[static_cast<std::size_t>(next - s.base)];
        ++next;
        skip = cancel || s.error.has_value();
      }
      std::optional<Error> err;
      if (!skip) {
        if (c == Chain::kWrite) {
          if (auto st = j.writer->write(p->data); !st) err = std::move(st).error();
        } else {
          s.hasher.update(p->data);
        }
      }
      bool done = false, last = false, wake = false;
      {
        std::lock_guard lk(mu);
        if (err && !s.error) s.error = std::move(err);
        last = s.closed && p == &s.pieces.back();
        (c == Chain::kWrite ? p->written : p->hashed) = true;
        if (p->written && p->hashed) {
          done = true;
          p->done.store(true, std::memory_order_release);  // the producer may drop it now
          wake = producer_waiting;
        }
      }
      if (wake) done_cv.notify_one();
      // After its last piece a chain touches nothing of the object: the other chain may be
      // committing it, and the producer frees it once committed.
      if (!last) continue;
      if (done) commit_stream(j);
      return;
    }
  }

  /// A streamed object whose every piece is written and hashed: committed with that digest.
  void commit_stream(Job& j) {
    std::optional<Error> err;
    bool skip;
    {
      std::lock_guard lk(mu);
      err = j.stream->error;
      skip = cancel;
    }
    if (err) {
      j.error = std::move(err);
    } else if (!skip) {
      auto d = j.writer->commit_digested(j.stream->hasher.finish());
      if (d)
        j.digest = *d;
      else
        j.error = std::move(d).error();
    }
    j.writer.reset();
    bool wake;
    {
      std::lock_guard lk(mu);
      j.done.store(true, std::memory_order_release);
      wake = producer_waiting;
    }
    if (wake) done_cv.notify_one();
  }

  /// Counts the views no worker reads any more, from the oldest (producer thread).
  void pop_done_tickets() {
    while (!tickets.empty() && tickets.front().done->load(std::memory_order_acquire)) {
      if (Stream* st = tickets.front().stream) {
        std::lock_guard lk(mu);
        st->pieces.pop_front();
        ++st->base;
      }
      tickets.pop_front();
      ++views_retired;
    }
  }

  void process(const std::vector<Job*>& batch, std::vector<std::span<const std::byte>>& inputs,
               std::vector<verity::Digest>& out) {
    if (batch[0]->writer) {
      auto d = batch[0]->writer->commit();
      batch[0]->writer.reset();
      if (d)
        batch[0]->digest = *d;
      else
        batch[0]->error = std::move(d).error();
      return;
    }
    if (batch.size() > 1 || is_small(*batch[0])) {
      inputs.clear();
      for (Job* j : batch) inputs.emplace_back(j->data, j->size);
      out.resize(batch.size());
      verity::digest_small_many(inputs, params, out);
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i]->digest = out[i];
    } else {
      batch[0]->digest = verity::digest_bytes(std::span(batch[0]->data, batch[0]->size), params);
    }
    for (Job* j : batch)
      if (auto st = sink.put(j->digest, std::span(j->data, j->size)); !st)
        j->error = std::move(st).error();
  }

  /// Emits finished segments from the front; with `block`, waits for the front one first.
  Status retire(bool block) {
    while (!pending.empty()) {
      Segment& s = pending.front();
      if (s.job) {
        if (!s.job->done.load(std::memory_order_acquire)) {
          if (!block) return {};
          std::unique_lock lk(mu);
          producer_waiting = true;
          done_cv.wait(lk, [&] { return s.job->done.load(std::memory_order_acquire); });
          producer_waiting = false;
        }
        // Its views (and every earlier one) are done: no ticket may point into it once gone.
        pop_done_tickets();
        if (s.job->error) return set_failed(*s.job->error);
        CFS_TRY(emit_ref(s.job->digest, s.size));
        --pending_jobs;
        if (s.in_ring) release_ring(s.ring_end);
      } else if (s.ref.size != 0) {
        CFS_TRY(emit_ref(s.ref, s.size));
      } else {
        pending_inline -= s.inline_data.size();
        CFS_TRY(emit_inline(as_bytes_of(s.inline_data)));
      }
      pending.pop_front();
      block = false;
    }
    return {};
  }

  Status drain() {
    while (!pending.empty()) CFS_TRY(retire(true));
    return {};
  }

  void release_ring(std::size_t end) {
    std::size_t freed = end >= ring_head ? end - ring_head : ring_cap - ring_head + end;
    ring_used -= freed;
    ring_head = end;
    if (ring_used == 0) ring_head = ring_tail = 0;
  }

  /// A contiguous ring slot of n bytes (n <= ring_cap / 2), waiting for old objects if needed.
  /// Returns the slot and the ring offset just past it (what retiring the object releases).
  Result<std::pair<std::byte*, std::size_t>> ring_alloc(std::size_t n) {
    if (!ring) {
      ring_cap = std::max<std::size_t>(opt.buffer_bytes, 2 * opt.stream_threshold);
      ring.reset(new std::byte[ring_cap]);
    }
    for (;;) {
      std::size_t start = SIZE_MAX, skipped = 0;
      if (ring_used == 0) {
        ring_head = ring_tail = start = 0;
      } else if (ring_tail > ring_head) {  // free: [tail, cap) and [0, head)
        if (ring_cap - ring_tail >= n) {
          start = ring_tail;
        } else if (ring_head >= n) {
          skipped = ring_cap - ring_tail;
          start = 0;
        }
      } else if (ring_head - ring_tail >= n) {  // wrapped (or full): free is [tail, head)
        start = ring_tail;
      }
      if (start != SIZE_MAX) {
        ring_used += skipped + n;
        ring_tail = start + n == ring_cap ? 0 : start + n;
        return std::make_pair(ring.get() + start, ring_tail);
      }
      if (pending.empty()) return fail(Errc::kInvalidInput, "splitstream: ring buffer too small");
      CFS_TRY(retire(true));
    }
  }

  Status queue_job(Segment seg) {
    Job* j = seg.job.get();
    pending.push_back(std::move(seg));
    ++pending_jobs;
    start_workers();
    bool wake;
    {
      std::lock_guard lk(mu);
      work.push_back({j});
      wake = idle > 0;
    }
    if (wake) work_cv.notify_one();
    CFS_TRY(retire(false));
    while (pending_jobs > opt.max_jobs) CFS_TRY(retire(true));
    return {};
  }

  Status external(std::uint64_t size, const Fill& fill) {
    stats.stream_size += size;
    bool sync = opt.threads == 1;
    if (size > opt.stream_threshold) {
      CFS_ASSIGN(auto w, sink.begin(size));
      if (stage.empty()) stage.resize(1u << 20);
      for (std::uint64_t left = size; left > 0;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, stage.size()));
        CFS_TRY(fill(std::span(stage.data(), n)));
        CFS_TRY(w->write(std::span(stage.data(), n)));
        left -= n;
      }
      return queue_writer(std::move(w), size);
    }
    if (sync) {
      if (stage.size() < size) stage.resize(static_cast<std::size_t>(size));
      auto buf = std::span(stage.data(), static_cast<std::size_t>(size));
      CFS_TRY(fill(buf));
      verity::Digest d = verity::digest_bytes(buf, params);
      CFS_TRY(sink.put(d, buf));
      return emit_ref(d, size);
    }
    Segment seg;
    seg.job = std::make_unique<Job>();
    seg.job->size = size;
    seg.size = size;
    if (size > 0) {
      CFS_ASSIGN(auto slot, ring_alloc(static_cast<std::size_t>(size)));
      CFS_TRY(fill(std::span(slot.first, static_cast<std::size_t>(size))));
      seg.job->data = slot.first;
      seg.in_ring = true;
      seg.ring_end = slot.second;
    }
    return queue_job(std::move(seg));
  }

  Status external_stream(std::uint64_t size, const Next& next) {
    stats.stream_size += size;
    CFS_ASSIGN(auto w, sink.begin(size));
    auto next_piece = [&](std::uint64_t left) -> Result<std::span<const std::byte>> {
      CFS_ASSIGN(auto piece,
                 next(static_cast<std::size_t>(std::min<std::uint64_t>(left, kStreamPiece))));
      if (piece.empty() || piece.size() > left)
        return fail(Errc::kInvalidInput, "splitstream: a streamed object's pieces do not add up");
      return piece;
    };
    if (opt.threads == 1) {  // written and hashed here, each piece retired at once
      verity::Hasher h(params);
      for (std::uint64_t left = size; left > 0;) {
        CFS_ASSIGN(auto piece, next_piece(left));
        h.update(piece);
        Status written = w->write(piece);
        ++views_retired;  // not read again, whether written or not
        CFS_TRY(written);
        left -= piece.size();
      }
      CFS_TRY(drain());
      CFS_ASSIGN(auto d, w->commit_digested(h.finish()));
      return emit_ref(d, size);
    }
    Segment seg;
    seg.job = std::make_unique<Job>();
    Job* j = seg.job.get();
    j->size = size;
    j->writer = std::move(w);
    j->stream = std::make_unique<Stream>(params);
    Stream& st = *j->stream;
    seg.size = size;
    // Queued before its pieces so that it keeps its place in the stream; nothing here waits
    // for it (it finishes only after its last piece).
    pending.push_back(std::move(seg));
    ++pending_jobs;
    start_workers();
    std::optional<Error> failed_early;
    for (std::uint64_t left = size; left > 0;) {
      CFS_ASSIGN(auto piece, next_piece(left));
      left -= piece.size();
      unsigned queued = 0, waiting;
      {
        std::lock_guard lk(mu);
        StreamPiece& sp = st.pieces.emplace_back();
        sp.data = piece;
        if (left == 0) st.closed = true;
        if (!st.writing) {
          st.writing = true;
          work.push_back({j, Chain::kWrite});
          ++queued;
        }
        if (!st.hashing) {
          st.hashing = true;
          work.push_back({j, Chain::kHash});
          ++queued;
        }
        tickets.push_back({&sp.done, &st});
        waiting = idle;
        // A write of this object failed (a full disk): its later pieces would only be skipped,
        // so the producer stops asking for them (a layer bomb's one file may be terabytes
        // still to decompress). The pieces queued are retired as skipped (wait_views()).
        if (st.error) failed_early = *st.error;
      }
      for (unsigned i = 0; i < std::min(queued, waiting); ++i) work_cv.notify_one();
      if (failed_early) return fail(std::move(*failed_early));
    }
    CFS_TRY(retire(false));
    while (pending_jobs > opt.max_jobs) CFS_TRY(retire(true));
    return {};
  }

  /// A streamed object's commit (digest, link) on a worker, or here with no workers.
  Status queue_writer(std::unique_ptr<ObjectWriter> w, std::uint64_t size) {
    if (opt.threads == 1) {
      CFS_TRY(drain());
      CFS_ASSIGN(auto d, w->commit());
      return emit_ref(d, size);
    }
    Segment seg;
    seg.job = std::make_unique<Job>();
    seg.job->size = size;
    seg.job->writer = std::move(w);
    seg.size = size;
    return queue_job(std::move(seg));
  }

  Status external_view(std::span<const std::byte> content) {
    stats.stream_size += content.size();
    if (opt.threads == 1) {  // digested and stored before this returns: retired at once
      verity::Digest d = verity::digest_bytes(content, params);
      CFS_TRY(sink.put(d, content));
      ++views_retired;
      return emit_ref(d, content.size());
    }
    Segment seg;
    seg.job = std::make_unique<Job>();
    seg.job->size = content.size();
    // Workers only read it (digest, ObjectSink::put).
    seg.job->data = const_cast<std::byte*>(content.data());
    seg.size = content.size();
    tickets.push_back({&seg.job->done});
    return queue_job(std::move(seg));
  }

  /// Waits for the oldest view in use only (not for its object's commit or digest emission:
  /// a streamed object's piece is retired while the producer is still adding pieces).
  Status retire_view() {
    if (tickets.empty()) return {};
    const std::atomic<bool>* done = tickets.front().done;
    if (!done->load(std::memory_order_acquire)) {
      std::unique_lock lk(mu);
      producer_waiting = true;
      done_cv.wait(lk, [&] { return done->load(std::memory_order_acquire); });
      producer_waiting = false;
    }
    pop_done_tickets();
    return retire(false);  // an object's error surfaces here once it is at the front
  }

  void wait_views() {
    std::unique_lock lk(mu);
    for (const Ticket& t : tickets) {
      producer_waiting = true;
      done_cv.wait(lk, [&] { return t.done->load(std::memory_order_acquire); });
    }
    producer_waiting = false;
  }

  Status inline_data(std::span<const std::byte> data) {
    stats.stream_size += data.size();
    stats.inline_bytes += data.size();
    if (pending.empty()) return emit_inline(data);
    if (pending.back().job || pending.back().ref.size != 0) pending.emplace_back();
    pending.back().inline_data.append(reinterpret_cast<const char*>(data.data()), data.size());
    pending_inline += data.size();
    CFS_TRY(retire(false));
    while (pending_inline > kMaxInlineChunk && !pending.empty()) CFS_TRY(retire(true));
    return {};
  }

  Result<std::string> named_refs_section() {
    std::string records;
    for (const auto& [name, idx] : named_refs) {
      records += std::to_string(idx);
      records += ':';
      records += name;
      records += '\0';
    }
    CFS_ASSIGN(auto c, detail::make_cctx());
    Compressor z(std::move(c));
    std::string out;
    ByteOutput to_out = [&](std::span<const std::byte> b) {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      return Status{};
    };
    // composefs-rs writes each record (none for an empty map), then finishes the frame.
    if (!records.empty()) CFS_TRY(z.write(as_bytes_of(records), to_out));
    CFS_TRY(z.end(to_out));
    return out;
  }

  /// Waits for every object and lays the file out: returns header, info, refs and named refs;
  /// the compressed stream follows from the spool.
  Result<std::string> finalize() {
    CFS_TRY(drain());
    CFS_TRY(flush_inline());
    CFS_TRY(zstd.end(spool_out()));
    CFS_ASSIGN(std::string named, named_refs_section());
    const std::string& srefs = stream_refs.bytes();
    const std::string& orefs = object_refs.bytes();

    std::uint64_t off = sizeof(Header) + sizeof(Info);
    Info info;
    auto range = [&](FileRange& r, std::uint64_t len) {
      r.start = off;
      off += len;
      r.end = off;
    };
    range(info.stream_refs, srefs.size());
    range(info.object_refs, orefs.size());
    range(info.named_refs, named.size());
    range(info.stream, spool.size());
    info.content_type = opt.content_type;
    info.stream_size = stats.stream_size;

    Header h;
    h.magic = kMagic;
    h.version = kVersion;
    h.flags = 0;
    h.algorithm = static_cast<std::uint8_t>(params.alg);
    h.lg_blocksize = kLgBlockSize;
    h.info.start = sizeof(Header);
    h.info.end = sizeof(Header) + sizeof(Info);

    std::string head(sizeof(Header) + sizeof(Info), '\0');
    std::memcpy(head.data(), &h, sizeof h);
    std::memcpy(head.data() + sizeof h, &info, sizeof info);
    head += srefs;
    head += orefs;
    head += named;
    stats.objects = object_refs.size();
    stats.file_size = off;
    return head;
  }

  Status emit(const std::string& head, const ByteOutput& out) {
    CFS_TRY(out(as_bytes_of(head)));
    return spool.replay(out);
  }
};

Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Writer::~Writer() = default;

Result<std::unique_ptr<Writer>> Writer::create(ObjectSink& sink, const WriterOptions& options) {
  CFS_ASSIGN(auto c, detail::make_cctx());
  if (options.buffer_bytes == 0 || options.max_jobs == 0)
    return fail(Errc::kInvalidInput, "splitstream writer: buffer_bytes and max_jobs must be > 0");
  return std::unique_ptr<Writer>(new Writer(std::make_unique<Impl>(sink, options, std::move(c))));
}

Status Writer::write_inline(std::span<const std::byte> data) {
  if (impl_->failed) return fail(*impl_->failed);
  if (data.empty()) return {};
  if (auto st = impl_->inline_data(data); !st) return impl_->set_failed(std::move(st).error());
  return {};
}

Status Writer::write_external(std::uint64_t size, const Fill& fill) {
  if (impl_->failed) return fail(*impl_->failed);
  if (auto st = impl_->external(size, fill); !st) return impl_->set_failed(std::move(st).error());
  return {};
}

Status Writer::write_external_stream(std::uint64_t size, const Next& next) {
  if (impl_->failed) return fail(*impl_->failed);
  if (auto st = impl_->external_stream(size, next); !st)
    return impl_->set_failed(std::move(st).error());
  return {};
}

Status Writer::write_external(std::span<const std::byte> content) {
  std::size_t pos = 0;
  return write_external(content.size(), [&](std::span<std::byte> buf) {
    std::memcpy(buf.data(), content.data() + pos, buf.size());
    pos += buf.size();
    return Status{};
  });
}

Status Writer::write_external_view(std::span<const std::byte> content) {
  if (impl_->failed) return fail(*impl_->failed);
  if (auto st = impl_->external_view(content); !st) return impl_->set_failed(std::move(st).error());
  return {};
}

std::uint64_t Writer::views_retired() noexcept {
  impl_->pop_done_tickets();
  return impl_->views_retired;
}

Status Writer::retire_view() {
  if (impl_->failed) return fail(*impl_->failed);
  if (auto st = impl_->retire_view(); !st) return impl_->set_failed(std::move(st).error());
  return {};
}

void Writer::wait_views() { impl_->wait_views(); }

Status Writer::write_reference(const verity::Digest& digest, std::uint64_t size) {
  if (impl_->failed) return fail(*impl_->failed);
  if (digest.alg != impl_->params.alg || digest.size != verity::digest_size(digest.alg))
    return fail(Errc::kInvalidInput, "splitstream: reference digest of another algorithm");
  impl_->stats.stream_size += size;
  if (impl_->pending.empty()) return impl_->emit_ref(digest, size);
  Segment seg;
  seg.ref = digest;
  seg.size = size;
  impl_->pending.push_back(std::move(seg));
  return {};
}

Status Writer::add_named_ref(std::string_view name, const verity::Digest& stream) {
  if (name.find('\0') != std::string_view::npos)
    return fail(Errc::kInvalidInput, "splitstream: named reference with a NUL byte");
  if (stream.alg != impl_->params.alg || stream.size != verity::digest_size(stream.alg))
    return fail(Errc::kInvalidInput,
                "splitstream: named reference '" + std::string(name) + "' of another algorithm");
  impl_->named_refs[std::string(name)] = impl_->stream_refs.ensure(stream);
  return {};
}

Result<WriterStats> Writer::finish(const ByteOutput& out) {
  if (impl_->failed) return fail(*impl_->failed);
  auto head = impl_->finalize();
  if (!head) return impl_->set_failed(std::move(head).error());
  if (auto st = impl_->emit(*head, out); !st) return impl_->set_failed(std::move(st).error());
  return impl_->stats;
}

Result<std::pair<verity::Digest, WriterStats>> Writer::finish_object() {
  if (impl_->failed) return fail(*impl_->failed);
  auto head = impl_->finalize();
  if (!head) return impl_->set_failed(std::move(head).error());
  CFS_ASSIGN(auto w, impl_->sink.begin(impl_->stats.file_size));
  CFS_TRY(impl_->emit(*head, [&](std::span<const std::byte> b) { return w->write(b); }));
  CFS_ASSIGN(verity::Digest d, w->commit());
  return std::make_pair(d, impl_->stats);
}

}  // namespace cfs::splitstream
