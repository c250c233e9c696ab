// SPDX-License-Identifier: Apache-2.0
// Stored OCI images read back (see cfs/ocirepo/images.h).
#include "cfs/ocirepo/images.h"

#include <fmt/format.h>

#include "cfs/erofs/writer.h"
#include "cfs/oci/layer_stream.h"
#include "cfs/ocirepo/names.h"
#include "cfs/splitstream/format.h"
#include "ocirepo/store.h"

namespace cfs::ocirepo {

namespace {

/// The manifest stream NAME designates: "refs/oci/<enc>" for a tag, the content id for a
/// manifest digest.
Result<std::string> manifest_lookup(std::string_view name) {
  if (name.starts_with("sha256:") || name.starts_with("sha512:")) {
    auto d = oci::ContentDigest::parse(name);
    if (d) return manifest_stream_name(*d);
  }
  CFS_ASSIGN(std::string ref, tag_ref(name));
  return "refs/" + ref;
}

}  // namespace

Result<StoredImage> open_image(const repo::Repository& repo, std::string_view name) {
  CFS_ASSIGN(std::string lookup, manifest_lookup(name));
  auto found = repo.resolve_stream(lookup);
  if (!found) {
    if (found.error().is(Errc::kObjectMissing) || found.error().is_errno(ENOENT))
      return fail(Errc::kObjectMissing, fmt::format("no OCI image '{}' in {}", name, repo.path()));
    return fail(std::move(found).error());
  }
  StoredImage img;
  img.manifest_stream = found->first;
  img.manifest_stream_name = found->second;
  std::string what = "stream " + img.manifest_stream_name;
  CFS_ASSIGN(auto mr,
             detail::open_stream(repo, img.manifest_stream, splitstream::kOciManifest, what));
  CFS_ASSIGN(std::string mraw, detail::read_small_stream(repo, mr, oci::kMaxManifestSize, what));
  CFS_ASSIGN(img.manifest, oci::parse_manifest(std::move(mraw), what));
  std::string config_ref = std::string(kConfigRefPrefix) + img.manifest.config.digest.str();
  auto cs = mr.named_ref(config_ref);
  if (!cs) return fail(Errc::kCorruptImage, fmt::format("{}: no named ref '{}'", what, config_ref));
  img.config_stream = *cs;
  std::string cwhat = fmt::format("config stream of {} ({})", name, cs->hex());
  CFS_ASSIGN(auto cr, detail::open_stream(repo, img.config_stream, splitstream::kOciConfig, cwhat));
  CFS_ASSIGN(std::string craw, detail::read_small_stream(repo, cr, oci::kMaxConfigSize, cwhat));
  CFS_ASSIGN(img.config, oci::parse_config(std::move(craw), cwhat));
  if (img.config.diff_ids.size() != img.manifest.layers.size())
    return fail(Errc::kCorruptImage,
                fmt::format("{}: the manifest has {} layers, the config {} diff_ids", what,
                            img.manifest.layers.size(), img.config.diff_ids.size()));
  for (std::size_t i = 0; i < img.config.diff_ids.size(); ++i) {
    const auto& diff_id = img.config.diff_ids[i];
    auto ls = cr.named_ref(diff_id.str());
    if (!ls)
      return fail(Errc::kCorruptImage,
                  fmt::format("{}: no named ref for layer {}", cwhat, diff_id.str()));
    StoredLayer l{diff_id, *ls, img.manifest.layers[i], std::nullopt};
    if (l.blob.digest != diff_id) l.blob_stream = mr.named_ref(l.blob.digest.str());
    img.layers.push_back(std::move(l));
  }
  img.image = cr.named_ref(kImageRefV1);
  return img;
}

Result<std::vector<TaggedImage>> list_tags(const repo::Repository& repo) {
  CFS_ASSIGN(auto refs, repo.list_refs(repo::Kind::kStream));
  std::vector<TaggedImage> out;
  std::string prefix = std::string(kTagDir) + "/";
  for (const auto& r : refs) {
    if (!r.name.starts_with(prefix)) continue;
    std::string_view enc = std::string_view(r.name).substr(prefix.size());
    if (enc.find('/') != std::string_view::npos) continue;  // not written by a tag
    CFS_ASSIGN(std::string tag, decode_tag(enc));
    out.push_back({std::move(tag), r.target});
  }
  return out;
}

Status tag_image(repo::Repository& repo, std::string_view image, std::string_view tag) {
  CFS_ASSIGN(std::string ref, tag_ref(tag));
  CFS_ASSIGN(StoredImage img, open_image(repo, image));
  return repo.set_ref(repo::Kind::kStream, ref, img.manifest_stream_name);
}

Status untag_image(repo::Repository& repo, std::string_view tag) {
  CFS_ASSIGN(std::string ref, tag_ref(tag));
  auto st = repo.remove_ref(repo::Kind::kStream, ref);
  // remove_ref() names the encoded ref ('oci/docker:%2F%2F...'): name the tag as given.
  if (!st && (st.error().is(Errc::kObjectMissing) || st.error().is_errno(ENOENT)))
    return fail(Errc::kObjectMissing, fmt::format("no OCI tag '{}' in {}", tag, repo.path()));
  return st;
}

Result<Tree> merged_tree(const repo::Repository& repo, const StoredImage& image,
                         const oci::MergeOptions& options) {
  oci::Merger merger(options);
  for (std::size_t i = 0; i < image.layers.size(); ++i) {
    std::string layer = fmt::format("{} ({})", i, image.layers[i].diff_id.str());
    std::string what = "layer " + layer;
    CFS_ASSIGN(auto reader,
               detail::open_stream(repo, image.layers[i].stream, splitstream::kOciLayer, what));
    oci::LayerReader lr(reader, what);
    CFS_TRY(merger.apply_layer(lr, layer));
  }
  return merger.finish();
}

Result<verity::Digest> compute_image_id(const repo::Repository& repo, const StoredImage& image,
                                        const oci::MergeOptions& options) {
  CFS_ASSIGN(Tree tree, merged_tree(repo, image, options));
  erofs::WriteOptions wo;
  wo.min_version = wo.max_version = 1;
  wo.hash = repo.algorithm();
  CFS_ASSIGN(erofs::WriteResult r, erofs::write_image(tree, wo, -1));
  return r.digest;
}

namespace {

/// The sha256 (or `alg`) and length of the byte stream a splitstream stores.
Result<std::pair<oci::ContentDigest, std::uint64_t>> hash_stream(const repo::Repository& repo,
                                                                 const verity::Digest& stream,
                                                                 std::uint64_t content_type,
                                                                 const std::string& alg,
                                                                 const std::string& what) {
  CFS_ASSIGN(auto reader, detail::open_stream(repo, stream, content_type, what));
  oci::ContentHasher h(alg);
  CFS_TRY_CTX(reader.reassemble([&](const verity::Digest& d) { return repo.open_object(d); },
                                [&](std::span<const std::byte> b) -> Status {
                                  h.update(b);
                                  return {};
                                }),
              what);
  const std::uint64_t size = h.size();
  return std::make_pair(h.finish(), size);
}

/// Reassembles a layer stream and checks its sha256 against the diff_id.
Status check_layer(const repo::Repository& repo, const StoredLayer& l, const std::string& what) {
  CFS_ASSIGN(auto got,
             hash_stream(repo, l.stream, splitstream::kOciLayer, l.diff_id.algorithm, what));
  if (got.first != l.diff_id)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the tar is {}, not its diff_id", what, got.first.str()));
  return {};
}

/// Reassembles a kept blob's stream and checks it against the manifest's descriptor.
Status check_blob(const repo::Repository& repo, const StoredLayer& l, const std::string& what) {
  CFS_ASSIGN(auto got, hash_stream(repo, *l.blob_stream, splitstream::kOciBlob,
                                   l.blob.digest.algorithm, what));
  if (got.first != l.blob.digest || got.second != l.blob.size)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the kept blob is {} ({} bytes), the manifest says {} ({} bytes)",
                            what, got.first.str(), got.second, l.blob.digest.str(), l.blob.size));
  return {};
}

void check_image(const repo::Repository& repo, const std::string& tag, OciFsckReport& report) {
  auto add = [&](const std::string& msg) { report.errors.push_back(tag + ": " + msg); };
  auto img = open_image(repo, tag);
  if (!img) return add(img.error().message());
  ++report.images;
  std::string expect = manifest_stream_name(img->manifest.digest);
  if (img->manifest_stream_name != expect)
    add(fmt::format("the manifest is {}, its stream is named {}", img->manifest.digest.str(),
                    img->manifest_stream_name));
  if (img->config.digest != img->manifest.config.digest ||
      img->config.raw.size() != img->manifest.config.size)
    add(fmt::format("the config is {} ({} bytes), the manifest says {} ({} bytes)",
                    img->config.digest.str(), img->config.raw.size(),
                    img->manifest.config.digest.str(), img->manifest.config.size));
  for (std::size_t i = 0; i < img->layers.size(); ++i) {
    ++report.layers;
    auto st = check_layer(repo, img->layers[i],
                          fmt::format("layer {} ({})", i, img->layers[i].diff_id.str()));
    if (!st) add(st.error().message());
    if (img->layers[i].blob_stream) {
      st = check_blob(repo, img->layers[i],
                      fmt::format("blob of layer {} ({})", i, img->layers[i].blob.digest.str()));
      if (!st) add(st.error().message());
    }
  }
  if (!img->image) return add("no merged image linked (composefs.image.v1)");
  if (!repo.has_object(*img->image))
    return add(fmt::format("the merged image {} is missing", img->image->hex()));
  auto id = compute_image_id(repo, *img);
  if (!id) return add(id.error().message());
  if (*id != *img->image)
    add(fmt::format("the merged image is linked as {}, the layers give {}", img->image->hex(),
                    id->hex()));
}

}  // namespace

Result<OciFsckReport> fsck(const repo::Repository& repo, const std::optional<std::string>& tag) {
  OciFsckReport report;
  if (tag) {
    check_image(repo, *tag, report);
    return report;
  }
  CFS_ASSIGN(auto tags, list_tags(repo));
  for (const auto& t : tags) check_image(repo, t.tag, report);
  return report;
}

}  // namespace cfs::ocirepo
