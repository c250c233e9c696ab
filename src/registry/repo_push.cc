// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/repo_push.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "cfs/oci/compress.h"
#include "cfs/oci/zstd_chunked.h"
#include "cfs/ocirepo/images.h"
#include "cfs/ocirepo/names.h"
#include "cfs/ocirepo/object_index.h"
#include "cfs/registry/lazy_metadata.h"
#include "cfs/registry/pull.h"
#include "cfs/repo/streams.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"

namespace cfs::registry {
namespace {

constexpr std::size_t kChunk = 1u << 20;

struct LayerBlob {
  UniqueFd fd;  // the blob to send (unnamed file)
  oci::Descriptor descriptor;
  std::vector<oci::ChunkedFile> chunked;  // zstd:chunked: where each file's frame is
};

// The compressor of a layer: oci::compressor(), or the zstd:chunked writer.
struct LayerCompressor {
  std::unique_ptr<oci::Compressor> plain;
  std::unique_ptr<oci::ZstdChunkedWriter> chunked;
  Status write(std::span<const std::byte> b) { return plain ? plain->write(b) : chunked->write(b); }
};

Result<UniqueFd> temp_file(const repo::Repository& repo) {
  // Below the repository: same filesystem as the objects the tar is rebuilt from, and an
  // unnamed file leaves nothing behind whatever happens.
  CFS_TRY(DownloadDir::open(repo.path() + "/" + std::string(kDownloadsDir)));
  return sys::openat(repo.fd(), std::string(kDownloadsDir), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
}

// Rebuilds the layer tar from its stream, checks it against the diff_id, and compresses it.
Result<LayerBlob> build_layer(const repo::Repository& repo, const ocirepo::StoredLayer& layer,
                              oci::Compression compression, bool zstd_chunked) {
  const std::string what = "layer " + layer.diff_id.str();
  CFS_ASSIGN(auto tar, temp_file(repo));
  CFS_TRY(repo::cat_stream(repo, ocirepo::layer_stream_name(layer.diff_id), tar.get()));
  LayerBlob out;
  if (compression != oci::Compression::kNone) {
    CFS_ASSIGN(out.fd, temp_file(repo));
  }
  oci::ContentHasher tar_hash, blob_hash;
  std::uint64_t written = 0;
  auto sink = [&](std::span<const std::byte> b) -> Status {
    blob_hash.update(b);
    CFS_TRY(sys::write_all(out.fd.get(), b));
    written += b.size();
    return {};
  };
  LayerCompressor comp;
  if (zstd_chunked)
    comp.chunked = std::make_unique<oci::ZstdChunkedWriter>(sink, what);
  else
    comp.plain = oci::compressor(compression, sink);
  AlignedBuffer aligned;
  const std::span<std::byte> buf = aligned.get(kChunk);
  for (std::uint64_t off = 0;;) {
    CFS_ASSIGN(auto n, sys::pread_full(tar.get(), buf, off));
    if (n == 0) break;
    const auto piece = std::span(buf.data(), n);
    tar_hash.update(piece);
    if (compression != oci::Compression::kNone) CFS_TRY(comp.write(piece));
    off += n;
  }
  if (comp.chunked) {
    CFS_ASSIGN(auto layer_info, comp.chunked->finish());
    out.descriptor.annotations = std::move(layer_info.annotations);
    out.chunked = std::move(layer_info.files);
  } else {
    CFS_TRY(comp.plain->finish());
  }
  const std::uint64_t tar_size = tar_hash.size();
  const auto diff_id = tar_hash.finish();
  if (diff_id != layer.diff_id)
    return fail(Errc::kDigestMismatch, what + ": its stream rebuilds a tar of sha256 " +
                                           diff_id.str() + ", not the diff_id");
  out.descriptor.media_type = std::string(oci::layer_media_type(compression));
  if (compression == oci::Compression::kNone) {
    out.fd = std::move(tar);
    out.descriptor.digest = diff_id;
    out.descriptor.size = tar_size;
  } else {
    out.descriptor.digest = blob_hash.finish();
    out.descriptor.size = written;
  }
  return out;
}

// The layer's blob exactly as the manifest names it: the kept blob, or the rebuilt tar of an
// uncompressed layer.
Result<LayerBlob> original_layer(const repo::Repository& repo, const ocirepo::StoredLayer& layer) {
  if (!layer.blob_stream) {
    CFS_ASSIGN(auto out, build_layer(repo, layer, oci::Compression::kNone, false));
    out.descriptor = layer.blob;
    return out;
  }
  const std::string what = "kept blob " + layer.blob.digest.str();
  LayerBlob out;
  CFS_ASSIGN(out.fd, temp_file(repo));
  CFS_ASSIGN_CTX(auto n,
                 repo::cat_stream(repo, ocirepo::blob_stream_name(layer.blob.digest), out.fd.get()),
                 what);
  oci::ContentHasher hash;
  AlignedBuffer aligned;
  const std::span<std::byte> buf = aligned.get(kChunk);
  for (std::uint64_t off = 0; off < n;) {
    CFS_ASSIGN(auto got, sys::pread_full(out.fd.get(), buf, off));
    if (got == 0) break;
    hash.update(std::span(buf.data(), got));
    off += got;
  }
  if (auto d = hash.finish(); d != layer.blob.digest || n != layer.blob.size)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the repository holds {} ({} bytes), the manifest says {} bytes",
                            what, d.str(), n, layer.blob.size));
  out.descriptor = layer.blob;
  return out;
}

class FdSource final : public BlobSource {
 public:
  FdSource(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
    return sys::pread_full(fd_, buf, offset);
  }

 private:
  int fd_;
  std::uint64_t size_;
};

nlohmann::json descriptor_json(const oci::Descriptor& d) {
  nlohmann::json j = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

bool uncompressed(std::string_view media_type) {
  return media_type == oci::layer_media_type(oci::Compression::kNone) ||
         media_type == oci::kDockerLayer;
}

// Whether a file's bytes can be fetched alone from layer i as it will be pushed: uncompressed
// layers, and zstd:chunked ones (only when cfs writes them: a kept zstd blob may be plain).
bool range_fetchable(const ocirepo::StoredImage& img, std::size_t i, bool original,
                     const RepoPushOptions& o) {
  if (original) return uncompressed(img.layers[i].blob.media_type);
  return o.compression == oci::Compression::kNone ||
         (o.compression == oci::Compression::kZstd && o.zstd_chunked);
}

// Where each object of layer `i` is in the blob as pushed.
Status locate_objects(const repo::Repository& repo, const ocirepo::StoredLayer& layer,
                      std::uint32_t i, const LayerBlob& blob,
                      std::vector<ocirepo::ObjectLocation>& out) {
  CFS_ASSIGN(auto objects, ocirepo::layer_tar_objects(repo, layer));
  if (uncompressed(blob.descriptor.media_type)) {
    for (const auto& o : objects)
      out.push_back({o.digest, i, o.tar_offset, o.size, o.size, ocirepo::ObjectCompression::kNone});
    return {};
  }
  // Both lists are in tar order; every object is a regular file with data, so a frame.
  auto f = blob.chunked.begin();
  for (const auto& o : objects) {
    while (f != blob.chunked.end() && f->tar_offset < o.tar_offset) ++f;
    if (f == blob.chunked.end() || f->tar_offset != o.tar_offset || f->size != o.size)
      return fail(Errc::kCorruptImage,
                  fmt::format("layer {}: object {} at tar byte {} has no zstd:chunked frame",
                              layer.diff_id.str(), o.digest.hex(), o.tar_offset));
    out.push_back({o.digest, i, f->offset, f->length, o.size, ocirepo::ObjectCompression::kZstd});
  }
  return {};
}

// After the image manifest: the merged EROFS and the index, attached to it.
Status attach_lazy_metadata(Client& client, const repo::Repository& repo,
                            const ocirepo::StoredImage& img, const Reference& dest, bool lazy,
                            ocirepo::ObjectIndex& index, RepoPush& result) {
  if (!lazy) return {};
  index.image = *img.image;
  CFS_ASSIGN(auto fd, repo.open_object(*img.image));
  CFS_ASSIGN(auto erofs, sys::read_fd(fd.get(), repo.object_path(*img.image)));
  CFS_TRY_CTX(ocirepo::keep_image_objects(index.objects, std::as_bytes(std::span(erofs))),
              repo.object_path(*img.image));
  ocirepo::sort_and_dedup(index.objects);
  // What the loader opens for each ELF object, resolved in the merged image the mount serves
  // (the artifact's config): a lazy mount then asks for a program's whole library closure at
  // its first open, instead of learning it one fetched library at a time (docs/lazy.md).
  LoaderGraph graph;
  {
    CFS_ASSIGN_CTX(auto image, erofs::Image::from_bytes(std::as_bytes(std::span(erofs))),
                   repo.object_path(*img.image));
    LoaderGraphStats stats;
    graph = build_loader_graph(
        image, index, [&](const verity::Digest& d) { return repo.open_object(d); }, &stats);
    result.elf_objects = stats.elf;
    result.loads = graph.edges();
  }
  CFS_ASSIGN(result.lazy_metadata,
             push_lazy_metadata(client, dest.with_digest(result.manifest.str()), erofs, index,
                                &graph, std::string_view(img.config.raw)));
  result.indexed_objects = index.objects.size();
  return {};
}

}  // namespace

Result<RepoPush> push_from_repository(Client& client, const repo::Repository& repo,
                                      std::string_view name, const Reference& dest,
                                      const RepoPushOptions& options) {
  if (options.zstd_chunked && options.compression != oci::Compression::kZstd)
    return fail(Errc::kInvalidInput, "zstd:chunked layers are zstd layers");
  CFS_ASSIGN(auto img, ocirepo::open_image(repo, name));
  const bool original =
      !options.compression && std::all_of(img.layers.begin(), img.layers.end(),
                                          [](const auto& l) { return l.has_original_blob(); });
  bool all_fetchable = true;
  for (std::size_t i = 0; i < img.layers.size(); ++i)
    all_fetchable = all_fetchable && range_fetchable(img, i, original, options);
  const bool lazy = options.lazy_metadata.value_or(all_fetchable);
  if (lazy && !all_fetchable)
    return fail(Errc::kInvalidInput, std::string(name) +
                                         ": lazy metadata needs layers a file can be fetched from: "
                                         "--compression=none or zstd-chunked");
  if (lazy && !img.image)
    return fail(Errc::kObjectMissing, std::string(name) + ": no merged image (" +
                                          std::string(ocirepo::kImageRefV1) + ") to publish");
  RepoPush result;
  // The config, byte for byte (its digest is what the diff_ids hang on).
  {
    const auto bytes = std::as_bytes(std::span(img.config.raw));
    MemoryBlobSource src(bytes);
    CFS_ASSIGN(auto o, client.push_blob(dest, img.manifest.config.digest, src));
    ++(o == PushOutcome::kExisted ? result.blobs_existed : result.blobs_uploaded);
  }
  const oci::Compression compression = options.compression.value_or(oci::Compression::kGzip);
  std::vector<Result<std::pair<oci::Descriptor, PushOutcome>>> layers(
      img.layers.size(), fail(Errc::kInvalidInput, "not pushed"));
  std::vector<std::vector<ocirepo::ObjectLocation>> located(img.layers.size());
  parallel_for(img.layers.size(), options.jobs, [&](std::size_t i) {
    layers[i] = [&]() -> Result<std::pair<oci::Descriptor, PushOutcome>> {
      CFS_ASSIGN(auto blob,
                 original ? original_layer(repo, img.layers[i])
                          : build_layer(repo, img.layers[i], compression, options.zstd_chunked));
      FdSource src(blob.fd.get(), blob.descriptor.size);
      CFS_ASSIGN(auto o, client.push_blob(dest, blob.descriptor.digest, src));
      if (lazy)
        CFS_TRY(
            locate_objects(repo, img.layers[i], static_cast<std::uint32_t>(i), blob, located[i]));
      return std::make_pair(std::move(blob.descriptor), o);
    }();
  });
  nlohmann::json layer_json = nlohmann::json::array();
  ocirepo::ObjectIndex index;
  index.algorithm = repo.algorithm();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    auto& l = layers[i];
    if (!l) return fail(std::move(l).error());
    ++(l->second == PushOutcome::kExisted ? result.blobs_existed : result.blobs_uploaded);
    const oci::Descriptor& d = l->first;
    layer_json.push_back(descriptor_json(d));
    index.layers.push_back({d.digest, img.layers[i].diff_id, d.size, d.media_type, lazy});
    index.objects.insert(index.objects.end(), located[i].begin(), located[i].end());
  }
  result.manifests = 1;
  if (original) {
    CFS_ASSIGN(result.manifest,
               client.put_manifest(dest, img.manifest.media_type, img.manifest.raw));
    result.media_type = img.manifest.media_type;
    CFS_TRY(attach_lazy_metadata(client, repo, img, dest, lazy, index, result));
    return result;
  }
  // Docker's config media type names the same JSON; an OCI manifest names it as OCI's.
  oci::Descriptor config = img.manifest.config;
  if (config.media_type == oci::kDockerConfig) config.media_type = std::string(oci::kOciConfig);
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"mediaType", oci::kOciManifest},
                             {"config", descriptor_json(config)},
                             {"layers", layer_json}};
  if (!img.manifest.annotations.empty()) manifest["annotations"] = img.manifest.annotations;
  const std::string bytes = manifest.dump();
  CFS_ASSIGN(result.manifest, client.put_manifest(dest, oci::kOciManifest, bytes));
  result.media_type = std::string(oci::kOciManifest);
  CFS_TRY(attach_lazy_metadata(client, repo, img, dest, lazy, index, result));
  return result;
}

}  // namespace cfs::registry
