// SPDX-License-Identifier: Apache-2.0
// The lazy object provider (see cfs/registry/lazy.h).
#include "cfs/registry/lazy.h"

#include <fcntl.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "cfs/repo/repository.h"
#include "cfs/store/object_dirs.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/sys.h"

namespace cfs::registry {
namespace {

Error eio(std::string what) { return Error::from_errno(std::move(what), EIO); }

/// Writes an object's bytes into the new object file while hashing them; decompresses one zstd
/// frame first when the range is compressed. Refuses more bytes than the object has.
class ObjectSink final : public BlobSink {
 public:
  ObjectSink(int fd, const ocirepo::ObjectLocation& r, const verity::Params& p, std::string what)
      : fd_(fd),
        range_(r),
        zstd_(r.compression == ocirepo::ObjectCompression::kZstd),
        hasher_(p),
        what_(std::move(what)) {
    if (zstd_) dctx_ = ZSTD_createDCtx();
  }
  ~ObjectSink() override { ZSTD_freeDCtx(dctx_); }
  ObjectSink(const ObjectSink&) = delete;
  ObjectSink& operator=(const ObjectSink&) = delete;

  Status write(std::span<const std::byte> data) override {
    received_ += data.size();
    if (!zstd_) return out(data);
    if (!dctx_) return fail_errno(what_ + ": zstd context", ENOMEM);
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      if (frame_done_) return fail(eio(what_ + ": bytes after the end of its zstd frame"));
      std::byte buf[64 << 10];
      ZSTD_outBuffer o{buf, sizeof buf, 0};
      std::size_t rc = ZSTD_decompressStream(dctx_, &o, &in);
      if (ZSTD_isError(rc)) return fail(eio(what_ + ": zstd frame: " + ZSTD_getErrorName(rc)));
      CFS_TRY(out(std::span<const std::byte>(buf, o.pos)));
      if (rc == 0) frame_done_ = true;
    }
    return {};
  }

  /// Checks the object is complete and returns its fs-verity digest.
  Result<verity::Digest> finish() {
    if (zstd_ && !frame_done_) return fail(eio(what_ + ": the zstd frame is truncated"));
    if (written_ != range_.size)
      return fail(eio(what_ + ": " + std::to_string(written_) + " bytes instead of " +
                      std::to_string(range_.size)));
    return hasher_.finish();
  }
  std::uint64_t received() const noexcept { return received_; }

 private:
  Status out(std::span<const std::byte> data) {
    if (data.empty()) return {};
    if (data.size() > range_.size - written_)
      return fail(
          eio(what_ + ": more than the object's " + std::to_string(range_.size) + " bytes"));
    CFS_TRY(sys::write_all(fd_, data));
    hasher_.update(data);
    written_ += data.size();
    return {};
  }

  int fd_;
  const ocirepo::ObjectLocation& range_;
  bool zstd_;
  verity::Hasher hasher_;
  std::string what_;
  ZSTD_DCtx* dctx_ = nullptr;
  bool frame_done_ = false;
  std::uint64_t written_ = 0;
  std::uint64_t received_ = 0;
};

enum class Priority { kOpen, kPrefetch, kFill };

}  // namespace

struct LazyProvider::Impl {
  /// One object being fetched: everybody who needs it waits on the same flight.
  struct Flight {
    bool claimed = false;
    bool done = false;
    Status status;
  };

  LazyOptions o;
  mutable Client client;
  store::ObjectDirs dirs;

  mutable std::mutex mu;
  mutable std::condition_variable work_cv;  // workers: a queue got an entry, or stop
  mutable std::condition_variable done_cv;  // waiters: a flight finished
  mutable std::map<verity::Digest, std::shared_ptr<Flight>> flights;
  mutable std::deque<verity::Digest> queues[3];  // by Priority
  std::vector<std::thread> workers;
  bool started = false;
  bool stopping = false;
  std::size_t fill_left = 0;  // fill entries not yet finished

  mutable std::atomic<std::uint64_t> fetched{0}, fetched_bytes{0}, failed{0};
  std::atomic<bool> fill_done{false};

  Impl(Client c, LazyOptions opts) : o(std::move(opts)), client(std::move(c)) {}

  std::string object_name(const verity::Digest& d) const { return tree::object_path(d); }

  bool present(const verity::Digest& d) const {
    return dirs.open_object(object_name(d)).has_value();
  }

  void log(const std::string& line) const {
    if (o.log) o.log(line);
  }

  /// Fetches, verifies and commits one object.
  Status fetch(const verity::Digest& d) const {
    if (present(d)) return {};  // another fetcher (or a pull) stored it meanwhile
    const ocirepo::ObjectLocation* loc = o.index.find(d);
    if (!loc || loc->layer >= o.index.layers.size())
      return fail_errno("object " + object_name(d) + ": not in the lazy index", ENOENT);
    const ocirepo::ObjectLocation& r = *loc;
    const oci::ContentDigest& blob = o.index.layers[r.layer].digest;
    const std::string what = "object " + object_name(d) + " (" + o.source.str() + " blob " +
                             blob.str() + " bytes " + std::to_string(r.offset) + "+" +
                             std::to_string(r.length) + ")";
    repo::OpenOptions w;
    w.write = true;
    CFS_ASSIGN(repo::Repository repo, repo::Repository::open(o.repo_path, w));
    CFS_ASSIGN(repo::NewObject obj, repo.create_object());
    verity::Params p;
    p.alg = d.alg;
    ObjectSink sink(obj.fd(), r, p, what);
    auto st = client.fetch_range(o.source, blob, r.offset, r.length, sink);
    fetched_bytes += sink.received();
    if (!st) return fail(eio(what + ": " + st.error().message()));
    CFS_ASSIGN(verity::Digest got, sink.finish());
    if (!(got == d))
      return fail(eio(what + ": the bytes have fs-verity digest " + got.hex() +
                      ", not the image's; nothing stored"));
    // Durable before it has a name: the image already names it, so no later sync() would order it,
    // and a power cut must not leave a named object with lost data.
    CFS_TRY(sys::fsync(obj.fd(), what));
    CFS_TRY(repo.commit_object(std::move(obj), got).map([](auto&&) {}));
    ++fetched;
    return {};
  }

  /// The flight for `d`, created and queued at `prio` if there is none. Called with mu held.
  std::shared_ptr<Flight> request(const verity::Digest& d, Priority prio) const {
    auto& f = flights[d];
    if (!f) f = std::make_shared<Flight>();
    // A waiting open overtakes the fill: queue it again, ahead (a claimed one is skipped).
    if (!f->claimed) queues[static_cast<int>(prio)].push_back(d);
    work_cv.notify_one();
    return f;
  }

  /// Runs the flight of `d` on this thread; called with `lock` held, returns with it held.
  void run(const verity::Digest& d, const std::shared_ptr<Flight>& f,
           std::unique_lock<std::mutex>& lock) const {
    f->claimed = true;
    lock.unlock();
    Status st = fetch(d);
    lock.lock();
    if (!st) ++failed;
    f->status = std::move(st);
    f->done = true;
    if (auto it = flights.find(d); it != flights.end() && it->second == f) flights.erase(it);
    done_cv.notify_all();
  }

  void worker() {
    std::unique_lock lock(mu);
    for (;;) {
      work_cv.wait(lock, [&] {
        return stopping || !queues[0].empty() || !queues[1].empty() || !queues[2].empty();
      });
      if (stopping) return;
      int q = !queues[0].empty() ? 0 : !queues[1].empty() ? 1 : 2;
      verity::Digest d = queues[q].front();
      queues[q].pop_front();
      auto it = flights.find(d);
      if (it == flights.end() || it->second->claimed) {
        note_fill_end(q);
        continue;
      }
      auto f = it->second;
      run(d, f, lock);
      if (!f->status && q != 0) log(f->status.error().message());
      note_fill_end(q);
    }
  }

  /// Called with mu held after a queue entry was handled.
  void note_fill_end(int q) {
    if (q != 2 || --fill_left != 0) return;
    fill_done = true;
    log("fill complete: " + std::to_string(fetched.load()) + " objects fetched (" +
        std::to_string(fetched_bytes.load()) + " bytes), " + std::to_string(failed.load()) +
        " failed");
  }

  /// Waits for `d` at most the timeout (fetching on this thread before start(): no workers).
  Status ensure(const verity::Digest& d) const {
    std::unique_lock lock(mu);
    auto f = request(d, Priority::kOpen);
    if (!started && !f->claimed) {
      run(d, f, lock);
      return f->status;
    }
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(o.timeout_s));
    if (!done_cv.wait_until(lock, deadline, [&] { return f->done; }))
      return fail(eio("object " + object_name(d) + ": not fetched from " + o.source.str() +
                      " within " + std::to_string(o.timeout_s) + " s"));
    return f->status;
  }
};

LazyProvider::LazyProvider(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LazyProvider::~LazyProvider() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->work_cv.notify_all();
  for (auto& t : impl_->workers) t.join();
}

Result<std::shared_ptr<LazyProvider>> LazyProvider::create(Client client, LazyOptions options) {
  auto impl = std::make_unique<Impl>(std::move(client), std::move(options));
  std::string objects = impl->o.repo_path + "/" + std::string(repo::kObjectsDir);
  CFS_ASSIGN(impl->dirs, store::ObjectDirs::open({objects}));
  if (impl->o.fetchers == 0) impl->o.fetchers = 1;
  return std::shared_ptr<LazyProvider>(new LazyProvider(std::move(impl)));
}

Result<UniqueFd> LazyProvider::open_object(std::string_view rel,
                                           const std::optional<verity::Digest>& digest) const {
  auto fd = impl_->dirs.open_object(rel);
  if (fd || !fd.error().is_errno(ENOENT) || !digest) return fd;
  // Only the object the image names is fetched: a redirect that is not its digest's name is served
  // from the store or not at all.
  if (impl_->object_name(*digest) != rel || !impl_->o.index.find(*digest)) return fd;
  CFS_TRY(impl_->ensure(*digest));
  return impl_->dirs.open_object(rel);
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
    }
    if (m.fill_left == 0) {
      m.fill_done = true;
      m.log("fill complete: every object was present");
    }
  }
  for (unsigned i = 0; i < m.o.fetchers; ++i) m.workers.emplace_back([&m] { m.worker(); });
}

Result<std::vector<verity::Digest>> objects_of_paths(const erofs::Image& image,
                                                     const std::vector<std::string>& paths) {
  std::vector<verity::Digest> out;
  std::set<verity::Digest> seen;
  for (const auto& path : paths) {
    std::uint64_t nid = image.root_nid();
    std::size_t pos = 0;
    while (pos < path.size()) {
      std::size_t end = path.find('/', pos);
      if (end == std::string::npos) end = path.size();
      std::string_view name = std::string_view(path).substr(pos, end - pos);
      pos = end + 1;
      if (name.empty() || name == ".") continue;
      CFS_ASSIGN(auto child, image.lookup(nid, name));
      if (!child) return fail_errno("prefetch " + path + ": not in the image", ENOENT);
      nid = *child;
    }
    CFS_ASSIGN(auto info, image.inode(nid));
    if (!info.is_reg() || info.xattr_size == 0) continue;
    CFS_ASSIGN(auto xs, image.xattrs(info));
    auto b = erofs::backing_from_xattrs(xs);
    if (b.digest && seen.insert(*b.digest).second) out.push_back(*b.digest);
  }
  return out;
}

}  // namespace cfs::registry
