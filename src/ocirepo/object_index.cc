// SPDX-License-Identifier: Apache-2.0
#include "cfs/ocirepo/object_index.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

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

namespace {

// --- The compact index (object_index.h) -------------------------------------------------------

constexpr std::uint8_t kCompactSha256 = 1, kCompactSha512 = 2;
constexpr std::uint64_t kVarintMax = 10;  // bytes of a 64-bit LEB128 varint

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_str(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}
std::uint64_t zigzag(std::uint64_t delta) {
  return (delta << 1) ^ static_cast<std::uint64_t>(static_cast<std::int64_t>(delta) >> 63);
}
std::uint64_t unzigzag(std::uint64_t z) { return (z >> 1) ^ (0 - (z & 1)); }

// Every object the image names (a regular file's metacopy digest) with the smallest nid of a file
// that holds it, sorted by digest. Each directory is walked once (a corrupt image that links
// back cannot loop).
Result<std::vector<std::pair<verity::Digest, std::uint64_t>>> image_object_nids(
    const erofs::Image& image) {
  std::vector<std::pair<verity::Digest, std::uint64_t>> out;
  std::vector<std::uint64_t> todo{image.root_nid()};
  std::set<std::uint64_t> seen{image.root_nid()};
  Status err;
  while (!todo.empty() && err) {
    const std::uint64_t dir = todo.back();
    todo.pop_back();
    CFS_TRY(image.iterate_dir(dir, 0, [&](const erofs::DirentView& e) {
      if (e.name == "." || e.name == "..") return true;
      auto info = image.inode(e.nid);
      if (!info) {
        err = fail(std::move(info).error());
        return false;
      }
      if (info->is_dir()) {
        if (seen.insert(e.nid).second) todo.push_back(e.nid);
        return true;
      }
      if (!info->is_reg() || info->xattr_size == 0) return true;
      auto xs = image.xattrs(*info);
      if (!xs) {
        err = fail(std::move(xs).error());
        return false;
      }
      if (auto d = erofs::backing_from_xattrs(*xs).digest) out.emplace_back(*d, e.nid);
      return true;
    }));
  }
  CFS_TRY(std::move(err));
  std::sort(out.begin(), out.end());
  auto same = [](const auto& a, const auto& b) { return a.first == b.first; };
  out.erase(std::unique(out.begin(), out.end(), same), out.end());
  return out;
}

// Reads a compact document front to back; every read names its field for an error.
class CompactReader {
 public:
  CompactReader(std::string_view doc, const std::string& what) : doc_(doc), what_(what) {}

  std::size_t left() const noexcept { return doc_.size() - pos_; }
  bool at_end() const noexcept { return pos_ == doc_.size(); }

  template <class Name>
  Result<std::uint64_t> varint(Name&& field) {
    std::uint64_t v = 0;
    for (unsigned i = 0;; ++i) {
      if (pos_ == doc_.size()) return bad(what_, field(), "the document ends inside it");
      const auto b = static_cast<std::uint8_t>(doc_[pos_++]);
      if (i == kVarintMax - 1 && b > 1) return bad(what_, field(), "more than 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        if (b == 0 && i > 0) return bad(what_, field(), "a varint with redundant bytes");
        return v;
      }
    }
  }
  template <class Name>
  Result<std::uint8_t> byte(Name&& field) {
    if (pos_ == doc_.size()) return bad(what_, field(), "the document ends inside it");
    return static_cast<std::uint8_t>(doc_[pos_++]);
  }
  template <class Name>
  Result<std::string_view> bytes(std::uint64_t n, Name&& field) {
    if (n > left())
      return bad(what_, field(), fmt::format("{} bytes, {} left in the document", n, left()));
    auto s = doc_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <class Name>
  Result<std::string_view> str(Name&& field) {
    CFS_ASSIGN(std::uint64_t n, varint(field));
    return bytes(n, field);
  }

 private:
  std::string_view doc_;
  std::size_t pos_ = 0;
  const std::string& what_;
};

}  // namespace

Result<std::string> encode_compact_index(const ObjectIndex& index, const erofs::Image& erofs) {
  CFS_ASSIGN(auto nids, image_object_nids(erofs));
  struct Entry {
    std::uint64_t nid;
    const ObjectLocation* o;
  };
  std::vector<Entry> entries;
  entries.reserve(index.objects.size());
  for (const auto& o : index.objects) {
    auto it = std::lower_bound(nids.begin(), nids.end(), o.digest,
                               [](const auto& p, const verity::Digest& d) { return p.first < d; });
    if (it == nids.end() || it->first != o.digest)
      return fail(Errc::kInvalidInput,
                  fmt::format("object {}: no regular file of the image holds it", o.digest.str()));
    entries.push_back({it->second, &o});
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.nid < b.nid; });
  std::string out(kCompactIndexMagic);
  put_varint(out, kCompactIndexVersion);
  out.push_back(static_cast<char>(index.algorithm == verity::HashAlg::kSha256 ? kCompactSha256
                                                                              : kCompactSha512));
  out.append(reinterpret_cast<const char*>(index.image.bytes.data()), index.image.size);
  put_varint(out, index.layers.size());
  for (const auto& l : index.layers) {
    put_str(out, l.digest.str());
    put_str(out, l.diff_id.str());
    put_varint(out, l.size);
    put_str(out, l.media_type);
    out.push_back(l.range_fetchable ? 1 : 0);
  }
  put_varint(out, entries.size());
  std::uint64_t prev = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    put_varint(out, i ? entries[i].nid - prev : entries[i].nid);
    prev = entries[i].nid;
  }
  for (const auto& e : entries)
    put_varint(out, std::uint64_t{e.o->layer} << 1 |
                        (e.o->compression == ObjectCompression::kZstd ? 1u : 0u));
  for (const auto& e : entries) put_varint(out, e.o->size);
  for (const auto& e : entries)
    if (e.o->compression == ObjectCompression::kZstd) put_varint(out, e.o->length);
  // Objects in nid order are mostly in tar order too (both follow the paths): an offset is
  // written as its distance from the end of the previous object of its layer.
  std::vector<std::uint64_t> cursor(index.layers.size(), 0);
  for (const auto& e : entries) {
    std::uint64_t& c = cursor.at(e.o->layer);
    put_varint(out, zigzag(e.o->offset - c));
    c = e.o->offset + e.o->length;
  }
  return out;
}

Result<ObjectIndex> parse_compact_index(std::string_view doc, const erofs::Image& erofs,
                                        const std::string& what,
                                        const std::optional<verity::Digest>& image_digest) {
  if (doc.size() > kMaxObjectIndexSize)
    return fail(Errc::kInvalidInput, fmt::format("{}: {} bytes is larger than the {} allowed", what,
                                                 doc.size(), kMaxObjectIndexSize));
  CompactReader r(doc, what);
  auto named = [](std::string name) { return [name] { return name; }; };
  CFS_ASSIGN(auto magic, r.bytes(kCompactIndexMagic.size(), named("magic")));
  if (magic != kCompactIndexMagic)
    return bad(what, "magic", fmt::format("not a compact object index ({})", kCompactIndexMagic));
  CFS_ASSIGN(std::uint64_t version, r.varint(named("version")));
  if (version != kCompactIndexVersion)
    return fail(Errc::kUnsupportedFeature, fmt::format("{}: version: {} is not the supported {}",
                                                       what, version, kCompactIndexVersion));
  ObjectIndex index;
  CFS_ASSIGN(std::uint8_t alg, r.byte(named("algorithm")));
  if (alg != kCompactSha256 && alg != kCompactSha512)
    return bad(what, "algorithm", fmt::format("{} is neither 1 (sha256) nor 2 (sha512)", alg));
  index.algorithm = alg == kCompactSha256 ? verity::HashAlg::kSha256 : verity::HashAlg::kSha512;
  index.image = verity::Digest::zero(index.algorithm);
  CFS_ASSIGN(auto image, r.bytes(index.image.size, named("image")));
  std::memcpy(index.image.bytes.data(), image.data(), image.size());
  if (image_digest && image_digest->alg == index.algorithm && *image_digest != index.image)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the EROFS's fs-verity digest is {}, the index names {}", what,
                            image_digest->str(), index.image.str()));
  CFS_ASSIGN(std::uint64_t layers, r.varint(named("layers")));
  if (layers > kMaxIndexLayers)
    return bad(what, "layers",
               fmt::format("{} is more than the {} allowed", layers, kMaxIndexLayers));
  for (std::uint64_t i = 0; i < layers; ++i) {
    auto field = [i](std::string_view member) {
      return [i, member] { return fmt::format("layers[{}].{}", i, member); };
    };
    IndexedLayer l;
    for (auto [member, out] : {std::pair{"digest", &l.digest}, std::pair{"diffId", &l.diff_id}}) {
      CFS_ASSIGN(auto text, r.str(field(member)));
      auto d = oci::ContentDigest::parse(text);
      if (!d) return bad(what, field(member)(), d.error().message());
      *out = std::move(*d);
    }
    CFS_ASSIGN(l.size, r.varint(field("size")));
    CFS_ASSIGN(auto media_type, r.str(field("mediaType")));
    // A media type is printable ASCII (RFC 6838); the JSON index's, valid UTF-8 at least.
    if (std::any_of(media_type.begin(), media_type.end(),
                    [](char c) { return c < 0x20 || c > 0x7e; }))
      return bad(what, field("mediaType")(), "not printable ASCII");
    l.media_type = std::string(media_type);
    CFS_ASSIGN(std::uint8_t flags, r.byte(field("flags")));
    if (flags > 1) return bad(what, field("flags")(), fmt::format("unknown flags {:#x}", flags));
    l.range_fetchable = flags == 1;
    index.layers.push_back(std::move(l));
  }
  CFS_ASSIGN(std::uint64_t n, r.varint(named("objects")));
  // Each object takes at least a byte in four columns: a count the rest cannot hold is refused
  // before anything is allocated for it.
  if (n > r.left() / 4)
    return bad(what, "objects",
               fmt::format("{} objects cannot fit in the {} bytes left", n, r.left()));
  auto obj = [](std::string_view member) {
    return [member](std::size_t i) {
      return [i, member] { return fmt::format("objects[{}].{}", i, member); };
    };
  };
  // The columns into small records (the locations are built once, in digest order, at the end:
  // zero-filling and copying 5,157 104-byte locations twice was a third of the parse).
  struct Place {
    std::uint64_t offset = 0, length = 0, size = 0;
    std::uint32_t layer = 0;
    bool zstd = false;
  };
  std::vector<std::uint64_t> nid(n);
  std::vector<Place> places(n);
  for (std::size_t i = 0; i < n; ++i) {
    CFS_ASSIGN(std::uint64_t step, r.varint(obj("nid")(i)));
    if (i > 0 && step == 0)
      return bad(what, obj("nid")(i)(), "the same nid as the previous object");
    if (i > 0 && step > UINT64_MAX - nid[i - 1]) return bad(what, obj("nid")(i)(), "beyond 2^64");
    nid[i] = i ? nid[i - 1] + step : step;
  }
  for (std::size_t i = 0; i < n; ++i) {
    CFS_ASSIGN(std::uint64_t v, r.varint(obj("layer")(i)));
    if ((v >> 1) >= index.layers.size())
      return bad(what, obj("layer")(i)(),
                 fmt::format("{} is not below the {} layers", v >> 1, index.layers.size()));
    places[i].layer = static_cast<std::uint32_t>(v >> 1);
    places[i].zstd = (v & 1) != 0;
    if (!index.layers[places[i].layer].range_fetchable)
      return bad(what, obj("layer")(i)(),
                 fmt::format("layer {} is not range-fetchable", places[i].layer));
  }
  for (std::size_t i = 0; i < n; ++i) {
    CFS_ASSIGN(places[i].size, r.varint(obj("size")(i)));
    if (places[i].size == 0) return bad(what, obj("size")(i)(), "an object of zero bytes");
    places[i].length = places[i].size;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (places[i].zstd) {
      CFS_ASSIGN(places[i].length, r.varint(obj("length")(i)));
      if (places[i].length == 0) return bad(what, obj("length")(i)(), "zero bytes");
    }
  std::vector<std::uint64_t> cursor(index.layers.size(), 0);
  for (std::size_t i = 0; i < n; ++i) {
    Place& o = places[i];
    CFS_ASSIGN(std::uint64_t z, r.varint(obj("offset")(i)));
    o.offset = cursor[o.layer] + unzigzag(z);  // modulo 2^64, checked against the layer below
    const IndexedLayer& l = index.layers[o.layer];
    if (o.offset > l.size || o.length > l.size - o.offset)
      return bad(what, fmt::format("objects[{}]", i),
                 fmt::format("bytes {}+{} are outside layer {}'s {} bytes", o.offset, o.length,
                             o.layer, l.size));
    cursor[o.layer] = o.offset + o.length;
  }
  if (!r.at_end())
    return bad(what, "objects", fmt::format("{} bytes after the last column", r.left()));
  // Each object's digest is its file's, in the image the index was made for; sorted by digest as
  // the JSON index is (the loader graph names objects by position): by the digests' first 8
  // bytes, the whole digests only for a tie (whole digests compared through a permutation were a
  // third of the parse).
  std::vector<verity::Digest> digests;
  digests.reserve(n);
  std::vector<std::pair<std::uint64_t, std::uint32_t>> order(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto info = erofs.inode(nid[i]);
    if (!info)
      return bad(what, obj("nid")(i)(), fmt::format("{}: {}", nid[i], info.error().message()));
    if (!info->is_reg() || info->xattr_size == 0)
      return bad(what, obj("nid")(i)(),
                 fmt::format("{} is not a regular file with an object", nid[i]));
    auto digest = erofs.metacopy_digest(*info);
    if (!digest)
      return bad(what, obj("nid")(i)(), fmt::format("{}: {}", nid[i], digest.error().message()));
    const auto& d = *digest;
    if (!d || d->alg != index.algorithm)
      return bad(what, obj("nid")(i)(),
                 fmt::format("{} is not a regular file with a {} object", nid[i],
                             verity::hash_alg_name(index.algorithm)));
    std::uint64_t key = 0;
    for (std::size_t b = 0; b < 8; ++b) key = key << 8 | d->bytes[b];
    order[i] = {key, static_cast<std::uint32_t>(i)};
    digests.push_back(*d);
  }
  std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return digests[a.second] < digests[b.second];
  });
  index.objects.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint32_t i = order[k].second;
    if (k > 0 && digests[i] == digests[order[k - 1].second])
      return bad(what, obj("nid")(std::max(i, order[k - 1].second))(),
                 fmt::format("object {} is also objects[{}]'s", digests[i].str(),
                             std::min(i, order[k - 1].second)));
    const Place& p = places[i];
    index.objects.push_back({digests[i], p.layer, p.offset, p.length, p.size,
                             p.zstd ? ObjectCompression::kZstd : ObjectCompression::kNone});
  }
  return index;
}

std::uint64_t compact_index_size_bound(verity::HashAlg alg, std::uint64_t objects,
                                       std::uint64_t layers) {
  const std::uint64_t header =
      kCompactIndexMagic.size() + 3 * kVarintMax + 1 + verity::digest_size(alg);
  // nid, size, length and offset at their widest, the layer column as the encoder writes it
  std::string layer;
  put_varint(layer, (layers > 0 ? layers - 1 : 0) << 1 | 1);
  const std::uint64_t object = 4 * kVarintMax + layer.size();
  return add(add(header, mul(layers, kIndexLayerAllowance)), mul(objects, object));
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
