// SPDX-License-Identifier: Apache-2.0
// Finishing a lazily registered image (see cfs/registry/lazy_fill.h).
#include "cfs/registry/lazy_fill.h"

#include <fmt/core.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/decompress.h"
#include "cfs/ocirepo/names.h"
#include "cfs/ocirepo/pull.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"

namespace cfs::registry {
namespace {

/// A byte range of a layer blob: an object's (its bytes are in the repository after step 1) or
/// a gap between objects (fetched).
struct Segment {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  const ocirepo::ObjectLocation* object = nullptr;  ///< nullptr: a gap
  std::string bytes;                                ///< a gap's bytes, once fetched
};

/// A layer to rebuild from ranges.
struct LayerPlan {
  const oci::LayerRef* layer = nullptr;
  bool zstd = false;
  std::vector<Segment> segments;
};

/// The segments of index layer `li` of `blob_size` bytes, or nullopt when its objects do not
/// tile the blob (overlapping or outside it: the index is only a hint).
std::optional<std::vector<Segment>> segments_of(const ocirepo::ObjectIndex& index, std::uint32_t li,
                                                std::uint64_t blob_size) {
  std::vector<const ocirepo::ObjectLocation*> objs;
  for (const auto& o : index.objects)
    if (o.layer == li) objs.push_back(&o);
  std::sort(objs.begin(), objs.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  std::vector<Segment> out;
  std::uint64_t pos = 0;
  for (const auto* o : objs) {
    if (o->offset < pos || o->length > blob_size || o->offset > blob_size - o->length)
      return std::nullopt;
    if (o->offset > pos) out.push_back({pos, o->offset - pos, nullptr, {}});
    out.push_back({o->offset, o->length, o, {}});
    pos = o->offset + o->length;
  }
  if (pos < blob_size) out.push_back({pos, blob_size - pos, nullptr, {}});
  return out;
}

/// Collects a fetched range in memory, refusing more than was asked for.
class StringSink final : public BlobSink {
 public:
  StringSink(std::string& out, std::uint64_t limit) : out_(out), limit_(limit) {}
  Status write(std::span<const std::byte> data) override {
    if (data.size() > limit_ - out_.size())
      return fail(Errc::kInvalidInput, "the registry sent more bytes than the range asked for");
    out_.append(reinterpret_cast<const char*>(data.data()), data.size());
    return {};
  }

 private:
  std::string& out_;
  std::uint64_t limit_;
};

/// The layer tar: the segments in order, gaps from memory (decompressed for zstd:chunked, with
/// one context for the layer: it has as many gaps as files), objects from the repository.
class LayerTar final : public oci::ByteSource {
 public:
  LayerTar(const repo::Repository& repo, LayerPlan& plan, std::string what)
      : repo_(repo), plan_(plan), what_(std::move(what)) {}
  ~LayerTar() override { ZSTD_freeDCtx(dctx_); }
  LayerTar(const LayerTar&) = delete;
  LayerTar& operator=(const LayerTar&) = delete;

  Result<std::size_t> read(std::span<std::byte> buf) override {
    for (;;) {
      if (!cur_ && !gap_) {
        if (next_ == plan_.segments.size()) return std::size_t{0};
        CFS_TRY(open(plan_.segments[next_++]));
      }
      std::size_t n = 0;
      if (cur_) {
        CFS_ASSIGN(n, cur_->read(buf));
        if (!n) cur_.reset();
      } else {
        CFS_ASSIGN(n, read_gap(buf));
      }
      if (n) return n;
    }
  }

 private:
  Status open(Segment& s) {
    if (s.object) {
      CFS_ASSIGN(UniqueFd fd, repo_.open_object(s.object->digest));
      cur_ = oci::fd_source(std::move(fd), tree::object_path(s.object->digest));
      return {};
    }
    gap_ = &s;
    gap_pos_ = 0;
    frame_open_ = false;
    if (plan_.zstd) {
      if (!dctx_ && !(dctx_ = ZSTD_createDCtx()))
        return fail_errno(what_ + ": zstd context", ENOMEM);
      ZSTD_DCtx_reset(dctx_, ZSTD_reset_session_only);
    }
    return {};
  }

  /// The next bytes of the current gap; 0 at its end. zstd:chunked: whole frames (an object's
  /// range is one frame); skippable ones (the table of contents, the footer) give no bytes.
  Result<std::size_t> read_gap(std::span<std::byte> buf) {
    const std::string& in = gap_->bytes;
    if (!plan_.zstd) {
      std::size_t n = std::min(buf.size(), in.size() - gap_pos_);
      std::memcpy(buf.data(), in.data() + gap_pos_, n);
      gap_pos_ += n;
      if (!n) gap_ = nullptr;
      return n;
    }
    ZSTD_outBuffer out{buf.data(), buf.size(), 0};
    while (out.pos == 0 && gap_pos_ < in.size()) {
      ZSTD_inBuffer zin{in.data(), in.size(), gap_pos_};
      std::size_t rc = ZSTD_decompressStream(dctx_, &out, &zin);
      gap_pos_ = zin.pos;
      if (ZSTD_isError(rc))
        return fail(Errc::kInvalidInput,
                    fmt::format("{} bytes {}+{}: zstd: {}", what_, gap_->offset, gap_->length,
                                ZSTD_getErrorName(rc)));
      frame_open_ = rc != 0;
    }
    if (out.pos == 0 && frame_open_) {
      // Input consumed: the decoder may still hold output of the last frame.
      ZSTD_inBuffer zin{nullptr, 0, 0};
      std::size_t rc = ZSTD_decompressStream(dctx_, &out, &zin);
      if (ZSTD_isError(rc) || (out.pos == 0 && rc != 0))
        return fail(Errc::kInvalidInput, fmt::format("{} bytes {}+{}: a zstd frame is truncated",
                                                     what_, gap_->offset, gap_->length));
      frame_open_ = rc != 0;
    }
    if (out.pos == 0) gap_ = nullptr;
    return out.pos;
  }

  const repo::Repository& repo_;
  LayerPlan& plan_;
  std::string what_;
  std::size_t next_ = 0;
  std::unique_ptr<oci::ByteSource> cur_;  // an object
  Segment* gap_ = nullptr;                // or a gap
  std::size_t gap_pos_ = 0;
  bool frame_open_ = false;
  ZSTD_DCtx* dctx_ = nullptr;
};

/// Serialises FillProgress updates.
class Counter {
 public:
  explicit Counter(const FillOptions& o) : fn_(o.progress) {}
  void total(std::uint64_t objects, std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    p_.objects_total += objects;
    p_.bytes_total += bytes;
    emit();
  }
  void done(std::uint64_t objects, std::uint64_t bytes, bool failed) {
    std::lock_guard lock(mu_);
    p_.objects += objects;
    p_.bytes += bytes;
    if (failed) ++p_.failed;
    emit();
  }

 private:
  void emit() {
    if (fn_) fn_(p_);
  }
  const std::function<void(const FillProgress&)>& fn_;
  std::mutex mu_;
  FillProgress p_;
};

/// The provider's range source: the registry client (borrowed: the provider lives only inside
/// finish_fill), except for ranges inside a run fetched already, served from memory. The provider
/// verifies those bytes as any others.
class RunRanges final : public RangeSource {
 public:
  RunRanges(Client& c, Reference repo) : client_(c), repo_(std::move(repo)) {}
  Status fetch_range(const oci::ContentDigest& blob, std::uint64_t offset, std::uint64_t length,
                     BlobSink& sink) override {
    std::shared_ptr<const std::string> run;
    std::uint64_t start = 0;
    {
      std::lock_guard lock(mu_);
      auto it = runs_.upper_bound({blob, offset});
      if (it != runs_.begin()) {
        --it;
        const auto& [key, bytes] = *it;
        if (key.first == blob && offset - key.second + length <= bytes->size()) {
          run = bytes;
          start = offset - key.second;
        }
      }
    }
    if (!run) return client_.fetch_range(repo_, blob, offset, length, sink);
    return sink.write(std::as_bytes(std::span(run->data() + start, length)));
  }
  void add(const oci::ContentDigest& blob, std::uint64_t offset,
           std::shared_ptr<const std::string> bytes) {
    std::lock_guard lock(mu_);
    runs_[{blob, offset}] = std::move(bytes);
  }
  void remove(const oci::ContentDigest& blob, std::uint64_t offset) {
    std::lock_guard lock(mu_);
    runs_.erase({blob, offset});
  }

 private:
  Client& client_;
  Reference repo_;
  std::mutex mu_;
  std::map<std::pair<oci::ContentDigest, std::uint64_t>, std::shared_ptr<const std::string>> runs_;
};

/// Consecutive segments of a layer fetched with one Range request: gaps and missing objects,
/// up to a present object (never fetched again) or kRunBytes.
struct Run {
  const oci::LayerRef* layer = nullptr;
  std::vector<Segment*> segments;
  std::uint64_t offset = 0, length = 0;
};
/// A run ends once it holds this much (it is held in memory while its objects are verified).
constexpr std::uint64_t kRunBytes = 8 << 20;
/// Larger missing objects are fetched on their own (streamed, not held in memory).
constexpr std::uint64_t kRunObjectMax = 4 << 20;

}  // namespace

Result<FillResult> finish_fill(repo::Repository& repo, Client& client, const LazyImage& lazy,
                               const oci::ResolvedImage& image, const FillOptions& options) {
  const ocirepo::ObjectIndex& index = lazy.index;
  const unsigned threads = std::max(1u, options.fetchers);
  Counter counter(options);
  FillResult out;

  // Which layers can be rebuilt from ranges: the index's layer i must be the manifest's layer i
  // (same blob), range-fetchable, uncompressed or zstd, its objects tiling the blob.
  std::vector<LayerPlan> plans;
  // Layers of which more than 7/8 of the blob is missing are left to the pull, which downloads
  // them whole: at most 1/7 more bytes than the ranges, and one stream through the importer
  // costs much less per object than the lazy provider (a fetch lock file, a repository open
  // and a verification per object): finishing the Debian image after `dpkg --version` took
  // 1.4-1.7x a full pull by ranges (bench/README.md, "Finishing a lazy image").
  std::set<std::uint32_t> whole;
  for (std::size_t i = 0; i < image.layers.size() && i < index.layers.size(); ++i) {
    const oci::LayerRef& l = image.layers[i];
    const ocirepo::IndexedLayer& il = index.layers[i];
    if (il.digest != l.blob.digest || il.size != l.blob.size || !il.range_fetchable) continue;
    if (auto have = repo.resolve_stream(ocirepo::layer_stream_name(l.diff_id));
        have && repo.has_object(have->first))
      continue;
    auto c = oci::layer_compression(l.blob.media_type);
    if (!c || *c == oci::Compression::kGzip) continue;
    auto segs = segments_of(index, static_cast<std::uint32_t>(i), l.blob.size);
    if (!segs) continue;
    std::uint64_t missing_bytes = 0;
    for (const auto& s : *segs)
      if (!s.object || !repo.has_object(s.object->digest)) missing_bytes += s.length;
    if (missing_bytes > l.blob.size / 8 * 7) {
      whole.insert(static_cast<std::uint32_t>(i));
      continue;
    }
    if (std::any_of(plans.begin(), plans.end(),
                    [&](const LayerPlan& p) { return p.layer->diff_id == l.diff_id; }))
      continue;  // an image repeating a layer: rebuilt once
    plans.push_back({&l, *c == oci::Compression::kZstd, std::move(*segs)});
  }

  // The runs: every gap of a layer to rebuild, with the missing objects between gaps.
  std::vector<Run> runs;
  std::set<verity::Digest> in_runs;
  std::uint64_t total_objects = 0, total_bytes = 0;
  for (auto& p : plans) {
    Run run;
    auto close = [&] {
      if (!run.segments.empty()) runs.push_back(std::move(run));
      run = Run{};
    };
    for (auto& s : p.segments) {
      const bool small_missing = s.object && s.length <= kRunObjectMax &&
                                 !repo.has_object(s.object->digest) &&
                                 !in_runs.count(s.object->digest);
      if (s.object && !small_missing) {
        close();
        continue;
      }
      if (run.segments.empty()) {
        run.layer = p.layer;
        run.offset = s.offset;
      }
      run.segments.push_back(&s);
      run.length = s.offset + s.length - run.offset;
      ++total_objects;  // a gap counts as one item too
      total_bytes += s.length;
      if (s.object) in_runs.insert(s.object->digest);
      if (run.length >= kRunBytes) close();
    }
    close();
  }
  // The other missing objects (large ones, those of layers not rebuilt), in reverse index
  // order, each with its own Range request.
  std::vector<const ocirepo::ObjectLocation*> missing;
  for (auto it = index.objects.rbegin(); it != index.objects.rend(); ++it)
    if (!whole.count(it->layer) && !in_runs.count(it->digest) && !repo.has_object(it->digest)) {
      missing.push_back(&*it);
      ++total_objects;
      total_bytes += it->length;
    }
  counter.total(total_objects, total_bytes);

  LazyOptions lo;
  lo.repo_path = repo.path();
  lo.source = lazy.source;
  lo.index = index;
  lo.fill = false;
  lo.elf_prefetch = false;
  lo.batch_bytes = 0;  // one object per open: this pull plans its ranges and counts each object
  lo.timeout_s = 24 * 3600;     // never started: each open fetches on its own thread
  lo.sync_each_object = false;  // one syncfs below, before the layer streams are named
  auto ranges = std::make_unique<RunRanges>(client, lazy.source);
  RunRanges& cache = *ranges;
  CFS_ASSIGN(auto provider, LazyProvider::create(std::move(ranges), lo));
  std::atomic<std::uint64_t> fetched{0}, fetched_bytes{0}, gap_bytes{0};
  // One object through the provider: fetched (from a run in memory, or the registry), verified
  // and committed, unless it is in the repository by then (a concurrent lazy mount).
  auto fetch_object = [&](const ocirepo::ObjectLocation& loc) -> Status {
    const bool had = repo.has_object(loc.digest);
    auto fd = provider->open_object(tree::object_path(loc.digest), loc.digest);
    counter.done(1, loc.length, !fd);
    if (!fd) return fail(std::move(fd).error());
    if (!had) {
      ++fetched;
      fetched_bytes += loc.length;
    }
    return {};
  };
  CFS_TRY(parallel_try_for(runs.size(), threads, [&](std::size_t i) -> Status {
    Run& run = runs[i];
    const oci::ContentDigest& blob = run.layer->blob.digest;
    auto bytes = std::make_shared<std::string>();
    bytes->reserve(run.length);
    StringSink sink(*bytes, run.length);
    auto st = client.fetch_range(lazy.source, blob, run.offset, run.length, sink);
    if (st && bytes->size() != run.length)
      st = fail(Errc::kInvalidInput,
                fmt::format("{} bytes instead of {}", bytes->size(), run.length));
    if (!st)
      return fail(std::move(st).error().with_context(fmt::format(
          "{} blob {} bytes {}+{}", lazy.source.str(), blob.str(), run.offset, run.length)));
    cache.add(blob, run.offset, bytes);
    Status result;
    for (Segment* s : run.segments) {
      if (s->object) {
        result = fetch_object(*s->object);
        if (!result) break;
        continue;
      }
      s->bytes = bytes->substr(s->offset - run.offset, s->length);
      gap_bytes += s->length;
      counter.done(1, s->length, false);
    }
    cache.remove(blob, run.offset);
    return result;
  }));
  CFS_TRY(parallel_try_for(missing.size(), threads,
                           [&](std::size_t i) { return fetch_object(*missing[i]); }));
  provider.reset();
  // Durable before anything more names them (import_layer syncs again, for its stream).
  CFS_TRY(repo.sync());
  out.objects_fetched = fetched;
  out.object_bytes = fetched_bytes;
  out.runs = runs.size();
  out.gap_bytes = gap_bytes;

  // The layer streams, from the gaps (in memory) and the objects (in the repository).
  for (auto& p : plans) {
    const oci::LayerRef& l = *p.layer;
    std::string what = fmt::format("layer {} (blob {})", l.diff_id.str(), l.blob.digest.str());
    CFS_TRY(ocirepo::import_layer(repo, std::make_unique<LayerTar>(repo, p, what), l.diff_id,
                                  std::nullopt)
                .map([](auto&&) {}));
    ++out.layers_rebuilt;
  }
  return out;
}

}  // namespace cfs::registry
