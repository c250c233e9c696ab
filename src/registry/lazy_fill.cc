// SPDX-License-Identifier: Apache-2.0
// Finishing a lazily registered image (see cfs/registry/lazy_fill.h).
#include "cfs/registry/lazy_fill.h"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/decompress.h"
#include "cfs/ocirepo/names.h"
#include "cfs/ocirepo/pull.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/parallel.h"

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

/// The layer tar: the segments in order, gaps from memory (decompressed for zstd:chunked), objects
/// from the repository.
class LayerTar final : public oci::ByteSource {
 public:
  LayerTar(const repo::Repository& repo, LayerPlan& plan, std::string what)
      : repo_(repo), plan_(plan), what_(std::move(what)) {}

  Result<std::size_t> read(std::span<std::byte> buf) override {
    for (;;) {
      if (!cur_) {
        if (next_ == plan_.segments.size()) return std::size_t{0};
        CFS_TRY(open(plan_.segments[next_++]));
      }
      CFS_ASSIGN(std::size_t n, cur_->read(buf));
      if (n) return n;
      cur_.reset();
      raw_.reset();
    }
  }

 private:
  Status open(Segment& s) {
    if (s.object) {
      CFS_ASSIGN(UniqueFd fd, repo_.open_object(s.object->digest));
      cur_ = oci::fd_source(std::move(fd), tree::object_path(s.object->digest));
      return {};
    }
    raw_ = oci::memory_source(std::move(s.bytes));
    if (!plan_.zstd) {
      cur_ = std::move(raw_);
      return {};
    }
    // Whole frames (an object's range is one frame); skippable ones (the zstd:chunked table of
    // contents and footer) give no bytes.
    cur_ = oci::decompressor(oci::Compression::kZstd, *raw_,
                             fmt::format("{} bytes {}+{}", what_, s.offset, s.length));
    return {};
  }

  const repo::Repository& repo_;
  LayerPlan& plan_;
  std::string what_;
  std::size_t next_ = 0;
  std::unique_ptr<oci::ByteSource> raw_, cur_;
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

/// The registry client as the provider's range source (borrowed: the provider lives only
/// inside finish_fill).
class BorrowedRanges final : public RangeSource {
 public:
  BorrowedRanges(Client& c, Reference repo) : client_(c), repo_(std::move(repo)) {}
  Status fetch_range(const oci::ContentDigest& blob, std::uint64_t offset, std::uint64_t length,
                     BlobSink& sink) override {
    return client_.fetch_range(repo_, blob, offset, length, sink);
  }

 private:
  Client& client_;
  Reference repo_;
};

/// Runs fn(i) for i in [0, n) on `threads` threads; returns the error of the lowest failing i
/// (the others stop taking new items).
template <typename Fn>
Status parallel_try(std::size_t n, unsigned threads, Fn&& fn) {
  std::mutex mu;
  std::optional<std::pair<std::size_t, Error>> first;
  std::atomic<bool> failed{false};
  parallel_for(n, threads, [&](std::size_t i) {
    if (failed.load()) return;
    Status st = fn(i);
    if (st) return;
    failed = true;
    std::lock_guard lock(mu);
    if (!first || i < first->first) first.emplace(i, std::move(st).error());
  });
  if (first) return fail(std::move(first->second));
  return {};
}

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
    if (std::any_of(plans.begin(), plans.end(),
                    [&](const LayerPlan& p) { return p.layer->diff_id == l.diff_id; }))
      continue;  // an image repeating a layer: rebuilt once
    plans.push_back({&l, *c == oci::Compression::kZstd, std::move(*segs)});
  }

  // Step 1: the missing objects, in reverse index order.
  std::vector<const ocirepo::ObjectLocation*> missing;
  std::uint64_t missing_bytes = 0, gap_total = 0, gap_count = 0;
  for (auto it = index.objects.rbegin(); it != index.objects.rend(); ++it)
    if (!repo.has_object(it->digest)) {
      missing.push_back(&*it);
      missing_bytes += it->length;
    }
  for (const auto& p : plans)
    for (const auto& s : p.segments)
      if (!s.object) {
        ++gap_count;
        gap_total += s.length;
      }
  counter.total(missing.size() + gap_count, missing_bytes + gap_total);

  LazyOptions lo;
  lo.repo_path = repo.path();
  lo.source = lazy.source;
  lo.index = index;
  lo.fill = false;
  lo.elf_prefetch = false;
  lo.timeout_s = 24 * 3600;  // never started: each open fetches on its own thread
  CFS_ASSIGN(auto provider,
             LazyProvider::create(std::make_unique<BorrowedRanges>(client, lazy.source), lo));
  std::atomic<std::uint64_t> fetched{0}, fetched_bytes{0};
  CFS_TRY(parallel_try(missing.size(), threads, [&](std::size_t i) -> Status {
    const ocirepo::ObjectLocation& loc = *missing[i];
    const bool had = repo.has_object(loc.digest);  // a concurrent mount may have fetched it
    auto fd = provider->open_object(tree::object_path(loc.digest), loc.digest);
    counter.done(1, loc.length, !fd);
    if (!fd) return fail(std::move(fd).error());
    if (!had) {
      ++fetched;
      fetched_bytes += loc.length;
    }
    return {};
  }));
  provider.reset();
  out.objects_fetched = fetched;
  out.object_bytes = fetched_bytes;

  // Step 2, a layer at a time (its gaps are held in memory until its tar is read): the gaps,
  // then the layer stream.
  for (auto& p : plans) {
    const oci::LayerRef& l = *p.layer;
    std::vector<Segment*> gaps;
    for (auto& s : p.segments)
      if (!s.object) gaps.push_back(&s);
    CFS_TRY(parallel_try(gaps.size(), threads, [&](std::size_t i) -> Status {
      Segment& s = *gaps[i];
      s.bytes.reserve(s.length);
      StringSink sink(s.bytes, s.length);
      auto st = client.fetch_range(lazy.source, l.blob.digest, s.offset, s.length, sink);
      if (st && s.bytes.size() != s.length)
        st = fail(Errc::kInvalidInput,
                  fmt::format("{} bytes instead of {}", s.bytes.size(), s.length));
      counter.done(1, s.length, !st);
      if (!st)
        return fail(std::move(st).error().with_context(fmt::format(
            "{} blob {} bytes {}+{}", lazy.source.str(), l.blob.digest.str(), s.offset, s.length)));
      return {};
    }));
    for (const auto* g : gaps) out.gap_bytes += g->length;
    std::string what = fmt::format("layer {} (blob {})", l.diff_id.str(), l.blob.digest.str());
    CFS_TRY(ocirepo::import_layer(repo, std::make_unique<LayerTar>(repo, p, what), l.diff_id,
                                  std::nullopt)
                .map([](auto&&) {}));
    ++out.layers_rebuilt;
  }
  return out;
}

}  // namespace cfs::registry
