// SPDX-License-Identifier: Apache-2.0
#include "cfs/ocirepo/object_index.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>

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
// before it can serve, and nlohmann::json's DOM took 10-12 ms of that (its lexer reads a
// character at a time, and every object became a map of six members): this reads the one
// document type directly into the final table, ~10x faster, with the same checks. It is a
// complete JSON reader for what it accepts (escapes, UTF-8 checked, any member order, any
// whitespace), strict about the rest: a syntax error is "not valid JSON (byte N)", a wrong type,
// an unknown, repeated or missing member names its field. Members that depend on others (the
// algorithm, the layers) are checked once the document is read, so their order is free.
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
  IndexReader(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  Result<ObjectIndex> read() {
    ws();
    if (p_ == s_.size()) return invalid();
    if (s_[p_] != '{')
      return std::string_view("[\"-0123456789tfn").find(s_[p_]) != std::string_view::npos
                 ? bad(what_, "", "not an object")
                 : invalid();
    std::string_view media_type, alg_name, image_hex;
    std::uint64_t version = 0;
    const Field root;
    CFS_TRY(members(root, {"mediaType", "version", "algorithm", "image", "layers", "objects"},
                    [&](std::size_t m, const Field& f) -> Status {
                      switch (m) {
                        case 0:
                          return string(f).map([&](std::string_view v) { media_type = v; });
                        case 1:
                          return number(f).map([&](std::uint64_t v) { version = v; });
                        case 2:
                          return string(f).map([&](std::string_view v) { alg_name = v; });
                        case 3:
                          return string(f).map([&](std::string_view v) { image_hex = v; });
                        case 4:
                          return array(f, [&](const Field& e) { return layer(e); });
                        default:
                          return array(f, [&](const Field& e) { return object(e); });
                      }
                    }));
    ws();
    if (p_ != s_.size()) return invalid();

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
    CFS_ASSIGN(index_.image, digest(image_hex, "image"));
    index_.objects.reserve(raw_.size());
    for (std::size_t i = 0; i < raw_.size(); ++i) {
      CFS_ASSIGN(auto o, check_object(raw_[i], fmt::format("objects[{}]", i)));
      if (!index_.objects.empty() && !(index_.objects.back().digest < o.digest))
        return bad(what_, fmt::format("objects[{}].digest", i),
                   "not sorted after the previous object (or repeated)");
      index_.objects.push_back(o);
    }
    return std::move(index_);
  }

 private:
  // An object's members as read; checked against the header and the layers once all is read.
  struct RawObject {
    std::string_view digest, compression;
    std::uint64_t layer = 0, offset = 0, length = 0, size = 0;
  };

  tl::unexpected<Error> invalid() const {
    return fail(Errc::kInvalidInput,
                fmt::format("{}: not valid JSON (byte {})", what_, std::min(p_, s_.size())));
  }

  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\r' || s_[p_] == '\t'))
      ++p_;
  }

  bool at(char c) const { return p_ < s_.size() && s_[p_] == c; }

  // Reads a JSON object whose members must be exactly `allowed` (all required, once each);
  // `value(i, field)` reads the value of allowed[i].
  template <class F>
  Status members(const Field& field, std::initializer_list<std::string_view> allowed, F&& value) {
    if (!at('{')) return bad(what_, field.str(), "not an object");
    ++p_;
    std::uint32_t seen = 0;
    ws();
    if (at('}')) {
      ++p_;
    } else {
      for (;;) {
        ws();
        if (!at('"')) return invalid();
        CFS_ASSIGN(std::string_view key, string_body());
        ws();
        if (!at(':')) return invalid();
        ++p_;
        ws();
        auto it = std::find(allowed.begin(), allowed.end(), key);
        const Field f{&field, key};
        if (it == allowed.end()) return bad(what_, f.str(), "unknown member");
        const auto m = static_cast<std::size_t>(it - allowed.begin());
        if (seen & (1u << m)) return bad(what_, f.str(), "repeated member");
        seen |= 1u << m;
        CFS_TRY(value(m, f));
        ws();
        if (at(',')) {
          ++p_;
          continue;
        }
        if (!at('}')) return invalid();
        ++p_;
        break;
      }
    }
    std::size_t m = 0;
    for (auto name : allowed)
      if (!(seen & (1u << m++))) return bad(what_, join(field.str(), name), "missing");
    return {};
  }

  // Reads a JSON array, `element(i)` reading each element.
  template <class F>
  Status array(const Field& field, F&& element) {
    if (!at('[')) return bad(what_, field.str(), "not an array");
    ++p_;
    ws();
    if (at(']')) {
      ++p_;
      return {};
    }
    for (std::size_t i = 0;; ++i) {
      ws();
      CFS_TRY(element(Field{&field, {}, i}));
      ws();
      if (at(',')) {
        ++p_;
        continue;
      }
      if (!at(']')) return invalid();
      ++p_;
      return {};
    }
  }

  Result<std::string_view> string(const Field& field) {
    if (!at('"')) return bad(what_, field.str(), "not a string");
    return string_body();
  }

  // A string at p_ (the opening quote). Plain ASCII without escapes (every digest) is a view of
  // the text; anything else is decoded and its UTF-8 checked, and kept in decoded_.
  Result<std::string_view> string_body() {
    const std::size_t begin = ++p_;
    while (p_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') return s_.substr(begin, p_++ - begin);
      if (c == '\\' || c < 0x20 || c >= 0x80) break;
      ++p_;
    }
    std::string out(s_.substr(begin, p_ - begin));
    while (p_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') {
        ++p_;
        decoded_.push_back(std::move(out));
        return std::string_view(decoded_.back());
      }
      if (c < 0x20) return invalid();
      if (c == '\\') {
        CFS_TRY(escape(out));
      } else if (c < 0x80) {
        out.push_back(static_cast<char>(c));
        ++p_;
      } else {
        CFS_TRY(utf8(out));
      }
    }
    return invalid();
  }

  // One escape sequence at p_ (the backslash), appended to out as UTF-8.
  Status escape(std::string& out) {
    if (p_ + 1 >= s_.size()) return invalid();
    const char e = s_[p_ + 1];
    p_ += 2;
    switch (e) {
      case '"':
        out.push_back('"');
        return {};
      case '\\':
        out.push_back('\\');
        return {};
      case '/':
        out.push_back('/');
        return {};
      case 'b':
        out.push_back('\b');
        return {};
      case 'f':
        out.push_back('\f');
        return {};
      case 'n':
        out.push_back('\n');
        return {};
      case 'r':
        out.push_back('\r');
        return {};
      case 't':
        out.push_back('\t');
        return {};
      case 'u':
        break;
      default:
        return invalid();
    }
    CFS_ASSIGN(std::uint32_t cp, hex4());
    if (cp >= 0xdc00 && cp <= 0xdfff) return invalid();  // a low surrogate alone
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (p_ + 1 >= s_.size() || s_[p_] != '\\' || s_[p_ + 1] != 'u') return invalid();
      p_ += 2;
      CFS_ASSIGN(std::uint32_t low, hex4());
      if (low < 0xdc00 || low > 0xdfff) return invalid();
      cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
    return {};
  }

  Result<std::uint32_t> hex4() {
    if (s_.size() - p_ < 4) return invalid();
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[p_++];
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) return invalid();
      v = v * 16 + static_cast<std::uint32_t>(d);
    }
    return v;
  }

  // One UTF-8 sequence of two to four bytes at p_, checked (no overlong forms, no surrogates,
  // nothing above U+10FFFF), appended to out.
  Status utf8(std::string& out) {
    const auto b0 = static_cast<unsigned char>(s_[p_]);
    std::size_t n;
    std::uint32_t cp, min;
    if ((b0 & 0xe0) == 0xc0) {
      n = 2, cp = b0 & 0x1fu, min = 0x80;
    } else if ((b0 & 0xf0) == 0xe0) {
      n = 3, cp = b0 & 0x0fu, min = 0x800;
    } else if ((b0 & 0xf8) == 0xf0) {
      n = 4, cp = b0 & 0x07u, min = 0x10000;
    } else {
      return invalid();
    }
    if (s_.size() - p_ < n) return invalid();
    for (std::size_t i = 1; i < n; ++i) {
      const auto b = static_cast<unsigned char>(s_[p_ + i]);
      if ((b & 0xc0) != 0x80) return invalid();
      cp = (cp << 6) | (b & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return invalid();
    out.append(s_.substr(p_, n));
    p_ += n;
    return {};
  }

  // A JSON number that must be an unsigned integer (no sign, fraction or exponent; below 2^64).
  Result<std::uint64_t> number(const Field& field) {
    if (!at('-') && !(p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9'))
      return bad(what_, field.str(), "not an unsigned integer");
    const bool negative = at('-');
    if (negative) ++p_;
    auto digit = [&] { return p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9'; };
    if (!digit()) return invalid();
    std::uint64_t v = 0;
    bool overflow = false;
    const std::size_t first = p_;
    while (digit()) {
      const auto d = static_cast<std::uint64_t>(s_[p_] - '0');
      if (v > (UINT64_MAX - d) / 10) overflow = true;
      v = v * 10 + d;
      ++p_;
    }
    if (s_[first] == '0' && p_ - first > 1) return invalid();  // leading zero
    bool integer = true;
    if (at('.')) {
      ++p_;
      if (!digit()) return invalid();
      while (digit()) ++p_;
      integer = false;
    }
    if (at('e') || at('E')) {
      ++p_;
      if (at('+') || at('-')) ++p_;
      if (!digit()) return invalid();
      while (digit()) ++p_;
      integer = false;
    }
    if (negative || overflow || !integer) return bad(what_, field.str(), "not an unsigned integer");
    return v;
  }

  Result<bool> boolean(const Field& field) {
    if (s_.substr(p_, 4) == "true") {
      p_ += 4;
      return true;
    }
    if (s_.substr(p_, 5) == "false") {
      p_ += 5;
      return false;
    }
    return bad(what_, field.str(), "not a boolean");
  }

  Result<oci::ContentDigest> content_digest(const Field& field) {
    CFS_ASSIGN(std::string_view text, string(field));
    auto d = oci::ContentDigest::parse(text);
    if (!d) return bad(what_, field.str(), d.error().message());
    return *d;
  }

  Status layer(const Field& f) {
    IndexedLayer l;
    CFS_TRY(members(f, {"digest", "diffId", "size", "mediaType", "rangeFetchable"},
                    [&](std::size_t m, const Field& field) -> Status {
                      switch (m) {
                        case 0:
                          return content_digest(field).map(
                              [&](oci::ContentDigest d) { l.digest = std::move(d); });
                        case 1:
                          return content_digest(field).map(
                              [&](oci::ContentDigest d) { l.diff_id = std::move(d); });
                        case 2:
                          return number(field).map([&](std::uint64_t v) { l.size = v; });
                        case 3:
                          return string(field).map(
                              [&](std::string_view v) { l.media_type = std::string(v); });
                        default:
                          return boolean(field).map([&](bool v) { l.range_fetchable = v; });
                      }
                    }));
    index_.layers.push_back(std::move(l));
    return {};
  }

  Status object(const Field& f) {
    RawObject o;
    CFS_TRY(members(f, {"digest", "layer", "offset", "length", "size", "compression"},
                    [&](std::size_t m, const Field& field) -> Status {
                      switch (m) {
                        case 0:
                          return string(field).map([&](std::string_view v) { o.digest = v; });
                        case 1:
                          return number(field).map([&](std::uint64_t v) { o.layer = v; });
                        case 2:
                          return number(field).map([&](std::uint64_t v) { o.offset = v; });
                        case 3:
                          return number(field).map([&](std::uint64_t v) { o.length = v; });
                        case 4:
                          return number(field).map([&](std::uint64_t v) { o.size = v; });
                        default:
                          return string(field).map([&](std::string_view v) { o.compression = v; });
                      }
                    }));
    raw_.push_back(o);
    return {};
  }

  Result<verity::Digest> digest(std::string_view hex, const std::string& field) const {
    auto d = verity::Digest::zero(index_.algorithm);
    if (!decode_hex(hex, std::span(d.bytes.data(), d.size), /*lower_only=*/true))
      return bad(what_, field, fmt::format("'{}' is not {} lowercase hex digits", hex, 2 * d.size));
    return d;
  }

  Result<ObjectLocation> check_object(const RawObject& r, const std::string& f) const {
    ObjectLocation o;
    CFS_ASSIGN(o.digest, digest(r.digest, f + ".digest"));
    if (r.layer >= index_.layers.size())
      return bad(what_, f + ".layer",
                 fmt::format("{} is not below the {} layers", r.layer, index_.layers.size()));
    o.layer = static_cast<std::uint32_t>(r.layer);
    const IndexedLayer& l = index_.layers[o.layer];
    if (!l.range_fetchable)
      return bad(what_, f + ".layer", fmt::format("layer {} is not range-fetchable", r.layer));
    o.offset = r.offset;
    o.length = r.length;
    o.size = r.size;
    if (o.length == 0 || o.size == 0) return bad(what_, f, "an object of zero bytes");
    if (o.offset > l.size || o.length > l.size - o.offset)
      return bad(what_, f,
                 fmt::format("bytes {}+{} are outside layer {}'s {} bytes", o.offset, o.length,
                             r.layer, l.size));
    if (r.compression == "none") {
      o.compression = ObjectCompression::kNone;
      if (o.length != o.size)
        return bad(what_, f,
                   fmt::format("uncompressed, but length {} is not size {}", o.length, o.size));
    } else if (r.compression == "zstd") {
      o.compression = ObjectCompression::kZstd;
    } else {
      return bad(what_, f + ".compression",
                 "'" + std::string(r.compression) + "' is neither none nor zstd");
    }
    return o;
  }

  std::string_view s_;
  std::size_t p_ = 0;
  const std::string& what_;
  ObjectIndex index_;
  std::vector<RawObject> raw_;
  std::deque<std::string> decoded_;  // strings that were not plain: views into them stay valid
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
  IndexReader reader(text, what);
  return reader.read();
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
