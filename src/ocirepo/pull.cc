// SPDX-License-Identifier: Apache-2.0
// The import pipeline (see cfs/ocirepo/pull.h).
#include "cfs/ocirepo/pull.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cfs/erofs/writer.h"
#include "cfs/oci/layer_input.h"
#include "cfs/oci/layer_stream.h"
#include "cfs/ocirepo/names.h"
#include "cfs/splitstream/format.h"
#include "cfs/splitstream/writer.h"
#include "cfs/util/sys.h"
#include "ocirepo/store.h"

namespace cfs::ocirepo {

namespace {

using detail::RepoSink;
using detail::write_document;

/// Serialises progress callbacks.
class Progress {
 public:
  explicit Progress(const std::function<void(const PullEvent&)>& fn) : fn_(fn) {}
  void emit(const PullEvent& e) {
    if (!fn_) return;
    std::lock_guard lock(mu_);
    fn_(e);
  }
  bool wanted() const noexcept { return static_cast<bool>(fn_); }

 private:
  const std::function<void(const PullEvent&)>& fn_;
  std::mutex mu_;
};

/// options.trace, or nothing. Called from several threads (the callback's contract).
class Trace {
 public:
  explicit Trace(const std::function<void(std::string_view)>& fn) : fn_(fn) {}
  void operator()(std::string_view event) const {
    if (fn_) fn_(event);
  }

 private:
  const std::function<void(std::string_view)>& fn_;
};

/// Reports the bytes read from a blob every 4 MiB and at its end.
class CountingSource final : public oci::ByteSource {
 public:
  CountingSource(std::unique_ptr<oci::ByteSource> in, std::function<void(std::uint64_t)> report)
      : in_(std::move(in)), report_(std::move(report)) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    CFS_ASSIGN(std::size_t n, in_->read(buf));
    total_ += n;
    if (total_ - reported_ >= (4u << 20) || n == 0) {
      reported_ = total_;
      report_(total_);
    }
    return n;
  }
  const oci::ContentDigest* verified_digest() const override { return in_->verified_digest(); }

 private:
  std::unique_ptr<oci::ByteSource> in_;
  std::function<void(std::uint64_t)> report_;
  std::uint64_t total_ = 0, reported_ = 0;
};

/// Copies every byte read into a new repository object: the blob kept by --keep-blobs. The
/// object is committed only after the layer's digests were checked (keep_blob()).
class KeepingSource final : public oci::ByteSource {
 public:
  KeepingSource(std::unique_ptr<oci::ByteSource> in, repo::NewObject& out)
      : in_(std::move(in)), out_(out) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    CFS_ASSIGN(std::size_t n, in_->read(buf));
    CFS_TRY(sys::write_all(out_.fd(), buf.first(n)));
    return n;
  }
  std::optional<std::uint64_t> known_size() const override { return in_->known_size(); }
  const oci::ContentDigest* verified_digest() const override { return in_->verified_digest(); }

 private:
  std::unique_ptr<oci::ByteSource> in_;
  repo::NewObject& out_;
};

/// The stream of a kept blob: its one object as one external chunk (composefs-rs writes a
/// blob so), content type "oci_blob".
Result<verity::Digest> keep_blob(repo::Repository& repo, repo::NewObject object,
                                 std::uint64_t size) {
  CFS_ASSIGN(verity::Digest obj, repo.commit_object(std::move(object)));
  RepoSink sink(repo);
  splitstream::WriterOptions wo;
  wo.content_type = splitstream::kOciBlob;
  wo.threads = 1;
  CFS_ASSIGN(auto w, splitstream::Writer::create(sink, wo));
  CFS_TRY(w->write_reference(obj, size));
  CFS_ASSIGN(auto fin, w->finish_object());
  return fin.first;
}

/// A write found the file system full (or the user's quota used up), or the free-space reserve
/// stopped a layer (reported as ENOSPC too).
bool out_of_space(const Error& e) { return e.is_errno(ENOSPC) || e.is_errno(EDQUOT); }

std::string mib(std::uint64_t n) {
  return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1 << 20));
}

/// PullOptions::min_free for `repo`'s file system (0: none).
Result<std::uint64_t> space_reserve(const repo::Repository& repo,
                                    const std::optional<std::uint64_t>& min_free) {
  if (min_free) return *min_free;
  CFS_ASSIGN(struct statvfs sv, sys::fstatvfs(repo.fd(), repo.path()));
  return std::min(kDefaultMinFree, std::uint64_t{sv.f_blocks} * sv.f_frsize / 20);
}

/// The check a layer runs every LayerInputOptions::check_every bytes of its tar: one fstatvfs
/// of the repository (~1 µs) per 32 MiB. The space available to unprivileged users
/// (f_bavail): what the file system keeps for root stays a margin beyond the reserve.
std::function<Status(const oci::LayerProgress&)> reserve_check(const repo::Repository& repo,
                                                               std::uint64_t reserve) {
  if (reserve == 0) return {};
  return [&repo, reserve](const oci::LayerProgress&) -> Status {
    CFS_ASSIGN(struct statvfs sv, sys::fstatvfs(repo.fd(), repo.path()));
    const std::uint64_t avail = std::uint64_t{sv.f_bavail} * sv.f_frsize;
    if (avail >= reserve) return {};
    return fail_errno(fmt::format("{} has {} available, less than the {} a pull leaves free "
                                  "(--min-free)",
                                  repo.path(), mib(avail), mib(reserve)),
                      ENOSPC);
  };
}

struct StoredStream {
  verity::Digest stream;
  oci::LayerDigests digests;
  std::uint64_t objects = 0;
};

/// Splits one layer blob into a layer stream object, checking its digests against what the
/// manifest (`blob`, when given) and config (`diff_id`) say. Nothing is named here.
Result<StoredStream> store_layer(repo::Repository& repo, std::unique_ptr<oci::ByteSource> in,
                                 std::string_view media_type, const oci::Descriptor* blob,
                                 const oci::ContentDigest& diff_id, const std::string& what,
                                 const oci::LayerInputOptions& input_options,
                                 const std::function<void()>& on_read = {}) {
  CFS_ASSIGN(auto input, oci::LayerInput::open(std::move(in), media_type, what, input_options));
  // Out of space: where the layer stopped, so that a bomb (a small blob that inflates without
  // end) is told from a large layer. The inner error names the layer already.
  auto stopped = [&](Error e) {
    if (!out_of_space(e)) return fail(std::move(e));
    const oci::LayerProgress at = input->streamed();
    std::string inner = e.context();
    if (inner.starts_with(what + ": ")) inner.erase(0, what.size() + 2);
    return fail(
        Error(e.code(), fmt::format("{}: {}stopped after {} bytes of tar ({}) from the "
                                    "first {} bytes of its blob: {}",
                                    what, blob ? "blob " + blob->digest.str() + " " : "",
                                    at.tar_bytes, mib(at.tar_bytes), at.blob_bytes, inner)));
  };
  RepoSink sink(repo);
  splitstream::WriterOptions wo;
  wo.content_type = splitstream::kOciLayer;
  CFS_ASSIGN(auto writer, splitstream::Writer::create(sink, wo));
  if (auto st = oci::split_tar(input->tar(), *writer, what); !st)
    return stopped(std::move(st).error());
  auto read = input->finish();
  if (!read) return stopped(std::move(read).error());
  oci::LayerDigests d = *read;
  if (on_read) on_read();
  if (blob && (d.blob != blob->digest || d.blob_size != blob->size))
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the blob is {} ({} bytes), the manifest says {} ({} bytes)", what,
                            d.blob.str(), d.blob_size, blob->digest.str(), blob->size));
  if (d.diff_id != diff_id)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the tar is {}, {} says {}", what, d.diff_id.str(),
                            blob ? "the config" : "the caller", diff_id.str()));
  auto fin = writer->finish_object();
  if (!fin) return stopped(std::move(fin).error());
  return StoredStream{fin->first, d, fin->second.objects};
}

/// A completed layer stream (and its kept blob's stream) waiting for its names.
struct PendingName {
  std::string name;
  verity::Digest stream;
  std::string blob_name;
  std::optional<verity::Digest> blob_stream;
};

/// Names completed layers off the critical path: a background thread takes the layers
/// finished so far, runs one syncfs (which began after their streams were complete, so a name
/// never points at a partial stream after a crash) and names them, while the pull goes on
/// merging and building the image. An interrupted pull therefore still keeps the layers it
/// finished (those whose sync completed). Layers still waiting when the pull ends are handed
/// back (finish()) and named after the pull's final syncfs: no second sync for them.
class LayerNamer {
 public:
  LayerNamer(repo::Repository& repo, const Trace& trace) : repo_(repo), trace_(trace) {}
  LayerNamer(const LayerNamer&) = delete;
  LayerNamer& operator=(const LayerNamer&) = delete;
  /// A pull that fails still names the layers it completed (as before): one more sync.
  ~LayerNamer() {
    auto rest = finish();
    if (rest && !rest->empty() && repo_.sync()) (void)name_synced(repo_, *rest);
  }

  void add(PendingName n) {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(n));
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    cv_.notify_one();
  }

  /// Waits for a sync in progress and its names; returns the layers not yet synced (for the
  /// caller's final sync to cover), or the first error of a background run.
  Result<std::vector<PendingName>> finish() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    if (error_) return fail(std::move(*error_));
    return std::exchange(pending_, {});
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (stop_ || error_) return;
      std::vector<PendingName> batch = std::exchange(pending_, {});
      lock.unlock();
      Status st = name(batch);
      lock.lock();
      if (!st) error_ = std::move(st).error();
    }
  }

  Status name(const std::vector<PendingName>& batch) {
    trace_("layer sync start");
    CFS_TRY(repo_.sync());
    trace_("layer sync done");
    return name_synced(repo_, batch);
  }

 public:
  /// Names layers whose streams are durable.
  static Status name_synced(repo::Repository& repo, const std::vector<PendingName>& batch) {
    for (const auto& n : batch) {
      CFS_TRY(repo.link_stream(n.name, n.stream));
      if (n.blob_stream) CFS_TRY(repo.link_stream(n.blob_name, *n.blob_stream));
    }
    return {};
  }

 private:
  repo::Repository& repo_;
  const Trace& trace_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PendingName> pending_;
  std::optional<Error> error_;
  bool stop_ = false;
  std::thread thread_;
};

/// Imports the distinct layers of `image` (largest first, `jobs` at once) on threads of its
/// own and, on the calling thread, applies each layer to `merger` as soon as it and every
/// layer before it are stored (the merge re-reads the layer stream, from the page cache), so
/// the merge overlaps the import and the layers' writeback instead of following them.
/// Completed layers are named by `namer`. Results by layer index; the error returned is that
/// of the first failing layer in manifest order, else the merge's.
Result<std::vector<PulledLayer>> import_and_merge(repo::Repository& repo, oci::ImageSource& source,
                                                  const oci::ResolvedImage& image,
                                                  const PullOptions& options, Progress& progress,
                                                  LayerNamer& namer, oci::Merger& merger,
                                                  const Trace& trace) {
  const auto& refs = image.layers;
  oci::LayerInputOptions input = options.input;
  CFS_ASSIGN(const std::uint64_t reserve, space_reserve(repo, options.min_free));
  if (!input.check) input.check = reserve_check(repo, reserve);
  std::vector<PulledLayer> out(refs.size());
  // One import per diff_id (an image may repeat a layer).
  std::map<oci::ContentDigest, std::size_t> first;
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < refs.size(); ++i)
    if (first.emplace(refs[i].diff_id, i).second) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return refs[a].blob.size > refs[b].blob.size;
  });
  std::vector<std::optional<Error>> errors(refs.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  // Which layers are stored (out[i] complete), guarded by mu; workers_left counts running
  // workers so the merge stops waiting when no layer can complete any more.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> stored(refs.size(), 0);
  unsigned workers_left = 0;

  auto import_one = [&](std::size_t i) -> Status {
    const oci::LayerRef& l = refs[i];
    PulledLayer& p = out[i];
    p.diff_id = l.diff_id;
    p.blob = l.blob.digest;
    p.blob_bytes = l.blob.size;
    std::string name = layer_stream_name(l.diff_id);
    // An uncompressed layer's blob is the tar the layer stream rebuilds: nothing to keep.
    const bool keep = options.keep_blobs && l.blob.digest != l.diff_id;
    std::string blob_name = blob_stream_name(l.blob.digest);
    PullEvent ev;
    ev.layer = i;
    ev.layers = refs.size();
    ev.total = l.blob.size;
    ev.diff_id = l.diff_id.str();
    ev.blob = l.blob.digest.str();
    auto have_stream = [&](const std::string& n) -> std::optional<verity::Digest> {
      auto have = repo.resolve_stream(n);
      if (have && repo.has_object(have->first)) return have->first;
      return std::nullopt;
    };
    if (auto have = have_stream(name)) {
      std::optional<verity::Digest> kept;
      if (keep) kept = have_stream(blob_name);
      if (!keep || kept) {
        p.skipped = true;
        p.stream = *have;
        p.blob_stream = kept;
        ev.kind = PullEvent::Kind::kLayerSkipped;
        progress.emit(ev);
        return {};
      }
    }
    std::string what = fmt::format("layer {} ({})", i, l.diff_id.str());
    ev.kind = PullEvent::Kind::kLayerStart;
    progress.emit(ev);
    trace(fmt::format("layer {} start", i));
    CFS_ASSIGN_CTX(auto blob, source.blob(l.blob.digest), what);
    if (auto n = blob->known_size(); n && *n != l.blob.size)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: blob {} is {} bytes, the manifest says {} bytes", what,
                              l.blob.digest.str(), *n, l.blob.size));
    if (progress.wanted())
      blob = std::make_unique<CountingSource>(std::move(blob), [&, ev](std::uint64_t n) mutable {
        ev.kind = PullEvent::Kind::kLayerBytes;
        ev.bytes = n;
        progress.emit(ev);
      });
    std::optional<repo::NewObject> kept;
    if (keep) {
      CFS_ASSIGN(kept, repo.create_object());
      blob = std::make_unique<KeepingSource>(std::move(blob), *kept);
    }
    CFS_ASSIGN(StoredStream s,
               store_layer(repo, std::move(blob), l.blob.media_type, &l.blob, l.diff_id, what,
                           input, [&] { trace(fmt::format("layer {} read", i)); }));
    // store_layer checked the blob's digest and size: the kept copy holds exactly that blob.
    if (kept) {
      CFS_ASSIGN(p.blob_stream, keep_blob(repo, std::move(*kept), l.blob.size));
    }
    trace(fmt::format("layer {} stored", i));
    // Durable before named: the namer syncs first.
    namer.add({name, s.stream, blob_name, p.blob_stream});
    p.stream = s.stream;
    p.compression = oci::compression_name(s.digests.compression);
    p.tar_bytes = s.digests.tar_size;
    p.objects = s.objects;
    ev.kind = PullEvent::Kind::kLayerDone;
    ev.bytes = s.digests.blob_size;
    progress.emit(ev);
    return {};
  };
  auto worker = [&] {
    for (;;) {
      std::size_t k = next.fetch_add(1);
      if (k >= order.size() || failed.load()) break;
      std::size_t i = order[k];
      Status st = import_one(i);
      std::lock_guard lock(mu);
      if (st) {
        stored[i] = 1;
      } else {
        errors[i] = std::move(st).error();
        failed.store(true);
      }
      cv.notify_all();
    }
    std::lock_guard lock(mu);
    --workers_left;
    cv.notify_all();
  };
  unsigned jobs = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
  jobs = static_cast<unsigned>(std::min<std::size_t>(jobs, order.size()));
  std::vector<std::thread> threads;
  workers_left = jobs;
  for (unsigned t = 0; t < jobs; ++t) threads.emplace_back(worker);

  // The merge, in manifest order, on this thread.
  std::optional<Error> merge_error;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    std::size_t f = first[refs[i].diff_id];
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return stored[f] || failed.load() || workers_left == 0; });
      if (!stored[f]) break;
    }
    trace(fmt::format("merge layer {} start", i));
    std::string layer = fmt::format("{} ({})", i, refs[i].diff_id.str());
    std::string what = "layer " + layer;
    Status st = [&]() -> Status {
      CFS_ASSIGN(auto reader,
                 detail::open_stream(repo, out[f].stream, splitstream::kOciLayer, what));
      oci::LayerReader lr(reader, what);
      return merger.apply_layer(lr, layer);
    }();
    if (!st) {
      // The layers still importing are finished and named all the same (as a pull whose
      // merge fails after its import does).
      merge_error = std::move(st).error();
      break;
    }
    trace(fmt::format("merge layer {} done", i));
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) return fail(std::move(*e));
  if (merge_error) return fail(std::move(*merge_error));
  for (std::size_t i = 0; i < refs.size(); ++i) {
    std::size_t f = first[refs[i].diff_id];
    if (f != i) {
      out[i] = out[f];
      out[i].skipped = true;
    }
  }
  return out;
}

Result<PullResult> pull_into(repo::Repository& repo, oci::ImageSource& source,
                             const PullOptions& options) {
  if (repo.meta().erofs_version() != 1)
    return fail(Errc::kUnsupportedFeature,
                fmt::format("{}: OCI images are written as format 1, the repository's default "
                            "EROFS format is {}",
                            repo.path(), repo.meta().erofs_version()));
  std::optional<std::string> ref;
  std::string tag = options.tag.value_or(source.name());
  if (!tag.empty()) {
    CFS_ASSIGN(std::string r, tag_ref(tag));
    ref = std::move(r);
  }
  Progress progress(options.progress);
  CFS_ASSIGN(oci::ResolvedImage image, oci::resolve_image(source, options.platform));
  if (!image.manifest.is_image())
    return fail(
        Errc::kUnsupportedFeature,
        fmt::format("{}: manifest {} is an artifact (config media type '{}'), not a "
                    "container image",
                    source.name(), image.manifest.digest.str(), image.manifest.config.media_type));
  PullEvent resolved;
  resolved.layers = image.layers.size();
  std::set<oci::ContentDigest> distinct;
  for (const auto& l : image.layers)
    if (distinct.insert(l.diff_id).second) resolved.total += l.blob.size;
  progress.emit(resolved);

  PullResult out;
  out.manifest = image.manifest.digest;
  out.config = image.manifest.config.digest;
  Trace trace(options.trace);
  trace("resolved");
  LayerNamer namer(repo, trace);
  oci::Merger merger(options.merge);
  CFS_ASSIGN(out.layers,
             import_and_merge(repo, source, image, options, progress, namer, merger, trace));

  PullEvent merging;
  merging.kind = PullEvent::Kind::kMerging;
  merging.layers = image.layers.size();
  progress.emit(merging);
  CFS_ASSIGN_CTX(Tree tree, merger.finish(), source.name());
  trace("merged");
  CFS_ASSIGN(repo::NewObject obj, repo.create_object());
  erofs::WriteOptions wo;
  wo.min_version = wo.max_version = 1;
  wo.hash = repo.algorithm();
  CFS_ASSIGN_CTX(erofs::WriteResult written, erofs::write_image(tree, wo, obj.fd()),
                 source.name() + ": merged image");
  CFS_ASSIGN(out.image, repo.commit_object(std::move(obj)));
  if (out.image != written.digest)
    return fail(Errc::kDigestMismatch, fmt::format("merged image: written {}, stored {}",
                                                   written.digest.hex(), out.image.hex()));
  trace("image written");

  std::vector<std::pair<std::string, verity::Digest>> layer_refs;
  for (const auto& l : out.layers) layer_refs.emplace_back(l.diff_id.str(), l.stream);
  auto config_refs = layer_refs;
  config_refs.emplace_back(std::string(kImageRefV1), out.image);
  CFS_ASSIGN(out.config_stream,
             write_document(repo, splitstream::kOciConfig, image.config.raw, config_refs));
  auto manifest_refs = layer_refs;
  manifest_refs.emplace_back(std::string(kConfigRefPrefix) + out.config.str(), out.config_stream);
  for (const auto& l : out.layers)
    if (l.blob_stream) manifest_refs.emplace_back(l.blob.str(), *l.blob_stream);
  CFS_ASSIGN(out.manifest_stream,
             write_document(repo, splitstream::kOciManifest, image.manifest.raw, manifest_refs));

  // One sync for the image, both documents and the layers the namer has not synced yet;
  // then the names, the tag last.
  CFS_ASSIGN(std::vector<PendingName> unnamed, namer.finish());
  trace("sync start");
  CFS_TRY(repo.sync());
  trace("sync done");
  CFS_TRY(LayerNamer::name_synced(repo, unnamed));
  CFS_TRY(repo.link_image(out.image));
  CFS_TRY(repo.link_stream(config_stream_name(out.config), out.config_stream));
  std::string manifest_name = manifest_stream_name(out.manifest);
  CFS_TRY(repo.link_stream(manifest_name, out.manifest_stream));
  if (ref) {
    CFS_TRY(repo.set_ref(repo::Kind::kStream, *ref, manifest_name));
    out.tag = tag;
  }
  trace("tagged");
  return out;
}

}  // namespace

Result<PullResult> pull(repo::Repository& repo, oci::ImageSource& source,
                        const PullOptions& options) {
  auto r = pull_into(repo, source, options);
  if (!r && out_of_space(r.error()))
    return fail(std::move(r).error().with_context(
        fmt::format("{}: out of space in {} (nothing was tagged; `cfs repo gc` reclaims what "
                    "the pull wrote)",
                    source.name(), repo.path())));
  return r;
}

Result<verity::Digest> import_layer(repo::Repository& repo, std::unique_ptr<oci::ByteSource> tar,
                                    const oci::ContentDigest& diff_id,
                                    const std::optional<std::string>& ref) {
  std::string name = layer_stream_name(diff_id);
  verity::Digest stream;
  if (auto have = repo.resolve_stream(name); have && repo.has_object(have->first)) {
    stream = have->first;
  } else {
    oci::LayerInputOptions input;
    CFS_ASSIGN(const std::uint64_t reserve, space_reserve(repo, std::nullopt));
    input.check = reserve_check(repo, reserve);
    CFS_ASSIGN(StoredStream s, store_layer(repo, std::move(tar), "", nullptr, diff_id,
                                           "layer " + diff_id.str(), input));
    CFS_TRY(repo.sync());
    CFS_TRY(repo.link_stream(name, s.stream));
    stream = s.stream;
  }
  if (ref) CFS_TRY(repo.set_ref(repo::Kind::kStream, *ref, name));
  return stream;
}

}  // namespace cfs::ocirepo
