// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/repo_push.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "cfs/oci/compress.h"
#include "cfs/ocirepo/images.h"
#include "cfs/ocirepo/names.h"
#include "cfs/registry/pull.h"
#include "cfs/repo/streams.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"

namespace cfs::registry {
namespace {

constexpr std::size_t kChunk = 1u << 20;

struct LayerBlob {
  UniqueFd fd;  // the blob to send (unnamed file)
  oci::Descriptor descriptor;
};

Result<UniqueFd> temp_file(const repo::Repository& repo) {
  // Below the repository: same filesystem as the objects the tar is rebuilt from, and an
  // unnamed file leaves nothing behind whatever happens.
  CFS_TRY(DownloadDir::open(repo.path() + "/" + std::string(kDownloadsDir)));
  return sys::openat(repo.fd(), std::string(kDownloadsDir), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
}

// Rebuilds the layer tar from its stream, checks it against the diff_id, and compresses it.
Result<LayerBlob> build_layer(const repo::Repository& repo, const ocirepo::StoredLayer& layer,
                              oci::Compression compression) {
  const std::string what = "layer " + layer.diff_id.str();
  CFS_ASSIGN(auto tar, temp_file(repo));
  CFS_TRY(repo::cat_stream(repo, ocirepo::layer_stream_name(layer.diff_id), tar.get()));
  LayerBlob out;
  if (compression != oci::Compression::kNone) {
    CFS_ASSIGN(out.fd, temp_file(repo));
  }
  oci::ContentHasher tar_hash, blob_hash;
  std::uint64_t written = 0;
  auto comp = oci::compressor(compression, [&](std::span<const std::byte> b) -> Status {
    blob_hash.update(b);
    CFS_TRY(sys::write_all(out.fd.get(), b));
    written += b.size();
    return {};
  });
  std::vector<std::byte> buf(kChunk);
  for (std::uint64_t off = 0;;) {
    CFS_ASSIGN(auto n, sys::pread_full(tar.get(), buf, off));
    if (n == 0) break;
    const auto piece = std::span(buf.data(), n);
    tar_hash.update(piece);
    if (compression != oci::Compression::kNone) CFS_TRY(comp->write(piece));
    off += n;
  }
  CFS_TRY(comp->finish());
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
    CFS_ASSIGN(auto out, build_layer(repo, layer, oci::Compression::kNone));
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
  std::vector<std::byte> buf(kChunk);
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
  return {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
}

}  // namespace

Result<LayoutPush> push_from_repository(Client& client, const repo::Repository& repo,
                                        std::string_view name, const Reference& dest,
                                        const RepoPushOptions& options) {
  CFS_ASSIGN(auto img, ocirepo::open_image(repo, name));
  LayoutPush result;
  // The config, byte for byte (its digest is what the diff_ids hang on).
  {
    const auto bytes = std::as_bytes(std::span(img.config.raw));
    MemoryBlobSource src(bytes);
    CFS_ASSIGN(auto o, client.push_blob(dest, img.manifest.config.digest, src));
    ++(o == PushOutcome::kExisted ? result.blobs_existed : result.blobs_uploaded);
  }
  const bool original =
      !options.compression && std::all_of(img.layers.begin(), img.layers.end(),
                                          [](const auto& l) { return l.has_original_blob(); });
  const oci::Compression compression = options.compression.value_or(oci::Compression::kGzip);
  std::vector<Result<std::pair<oci::Descriptor, PushOutcome>>> layers(
      img.layers.size(), fail(Errc::kInvalidInput, "not pushed"));
  parallel_for(img.layers.size(), options.jobs, [&](std::size_t i) {
    layers[i] = [&]() -> Result<std::pair<oci::Descriptor, PushOutcome>> {
      CFS_ASSIGN(auto blob, original ? original_layer(repo, img.layers[i])
                                     : build_layer(repo, img.layers[i], compression));
      FdSource src(blob.fd.get(), blob.descriptor.size);
      CFS_ASSIGN(auto o, client.push_blob(dest, blob.descriptor.digest, src));
      return std::make_pair(std::move(blob.descriptor), o);
    }();
  });
  nlohmann::json layer_json = nlohmann::json::array();
  for (auto& l : layers) {
    if (!l) return fail(std::move(l).error());
    ++(l->second == PushOutcome::kExisted ? result.blobs_existed : result.blobs_uploaded);
    layer_json.push_back(descriptor_json(l->first));
  }
  result.manifests = 1;
  if (original) {
    CFS_ASSIGN(result.manifest,
               client.put_manifest(dest, img.manifest.media_type, img.manifest.raw));
    result.media_type = img.manifest.media_type;
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
  return result;
}

}  // namespace cfs::registry
