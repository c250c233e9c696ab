// SPDX-License-Identifier: Apache-2.0
#include "cfs/ocirepo/object_index.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cfs/erofs/format.h"
#include "cfs/erofs/reader.h"
#include "cfs/oci/layer_stream.h"
#include "cfs/splitstream/format.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/hex.h"
#include "store.h"

namespace cfs::ocirepo {
namespace {

using Json = nlohmann::json;

tl::unexpected<Error> bad(const std::string& what, const std::string& field,
                          const std::string& why) {
  return fail(Errc::kInvalidInput, fmt::format("{}: {}: {}", what, field, why));
}

std::string join(const std::string& field, std::string_view member) {
  return field.empty() ? std::string(member) : field + "." + std::string(member);
}

bool digest_less(const ObjectLocation& a, const ObjectLocation& b) { return a.digest < b.digest; }

// The index reader. A lazy mount parses the index (1.1 MB, 5,189 objects for the Debian image)
// before it can serve, so it is read with simdjson's On Demand API straight into the final table
// (nlohmann::json's DOM took 10-12 ms: its lexer reads a character at a time, and every object
// became a map of six members). simdjson checks the JSON (UTF-8, escapes, control characters,
// numbers, structure); this checks the document type on top: a wrong type, an unknown, repeated
// (On Demand does not refuse repeated keys) or missing member names its field. Members that
// depend on others (the algorithm, the layers) are checked once the document is read, so their
// order is free.
// A field's name ("objects[3].offset"), made only when an error names it: formatting the name
// of each of 5,000 objects' members cost more than reading them.
struct Field {
  const Field* parent = nullptr;
  std::string_view member;                  // a member of the parent object, or
  std::size_t element = std::string::npos;  // an element of the parent array
  std::string str() const {
    if (!parent) return std::string(member);
    std::string p = parent->str();
    if (element != std::string::npos) return p + fmt::format("[{}]", element);
    return join(p, member);
  }
};

class IndexReader {
 public:
  explicit IndexReader(const std::string& what) : what_(what) {}

  Result<ObjectIndex> read(std::string_view text, std::size_t readable) {
    static_assert(kObjectIndexPadding >= simdjson::SIMDJSON_PADDING);
    // simdjson reads up to its padding past the end (what is there does not matter); a
    // document without that much readable after it is copied into a padded buffer.
    std::optional<simdjson::padded_string> copy;
    simdjson::padded_string_view padded;
    if (readable >= text.size() + kObjectIndexPadding) {
      padded = simdjson::padded_string_view(text.data(), text.size(), readable);
    } else {
      copy.emplace(text);
      padded = *copy;
    }
    simdjson::ondemand::document doc;
    if (auto e = parser_.iterate(padded).get(doc)) return invalid(e);
    doc_ = &doc;
    base_ = padded.data();
    std::string_view media_type, alg_name, image_hex;
    std::uint64_t version = 0;
    const Field root;
    CFS_TRY(members(
        doc.get_object(), root, {"mediaType", "version", "algorithm", "image", "layers", "objects"},
        [&](std::size_t m, simdjson::ondemand::value v, const Field& f) -> Status {
          switch (m) {
            case 0:
              return string(v, f).map([&](std::string_view s) { media_type = s; });
            case 1:
              return number(v, f).map([&](std::uint64_t n) { version = n; });
            case 2:
              return string(v, f).map([&](std::string_view s) { alg_name = s; });
            case 3:
              return string(v, f).map([&](std::string_view s) { image_hex = s; });
            case 4:
              return array(
                  v, f, [&](simdjson::ondemand::value e, const Field& ef) { return layer(e, ef); });
            default:
              return array(v, f, [&](simdjson::ondemand::value e, const Field& ef) {
                return object(e, ef);
              });
          }
        }));
    // The root object read, the iterator is at the end unless more follows it.
    if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS)
      return invalid(simdjson::TRAILING_CONTENT);

    if (media_type != kObjectIndexMediaType)
      return bad(what_, "mediaType",
                 fmt::format("'{}' is not {}", media_type, kObjectIndexMediaType));
    if (version != kObjectIndexVersion)
      return fail(Errc::kUnsupportedFeature, fmt::format("{}: version: {} is not the supported {}",
                                                         what_, version, kObjectIndexVersion));
    auto a = verity::parse_hash_alg(alg_name);
    if (!a)
      return bad(what_, "algorithm", fmt::format("'{}' is neither sha256 nor sha512", alg_name));
    index_.algorithm = *a;
    CFS_ASSIGN(index_.image, digest(image_hex, [] { return std::string("image"); }));
    index_.objects.reserve(raw_.size());
    for (std::size_t i = 0; i < raw_.size(); ++i) {
      CFS_ASSIGN(auto o, check_object(raw_[i], i));
      if (!index_.objects.empty() && !(index_.objects.back().digest < o.digest))
        return bad(what_, fmt::format("objects[{}].digest", i),
                   "not sorted after the previous object (or repeated)");
      index_.objects.push_back(o);
    }
    return std::move(index_);
  }

 private:
  // An object's members as read (strings are views into the parser's buffer, which lives as
  // long as the reader); checked against the header and the layers once all is read.
  struct RawObject {
    std::string_view digest, compression;
    std::uint64_t layer = 0, offset = 0, length = 0, size = 0;
  };

  tl::unexpected<Error> invalid(simdjson::error_code e) const {
    // Where simdjson stopped, unless the error is about the whole document (it ended early).
    const char* at = nullptr;
    if (e != simdjson::INCOMPLETE_ARRAY_OR_OBJECT && doc_ &&
        doc_->current_location().get(at) == simdjson::SUCCESS)
      return fail(Errc::kInvalidInput, fmt::format("{}: not valid JSON (byte {}: {})", what_,
                                                   at - base_, simdjson::error_message(e)));
    return fail(Errc::kInvalidInput,
                fmt::format("{}: not valid JSON ({})", what_, simdjson::error_message(e)));
  }

  // A value of the wrong type names the field; any other error is the JSON's.
  tl::unexpected<Error> wrong(simdjson::error_code e, const Field& field,
                              std::string_view expected) const {
    if (e == simdjson::INCORRECT_TYPE)
      return bad(what_, field.str(), fmt::format("not {}", expected));
    return invalid(e);
  }

  // Reads a JSON object whose members must be exactly `allowed` (all required, once each);
  // `value(i, v, field)` reads the value of allowed[i].
  template <class F>
  Status members(simdjson::simdjson_result<simdjson::ondemand::object> obj, const Field& field,
                 std::initializer_list<std::string_view> allowed, F&& value) {
    if (obj.error()) return wrong(obj.error(), field, "an object");
    std::uint32_t seen = 0;
    for (auto result : obj) {
      if (result.error()) return invalid(result.error());
      simdjson::ondemand::field& member = result.value_unsafe();
      std::string_view key;
      if (auto e = member.unescaped_key().get(key)) return invalid(e);
      auto it = std::find(allowed.begin(), allowed.end(), key);
      const Field f{&field, key};
      if (it == allowed.end()) return bad(what_, f.str(), "unknown member");
      const auto m = static_cast<std::size_t>(it - allowed.begin());
      if (seen & (1u << m)) return bad(what_, f.str(), "repeated member");
      seen |= 1u << m;
      CFS_TRY(value(m, member.value(), f));
    }
    std::size_t m = 0;
    for (auto name : allowed)
      if (!(seen & (1u << m++))) return bad(what_, join(field.str(), name), "missing");
    return {};
  }

  // Reads a JSON array, `element(v, field)` reading each element.
  template <class F>
  Status array(simdjson::ondemand::value v, const Field& field, F&& element) {
    simdjson::ondemand::array a;
    if (auto e = v.get_array().get(a)) return wrong(e, field, "an array");
    std::size_t i = 0;
    for (auto e : a) {
      if (e.error()) return invalid(e.error());
      CFS_TRY(element(e.value_unsafe(), Field{&field, {}, i++}));
    }
    return {};
  }

  Result<std::string_view> string(simdjson::ondemand::value v, const Field& field) {
    std::string_view s;
    if (auto e = v.get_string().get(s)) return wrong(e, field, "a string");
    return s;
  }

  // An unsigned integer below 2^64: another type, or a number with a sign, fraction or exponent
  // or too large, is the wrong type; a malformed number is not JSON.
  Result<std::uint64_t> number(simdjson::ondemand::value v, const Field& field) {
    simdjson::ondemand::json_type type;
    if (auto e = v.type().get(type)) return invalid(e);
    if (type != simdjson::ondemand::json_type::number)
      return bad(what_, field.str(), "not an unsigned integer");
    std::uint64_t n;
    if (v.get_uint64().get(n) == simdjson::SUCCESS) return n;
    // get_uint64 refuses well-formed numbers and malformed ones alike; get_double (reading the
    // same token again: a failed get does not move on) reads every well-formed one.
    double d;
    if (auto e = v.get_double().get(d)) return invalid(e);
    return bad(what_, field.str(), "not an unsigned integer");
  }

  Result<bool> boolean(simdjson::ondemand::value v, const Field& field) {
    bool b;
    if (auto e = v.get_bool().get(b)) return wrong(e, field, "a boolean");
    return b;
  }

  Result<oci::ContentDigest> content_digest(simdjson::ondemand::value v, const Field& field) {
    CFS_ASSIGN(std::string_view text, string(v, field));
    auto d = oci::ContentDigest::parse(text);
    if (!d) return bad(what_, field.str(), d.error().message());
    return *d;
  }

  Status layer(simdjson::ondemand::value v, const Field& f) {
    IndexedLayer l;
    CFS_TRY(members(v.get_object(), f, {"digest", "diffId", "size", "mediaType", "rangeFetchable"},
                    [&](std::size_t m, simdjson::ondemand::value mv, const Field& field) -> Status {
                      switch (m) {
                        case 0:
                          return content_digest(mv, field).map(
                              [&](oci::ContentDigest d) { l.digest = std::move(d); });
                        case 1:
                          return content_digest(mv, field).map(
                              [&](oci::ContentDigest d) { l.diff_id = std::move(d); });
                        case 2:
                          return number(mv, field).map([&](std::uint64_t n) { l.size = n; });
                        case 3:
                          return string(mv, field).map(
                              [&](std::string_view s) { l.media_type = std::string(s); });
                        default:
                          return boolean(mv, field).map([&](bool b) { l.range_fetchable = b; });
                      }
                    }));
    if (index_.layers.size() == kMaxIndexLayers)
      return bad(what_, f.str(), fmt::format("more than the {} layers allowed", kMaxIndexLayers));
    index_.layers.push_back(std::move(l));
    return {};
  }

  Status object(simdjson::ondemand::value v, const Field& f) {
    RawObject o;
    CFS_TRY(
        members(v.get_object(), f, {"digest", "layer", "offset", "length", "size", "compression"},
                [&](std::size_t m, simdjson::ondemand::value mv, const Field& field) -> Status {
                  switch (m) {
                    case 0:
                      return string(mv, field).map([&](std::string_view s) { o.digest = s; });
                    case 1:
                      return number(mv, field).map([&](std::uint64_t n) { o.layer = n; });
                    case 2:
                      return number(mv, field).map([&](std::uint64_t n) { o.offset = n; });
                    case 3:
                      return number(mv, field).map([&](std::uint64_t n) { o.length = n; });
                    case 4:
                      return number(mv, field).map([&](std::uint64_t n) { o.size = n; });
                    default:
                      return string(mv, field).map([&](std::string_view s) { o.compression = s; });
                  }
                }));
    raw_.push_back(o);
    return {};
  }

  // `field()` names the field, made only for an error.
  template <class Name>
  Result<verity::Digest> digest(std::string_view hex, Name&& field) const {
    auto d = verity::Digest::zero(index_.algorithm);
    if (!decode_hex(hex, std::span(d.bytes.data(), d.size), /*lower_only=*/true))
      return bad(what_, field(),
                 fmt::format("'{}' is not {} lowercase hex digits", hex, 2 * d.size));
    return d;
  }

  // objects[i], whose name is made only for an error.
  Result<ObjectLocation> check_object(const RawObject& r, std::size_t i) const {
    const auto name = [i](std::string_view member = {}) {
      return fmt::format("objects[{}]{}", i, member);
    };
    ObjectLocation o;
    CFS_ASSIGN(o.digest, digest(r.digest, [&] { return name(".digest"); }));
    if (r.layer >= index_.layers.size())
      return bad(what_, name(".layer"),
                 fmt::format("{} is not below the {} layers", r.layer, index_.layers.size()));
    o.layer = static_cast<std::uint32_t>(r.layer);
    const IndexedLayer& l = index_.layers[o.layer];
    if (!l.range_fetchable)
      return bad(what_, name(".layer"), fmt::format("layer {} is not range-fetchable", r.layer));
    o.offset = r.offset;
    o.length = r.length;
    o.size = r.size;
    if (o.length == 0 || o.size == 0) return bad(what_, name(), "an object of zero bytes");
    if (o.offset > l.size || o.length > l.size - o.offset)
      return bad(what_, name(),
                 fmt::format("bytes {}+{} are outside layer {}'s {} bytes", o.offset, o.length,
                             r.layer, l.size));
    if (r.compression == "none") {
      o.compression = ObjectCompression::kNone;
      if (o.length != o.size)
        return bad(what_, name(),
                   fmt::format("uncompressed, but length {} is not size {}", o.length, o.size));
    } else if (r.compression == "zstd") {
      o.compression = ObjectCompression::kZstd;
    } else {
      return bad(what_, name(".compression"),
                 "'" + std::string(r.compression) + "' is neither none nor zstd");
    }
    return o;
  }

  const std::string& what_;
  simdjson::ondemand::parser parser_;
  simdjson::ondemand::document* doc_ = nullptr;  // for an error's position
  const char* base_ = nullptr;
  ObjectIndex index_;
  std::vector<RawObject> raw_;
};

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

Status keep_image_objects(std::vector<ObjectLocation>& objects, std::span<const std::byte> erofs) {
  CFS_ASSIGN(auto image, erofs::Image::from_bytes(erofs));
  CFS_ASSIGN(auto tree, erofs::load_tree(image));
  std::vector<verity::Digest> named;
  for (NodeId id = 0; id < tree.size(); ++id)
    if (const auto& d = tree.node(id).digest) named.push_back(*d);
  std::sort(named.begin(), named.end());
  std::erase_if(objects, [&](const ObjectLocation& o) {
    return !std::binary_search(named.begin(), named.end(), o.digest);
  });
  return {};
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

namespace {

// Saturating arithmetic: the bound's inputs come from images and manifests.
std::uint64_t add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}
std::uint64_t mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
// Decimal digits of n.
std::uint64_t digits(std::uint64_t n) {
  std::uint64_t d = 1;
  for (; n >= 10; n /= 10) ++d;
  return d;
}
// Characters of a string literal (without its NUL).
template <std::size_t N>
constexpr std::uint64_t chars(const char (&)[N]) {
  return N - 1;
}

constexpr std::uint64_t kU64Digits = 20;  // 18446744073709551615

}  // namespace

Result<std::uint64_t> max_image_objects(std::span<const std::byte> erofs, verity::HashAlg alg) {
  erofs::SuperBlock sb;
  if (erofs.size() < erofs::kSuperOffset + sizeof sb)
    return fail(Errc::kCorruptImage,
                fmt::format("{} bytes cannot hold a composefs superblock", erofs.size()));
  std::memcpy(&sb, erofs.data() + erofs::kSuperOffset, sizeof sb);
  if (sb.magic.get() != erofs::kSuperMagic)
    return fail(Errc::kCorruptImage,
                fmt::format("bad EROFS superblock magic {:#010x}", std::uint32_t{sb.magic.get()}));
  return std::min<std::uint64_t>(sb.inos.get(), erofs.size() / verity::digest_size(alg));
}

std::uint64_t object_index_size_bound(verity::HashAlg alg, std::uint64_t objects,
                                      std::uint64_t layers) {
  const std::uint64_t hex = 2 * verity::digest_size(alg);
  // {"mediaType":"…","version":N,"algorithm":"sha512","image":"<hex>","layers":[…],"objects":[…]}
  const std::uint64_t header = chars("{\"mediaType\":\"") + kObjectIndexMediaType.size() +
                               chars("\",\"version\":") + kU64Digits + chars(",\"algorithm\":\"") +
                               chars("sha512") + chars("\",\"image\":\"") + hex +
                               chars("\",\"layers\":[") + chars("],\"objects\":[") + chars("]}");
  // ,{"digest":"<hex>","layer":N,"offset":N,"length":N,"size":N,"compression":"none"}
  const std::uint64_t object = chars(",{\"digest\":\"") + hex + chars("\",\"layer\":") +
                               digits(layers > 0 ? layers - 1 : 0) + chars(",\"offset\":") +
                               kU64Digits + chars(",\"length\":") + kU64Digits +
                               chars(",\"size\":") + kU64Digits + chars(",\"compression\":\"") +
                               chars("none") + chars("\"}");
  return add(add(header, mul(layers, kIndexLayerAllowance)), mul(objects, object));
}

Status check_object_index_size(std::uint64_t size, verity::HashAlg alg, std::uint64_t objects,
                               std::uint64_t layers, const std::string& what) {
  const std::uint64_t bound =
      std::min(kMaxObjectIndexSize, object_index_size_bound(alg, objects, layers));
  if (size <= bound) return {};
  return fail(Errc::kInvalidInput,
              fmt::format("{}: {} bytes, more than the {} an index of an image of at most {} "
                          "objects in {} layers can take",
                          what, size, bound, objects, layers));
}

Result<ObjectIndex> parse_object_index(std::string_view text, const std::string& what,
                                       std::size_t readable) {
  if (text.size() > kMaxObjectIndexSize)
    return fail(Errc::kInvalidInput, fmt::format("{}: {} bytes is larger than the {} allowed", what,
                                                 text.size(), kMaxObjectIndexSize));
  IndexReader reader(what);
  return reader.read(text, readable);
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
