// SPDX-License-Identifier: Apache-2.0
// The import pipeline (see cfs/ocirepo/pull.h).
#include "cfs/ocirepo/pull.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
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
                                 const oci::LayerInputOptions& input_options) {
  CFS_ASSIGN(auto input, oci::LayerInput::open(std::move(in), media_type, what, input_options));
  RepoSink sink(repo);
  splitstream::WriterOptions wo;
  wo.content_type = splitstream::kOciLayer;
  CFS_ASSIGN(auto writer, splitstream::Writer::create(sink, wo));
  CFS_TRY(oci::split_tar(input->tar(), *writer, what));
  CFS_ASSIGN(oci::LayerDigests d, input->finish());
  if (blob && (d.blob != blob->digest || d.blob_size != blob->size))
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the blob is {} ({} bytes), the manifest says {} ({} bytes)", what,
                            d.blob.str(), d.blob_size, blob->digest.str(), blob->size));
  if (d.diff_id != diff_id)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the tar is {}, {} says {}", what, d.diff_id.str(),
                            blob ? "the config" : "the caller", diff_id.str()));
  CFS_ASSIGN(auto fin, writer->finish_object());
  return StoredStream{fin.first, d, fin.second.objects};
}

/// Imports the distinct layers of `image` (largest first, `jobs` at once); results by layer
/// index. The error returned is that of the first failing layer in manifest order.
Result<std::vector<PulledLayer>> import_layers(repo::Repository& repo, oci::ImageSource& source,
                                               const oci::ResolvedImage& image,
                                               const PullOptions& options, Progress& progress) {
  const auto& refs = image.layers;
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
    auto stored = [&](const std::string& n) -> std::optional<verity::Digest> {
      auto have = repo.resolve_stream(n);
      if (have && repo.has_object(have->first)) return have->first;
      return std::nullopt;
    };
    if (auto have = stored(name)) {
      std::optional<verity::Digest> kept;
      if (keep) kept = stored(blob_name);
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
    CFS_ASSIGN(StoredStream s, store_layer(repo, std::move(blob), l.blob.media_type, &l.blob,
                                           l.diff_id, what, options.input));
    // store_layer checked the blob's digest and size: the kept copy holds exactly that blob.
    if (kept) {
      CFS_ASSIGN(p.blob_stream, keep_blob(repo, std::move(*kept), l.blob.size));
    }
    // Durable before named: after a crash the name never points at a partial stream.
    CFS_TRY(repo.sync());
    CFS_TRY(repo.link_stream(name, s.stream));
    if (p.blob_stream) CFS_TRY(repo.link_stream(blob_name, *p.blob_stream));
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
      if (k >= order.size() || failed.load()) return;
      std::size_t i = order[k];
      if (auto st = import_one(i); !st) {
        errors[i] = std::move(st).error();
        failed.store(true);
      }
    }
  };
  unsigned jobs = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
  jobs = static_cast<unsigned>(std::min<std::size_t>(jobs, order.size()));
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < jobs; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) return fail(std::move(*e));
  for (std::size_t i = 0; i < refs.size(); ++i) {
    std::size_t f = first[refs[i].diff_id];
    if (f != i) {
      out[i] = out[f];
      out[i].skipped = true;
    }
  }
  return out;
}

}  // namespace

Result<PullResult> pull(repo::Repository& repo, oci::ImageSource& source,
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
  CFS_ASSIGN(out.layers, import_layers(repo, source, image, options, progress));

  PullEvent merging;
  merging.kind = PullEvent::Kind::kMerging;
  merging.layers = image.layers.size();
  progress.emit(merging);
  oci::Merger merger(options.merge);
  for (std::size_t i = 0; i < out.layers.size(); ++i) {
    std::string layer = fmt::format("{} ({})", i, out.layers[i].diff_id.str());
    std::string what = "layer " + layer;
    CFS_ASSIGN(auto reader,
               detail::open_stream(repo, out.layers[i].stream, splitstream::kOciLayer, what));
    oci::LayerReader lr(reader, what);
    CFS_TRY(merger.apply_layer(lr, layer));
  }
  CFS_ASSIGN_CTX(Tree tree, merger.finish(), source.name());
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

  // One sync for the image and both documents, then the names, the tag last.
  CFS_TRY(repo.sync());
  CFS_TRY(repo.link_image(out.image));
  CFS_TRY(repo.link_stream(config_stream_name(out.config), out.config_stream));
  std::string manifest_name = manifest_stream_name(out.manifest);
  CFS_TRY(repo.link_stream(manifest_name, out.manifest_stream));
  if (ref) {
    CFS_TRY(repo.set_ref(repo::Kind::kStream, *ref, manifest_name));
    out.tag = tag;
  }
  return out;
}

Result<verity::Digest> import_layer(repo::Repository& repo, std::unique_ptr<oci::ByteSource> tar,
                                    const oci::ContentDigest& diff_id,
                                    const std::optional<std::string>& ref) {
  std::string name = layer_stream_name(diff_id);
  verity::Digest stream;
  if (auto have = repo.resolve_stream(name); have && repo.has_object(have->first)) {
    stream = have->first;
  } else {
    CFS_ASSIGN(StoredStream s, store_layer(repo, std::move(tar), "", nullptr, diff_id,
                                           "layer " + diff_id.str(), {}));
    CFS_TRY(repo.sync());
    CFS_TRY(repo.link_stream(name, s.stream));
    stream = s.stream;
  }
  if (ref) CFS_TRY(repo.set_ref(repo::Kind::kStream, *ref, name));
  return stream;
}

}  // namespace cfs::ocirepo
