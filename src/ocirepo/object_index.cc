// SPDX-License-Identifier: Apache-2.0
#include "cfs/ocirepo/object_index.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "cfs/oci/layer_stream.h"
#include "cfs/splitstream/format.h"
#include "cfs/tree/object_name.h"
#include "store.h"

namespace cfs::ocirepo {
namespace {

using Json = nlohmann::json;

tl::unexpected<Error> bad(const std::string& what, const std::string& field,
                          const std::string& why) {
  return fail(Errc::kInvalidInput, fmt::format("{}: {}: {}", what, field, why));
}

// A JSON object whose members must be exactly `allowed` (all required).
Status check_members(const Json& j, std::initializer_list<std::string_view> allowed,
                     const std::string& what, const std::string& field) {
  if (!j.is_object()) return bad(what, field, "not an object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end())
      return bad(what, field.empty() ? it.key() : field + "." + it.key(), "unknown member");
  for (auto name : allowed)
    if (!j.contains(name))
      return bad(what, field.empty() ? std::string(name) : field + "." + std::string(name),
                 "missing");
  return {};
}

std::string join(const std::string& field, std::string_view member) {
  return field.empty() ? std::string(member) : field + "." + std::string(member);
}

Result<std::uint64_t> get_u64(const Json& j, std::string_view member, const std::string& what,
                              const std::string& field) {
  const Json& v = j.at(std::string(member));
  if (!v.is_number_unsigned()) return bad(what, join(field, member), "not an unsigned integer");
  return v.get<std::uint64_t>();
}

Result<std::string> get_string(const Json& j, std::string_view member, const std::string& what,
                               const std::string& field) {
  const Json& v = j.at(std::string(member));
  if (!v.is_string()) return bad(what, join(field, member), "not a string");
  return v.get<std::string>();
}

Result<verity::Digest> get_digest(const Json& j, std::string_view member, verity::HashAlg alg,
                                  const std::string& what, const std::string& field) {
  CFS_ASSIGN(auto hex, get_string(j, member, what, field));
  auto d = tree::parse_digest_hex(hex, alg);
  if (!d || d->hex() != hex)
    return bad(
        what, join(field, member),
        fmt::format("'{}' is not {} lowercase hex digits", hex, 2 * verity::digest_size(alg)));
  return *d;
}

Result<oci::ContentDigest> get_content_digest(const Json& j, std::string_view member,
                                              const std::string& what, const std::string& field) {
  CFS_ASSIGN(auto text, get_string(j, member, what, field));
  auto d = oci::ContentDigest::parse(text);
  if (!d) return bad(what, join(field, member), d.error().message());
  return *d;
}

Result<IndexedLayer> parse_layer(const Json& j, const std::string& what, const std::string& f) {
  CFS_TRY(check_members(j, {"digest", "diffId", "size", "mediaType", "rangeFetchable"}, what, f));
  IndexedLayer l;
  CFS_ASSIGN(l.digest, get_content_digest(j, "digest", what, f));
  CFS_ASSIGN(l.diff_id, get_content_digest(j, "diffId", what, f));
  CFS_ASSIGN(l.size, get_u64(j, "size", what, f));
  CFS_ASSIGN(l.media_type, get_string(j, "mediaType", what, f));
  const Json& rf = j.at("rangeFetchable");
  if (!rf.is_boolean()) return bad(what, f + ".rangeFetchable", "not a boolean");
  l.range_fetchable = rf.get<bool>();
  return l;
}

Result<ObjectLocation> parse_object(const Json& j, const ObjectIndex& index,
                                    const std::string& what, const std::string& f) {
  CFS_TRY(
      check_members(j, {"digest", "layer", "offset", "length", "size", "compression"}, what, f));
  ObjectLocation o;
  CFS_ASSIGN(o.digest, get_digest(j, "digest", index.algorithm, what, f));
  CFS_ASSIGN(auto layer, get_u64(j, "layer", what, f));
  if (layer >= index.layers.size())
    return bad(what, f + ".layer",
               fmt::format("{} is not below the {} layers", layer, index.layers.size()));
  o.layer = static_cast<std::uint32_t>(layer);
  const IndexedLayer& l = index.layers[o.layer];
  if (!l.range_fetchable)
    return bad(what, f + ".layer", fmt::format("layer {} is not range-fetchable", layer));
  CFS_ASSIGN(o.offset, get_u64(j, "offset", what, f));
  CFS_ASSIGN(o.length, get_u64(j, "length", what, f));
  CFS_ASSIGN(o.size, get_u64(j, "size", what, f));
  if (o.length == 0 || o.size == 0) return bad(what, f, "an object of zero bytes");
  if (o.offset > l.size || o.length > l.size - o.offset)
    return bad(what, f,
               fmt::format("bytes {}+{} are outside layer {}'s {} bytes", o.offset, o.length, layer,
                           l.size));
  CFS_ASSIGN(auto comp, get_string(j, "compression", what, f));
  if (comp == "none") {
    o.compression = ObjectCompression::kNone;
    if (o.length != o.size)
      return bad(what, f,
                 fmt::format("uncompressed, but length {} is not size {}", o.length, o.size));
  } else if (comp == "zstd") {
    o.compression = ObjectCompression::kZstd;
  } else {
    return bad(what, f + ".compression", "'" + comp + "' is neither none nor zstd");
  }
  return o;
}

bool digest_less(const ObjectLocation& a, const ObjectLocation& b) { return a.digest < b.digest; }

}  // namespace

std::string_view compression_name(ObjectCompression c) noexcept {
  return c == ObjectCompression::kZstd ? "zstd" : "none";
}

const ObjectLocation* ObjectIndex::find(const verity::Digest& d) const noexcept {
  ObjectLocation key;
  key.digest = d;
  auto it = std::lower_bound(objects.begin(), objects.end(), key, digest_less);
  return it != objects.end() && it->digest == d ? &*it : nullptr;
}

void sort_and_dedup(std::vector<ObjectLocation>& objects) {
  std::stable_sort(objects.begin(), objects.end(), digest_less);
  auto same = [](const ObjectLocation& a, const ObjectLocation& b) { return a.digest == b.digest; };
  objects.erase(std::unique(objects.begin(), objects.end(), same), objects.end());
}

std::string encode_object_index(const ObjectIndex& index) {
  // Written by hand rather than through nlohmann::json's sorted maps: the order of the header
  // comment, and no per-object allocation for a document of 10^5 objects.
  std::string out = fmt::format(
      "{{\"mediaType\":\"{}\",\"version\":{},\"algorithm\":\"{}\",\"image\":\"{}\",\"layers\":[",
      kObjectIndexMediaType, kObjectIndexVersion, verity::hash_alg_name(index.algorithm),
      index.image.hex());
  for (std::size_t i = 0; i < index.layers.size(); ++i) {
    const auto& l = index.layers[i];
    out += fmt::format(
        "{}{{\"digest\":\"{}\",\"diffId\":\"{}\",\"size\":{},\"mediaType\":{},"
        "\"rangeFetchable\":{}}}",
        i ? "," : "", l.digest.str(), l.diff_id.str(), l.size, Json(l.media_type).dump(),
        l.range_fetchable ? "true" : "false");
  }
  out += "],\"objects\":[";
  for (std::size_t i = 0; i < index.objects.size(); ++i) {
    const auto& o = index.objects[i];
    out += fmt::format(
        "{}{{\"digest\":\"{}\",\"layer\":{},\"offset\":{},\"length\":{},\"size\":{},"
        "\"compression\":\"{}\"}}",
        i ? "," : "", o.digest.hex(), o.layer, o.offset, o.length, o.size,
        compression_name(o.compression));
  }
  out += "]}";
  return out;
}

Result<ObjectIndex> parse_object_index(std::string_view text, const std::string& what) {
  if (text.size() > kMaxObjectIndexSize)
    return fail(Errc::kInvalidInput, fmt::format("{}: {} bytes is larger than the {} allowed", what,
                                                 text.size(), kMaxObjectIndexSize));
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::kInvalidInput, what + ": not valid JSON");
  CFS_TRY(check_members(j, {"mediaType", "version", "algorithm", "image", "layers", "objects"},
                        what, ""));
  CFS_ASSIGN(auto media_type, get_string(j, "mediaType", what, ""));
  if (media_type != kObjectIndexMediaType)
    return bad(what, "mediaType",
               "'" + media_type + "' is not " + std::string(kObjectIndexMediaType));
  CFS_ASSIGN(auto version, get_u64(j, "version", what, ""));
  if (version != kObjectIndexVersion)
    return fail(Errc::kUnsupportedFeature, fmt::format("{}: version: {} is not the supported {}",
                                                       what, version, kObjectIndexVersion));
  ObjectIndex index;
  CFS_ASSIGN(auto alg, get_string(j, "algorithm", what, ""));
  auto a = verity::parse_hash_alg(alg);
  if (!a) return bad(what, "algorithm", "'" + alg + "' is neither sha256 nor sha512");
  index.algorithm = *a;
  CFS_ASSIGN(index.image, get_digest(j, "image", index.algorithm, what, ""));

  const Json& layers = j.at("layers");
  if (!layers.is_array()) return bad(what, "layers", "not an array");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    CFS_ASSIGN(auto l, parse_layer(layers[i], what, fmt::format("layers[{}]", i)));
    index.layers.push_back(std::move(l));
  }
  const Json& objects = j.at("objects");
  if (!objects.is_array()) return bad(what, "objects", "not an array");
  index.objects.reserve(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const std::string f = fmt::format("objects[{}]", i);
    CFS_ASSIGN(auto o, parse_object(objects[i], index, what, f));
    if (!index.objects.empty() && !(index.objects.back().digest < o.digest))
      return bad(what, f + ".digest", "not sorted after the previous object (or repeated)");
    index.objects.push_back(std::move(o));
  }
  return index;
}

Result<std::vector<TarObject>> layer_tar_objects(const repo::Repository& repo,
                                                 const StoredLayer& layer) {
  const std::string what = "layer " + layer.diff_id.str();
  CFS_ASSIGN(auto reader, detail::open_stream(repo, layer.stream, splitstream::kOciLayer, what));
  oci::LayerReader lr(reader, what);
  std::vector<TarObject> out;
  for (;;) {
    CFS_ASSIGN(auto e, lr.next());
    if (!e) break;
    if (e->object) out.push_back({*e->object, e->data_offset, e->tar.size});
  }
  return out;
}

}  // namespace cfs::ocirepo
