// SPDX-License-Identifier: Apache-2.0
#include "cfs/erofs/slim.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_set>

#include "cfs/erofs/reader.h"
#include "cfs/overlay/metacopy.h"
#include "erofs/reader_internal.h"

namespace cfs::erofs {
namespace {

// Each byte's two hex digits: a mount spells every value of the table (Debian's 5,110, 0.4 ms
// a digit at a time) after the EROFS's last byte, on the critical path.
constexpr std::array<char, 512> kHexPairs = [] {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> t{};
  for (std::size_t i = 0; i < 256; ++i) {
    t[2 * i] = kHex[i >> 4];
    t[2 * i + 1] = kHex[i & 15];
  }
  return t;
}();

// "/" + 2 hex + "/" + the rest: tree::object_path's spelling with the redirect's leading "/"
// (a test checks they agree), written straight into the image.
void spell(const std::uint8_t* digest, std::size_t n, char* out) {
  out[0] = '/';
  std::memcpy(out + 1, &kHexPairs[2 * std::size_t{digest[0]}], 2);
  out[3] = '/';
  out += 4;
  for (std::size_t i = 1; i < n; ++i, out += 2)
    std::memcpy(out, &kHexPairs[2 * std::size_t{digest[i]}], 2);
}

// At most a value's 130 bytes (a byte-wise loop was most of a rebuild's time).
bool all_zeros(const std::byte* p, std::size_t n) {
  static constexpr std::array<std::byte, 2 * 64 + 2> kZeros{};
  return std::memcmp(p, kZeros.data(), std::min(n, kZeros.size())) == 0 &&
         (n <= kZeros.size() || all_zeros(p + kZeros.size(), n - kZeros.size()));
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

class Reader {
 public:
  Reader(std::string_view doc, const std::string& what) : doc_(doc), what_(what) {}

  // A minimal LEB128 varint of at most 64 bits, `field` naming it in an error.
  template <typename Field>
  Result<std::uint64_t> varint(const Field& field) {
    std::uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
      if (pos_ >= doc_.size())
        return fail(Errc::kInvalidInput, fmt::format("{}: {}: cut off", what_, field()));
      const auto b = static_cast<std::uint8_t>(doc_[pos_++]);
      if (shift == 63 && b > 1)
        return fail(Errc::kInvalidInput, fmt::format("{}: {}: more than 64 bits", what_, field()));
      v |= std::uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) {
        if (b == 0 && shift > 0)
          return fail(Errc::kInvalidInput,
                      fmt::format("{}: {}: a varint with redundant bytes", what_, field()));
        return v;
      }
    }
  }
  bool at_end() const noexcept { return pos_ == doc_.size(); }
  std::size_t pos() const noexcept { return pos_; }
  void skip(std::size_t n) noexcept { pos_ += n; }

 private:
  std::string_view doc_;
  std::size_t pos_ = 0;
  const std::string& what_;
};

}  // namespace

Result<SlimImage> slim_redirects(std::span<const std::byte> bytes) {
  CFS_ASSIGN(Image img, Image::from_bytes(bytes));
  SlimImage out;
  std::optional<verity::HashAlg> alg;
  // Every inode once (hard links share one), directories breadth-first from the root.
  std::unordered_set<std::uint64_t> seen{img.root_nid()};
  std::vector<std::uint64_t> dirs{img.root_nid()}, files;
  for (std::size_t i = 0; i < dirs.size(); ++i) {
    CFS_TRY(img.iterate_dir(dirs[i], 0, [&](const DirentView& e) {
      if (e.name == "." || e.name == ".." || !seen.insert(e.nid).second) return true;
      (e.file_type == FileType::kDirectory ? dirs : files).push_back(e.nid);
      return true;
    }));
  }
  for (std::uint64_t nid : files) {
    CFS_ASSIGN(InodeInfo ino, img.inode(nid));
    if (!ino.is_reg()) continue;
    CFS_ASSIGN(auto at, detail::backing_spans(img, ino));
    if (!at.metacopy_size || !at.redirect_size) continue;
    const auto value = [&](std::uint64_t off, std::uint64_t n) {
      return std::string_view(reinterpret_cast<const char*>(bytes.data() + off), n);
    };
    auto d = overlay::Metacopy::read_digest(value(at.metacopy, at.metacopy_size));
    if (!d || (alg && d->alg != *alg)) continue;
    // The digest's bytes are the value's last n (after the 4-byte header).
    const std::uint64_t src = at.metacopy + at.metacopy_size - d->size;
    if (std::memcmp(bytes.data() + src, d->bytes.data(), d->size) != 0) continue;
    const std::size_t len = 2u * d->size + 2;
    if (at.redirect_size != len || src + d->size > at.redirect) continue;
    std::string spelled(len, '\0');
    spell(d->bytes.data(), d->size, spelled.data());
    if (value(at.redirect, len) != spelled) continue;
    alg = d->alg;
    out.table.entries.push_back({at.redirect, src});
  }
  if (alg) out.table.alg = *alg;
  // By offset, each digest after the previous value's end (else that entry stays as it is): a
  // rebuild then never reads a byte another entry writes, in any order.
  // A shared value (files of one content) is listed once.
  std::sort(out.table.entries.begin(), out.table.entries.end(),
            [](const auto& a, const auto& b) { return a.value < b.value; });
  out.table.entries.erase(
      std::unique(out.table.entries.begin(), out.table.entries.end(),
                  [](const auto& a, const auto& b) { return a.value == b.value; }),
      out.table.entries.end());
  const std::size_t len = out.table.value_size();
  std::uint64_t end = 0;
  std::erase_if(out.table.entries, [&](const RedirectTable::Entry& e) {
    if (e.digest < end || e.value < end) return true;
    end = e.value + len;
    return false;
  });
  out.erofs.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  for (const auto& e : out.table.entries) std::memset(out.erofs.data() + e.value, 0, len);
  return out;
}

std::string encode_redirect_table(const RedirectTable& t) {
  std::string out(kRedirectTableMagic);
  put_varint(out, kRedirectTableVersion);
  put_varint(out, static_cast<std::uint64_t>(t.alg));
  put_varint(out, t.entries.size());
  std::uint64_t end = 0;
  for (const auto& e : t.entries) {
    put_varint(out, e.value - end);
    end = e.value + t.value_size();
  }
  for (const auto& e : t.entries) put_varint(out, e.value - e.digest);
  return out;
}

std::uint64_t redirect_table_size_bound(std::uint64_t image_size) noexcept {
  // The header's three varints and the count, then two varints per value of at least 66 bytes.
  return kRedirectTableMagic.size() + 4 * 10 + image_size / 66 * 2 * 10;
}

Result<RedirectTable> parse_redirect_table(std::string_view doc, std::uint64_t image_size,
                                           const std::string& what) {
  if (doc.size() > redirect_table_size_bound(image_size))
    return fail(Errc::kInvalidInput,
                fmt::format("{}: {} bytes, more than the {} a table of a {}-byte image can take",
                            what, doc.size(), redirect_table_size_bound(image_size), image_size));
  if (!doc.starts_with(kRedirectTableMagic))
    return fail(Errc::kInvalidInput, fmt::format("{}: magic: not {}", what, kRedirectTableMagic));
  Reader r(doc, what);
  r.skip(kRedirectTableMagic.size());
  CFS_ASSIGN(const std::uint64_t version, r.varint([] { return "version"; }));
  if (version != kRedirectTableVersion)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: version: {} is not {}", what, version, kRedirectTableVersion));
  CFS_ASSIGN(const std::uint64_t alg, r.varint([] { return "algorithm"; }));
  RedirectTable t;
  if (alg == 1)
    t.alg = verity::HashAlg::kSha256;
  else if (alg == 2)
    t.alg = verity::HashAlg::kSha512;
  else
    return fail(Errc::kInvalidInput,
                fmt::format("{}: algorithm: {} is not 1 (sha256) or 2 (sha512)", what, alg));
  const std::uint64_t n = verity::digest_size(t.alg), len = t.value_size();
  CFS_ASSIGN(const std::uint64_t count, r.varint([] { return "count"; }));
  if (count > image_size / len)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: count: {} values of {} bytes do not fit a {}-byte image", what,
                            count, len, image_size));
  // Two varints of at least a byte each per value: what is allocated is bounded by the
  // document's size, not by a count it claims.
  if (count > (doc.size() - r.pos()) / 2)
    return fail(Errc::kInvalidInput, fmt::format("{}: count: {} values need {} bytes, {} are left",
                                                 what, count, 2 * count, doc.size() - r.pos()));
  t.entries.resize(count);
  std::uint64_t end = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    CFS_ASSIGN(const std::uint64_t gap, r.varint([&] { return fmt::format("gaps[{}]", i); }));
    // image_size >= len (count >= 1 fits), so no difference below wraps.
    if (end > image_size - len || gap > image_size - len - end)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: gaps[{}]: a value at {} + {} ends past the image's {} bytes",
                              what, i, end, gap, image_size));
    t.entries[i].value = end + gap;
    end = t.entries[i].value + len;
    // The value after it needs room too: checked when it is read.
  }
  std::uint64_t prev_end = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    CFS_ASSIGN(const std::uint64_t back, r.varint([&] { return fmt::format("backs[{}]", i); }));
    auto& e = t.entries[i];
    if (back < n || back > e.value - prev_end)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: backs[{}]: a digest {} bytes before the value at {} is not "
                              "wholly between the previous value's end ({}) and it",
                              what, i, back, e.value, prev_end));
    e.digest = e.value - back;
    prev_end = e.value + len;
  }
  if (!r.at_end())
    return fail(Errc::kInvalidInput,
                fmt::format("{}: {} bytes after the last column", what, doc.size() - r.pos()));
  return t;
}

Status rebuild_redirects(std::span<std::byte> image, const RedirectTable& t,
                         const std::string& what) {
  const std::size_t n = verity::digest_size(t.alg), len = t.value_size();
  std::uint64_t end = 0;
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    const auto& e = t.entries[i];
    // What parse_redirect_table() guarantees, checked again for a table built otherwise.
    if (e.value < end || e.value > image.size() || image.size() - e.value < len || e.digest < end ||
        e.digest > e.value || e.value - e.digest < n)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: redirect {} (value at {}, digest at {}) is out of order or "
                              "outside the {}-byte image",
                              what, i, e.value, e.digest, image.size()));
    std::byte* v = image.data() + e.value;
    if (!all_zeros(v, len))
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: redirect {}: the {} bytes at {} are not the zeros of a slimmed "
                              "value",
                              what, i, len, e.value));
    spell(reinterpret_cast<const std::uint8_t*>(image.data() + e.digest), n,
          reinterpret_cast<char*>(v));
    end = e.value + len;
  }
  return {};
}

RedirectRebuilder::RedirectRebuilder(RedirectTable table, std::string what)
    : table_(std::move(table)), what_(std::move(what)) {}

Result<std::span<const std::byte>> RedirectRebuilder::feed(std::span<const std::byte> piece) {
  const std::uint64_t start = offset_, end = offset_ + piece.size();
  offset_ = end;
  const std::size_t n = verity::digest_size(table_.alg), len = table_.value_size();
  std::span<const std::byte> out = piece;
  while (next_ < table_.entries.size()) {
    const auto& e = table_.entries[next_];
    // The digest's bytes that are in this piece (it lies wholly before its value).
    if (e.digest < end && e.digest + n > start) {
      const std::uint64_t from = std::max(e.digest, start), to = std::min(e.digest + n, end);
      std::memcpy(digest_.data() + (from - e.digest), piece.data() + (from - start), to - from);
    }
    if (e.value >= end) break;
    if (value_.empty()) {
      value_.assign(len, '\0');
      spell(digest_.data(), n, value_.data());
    }
    if (out.data() == piece.data()) {
      copy_.assign(piece.begin(), piece.end());
      out = copy_;
    }
    const std::uint64_t from = std::max(e.value, start), to = std::min(e.value + len, end);
    std::byte* at = copy_.data() + (from - start);
    if (!all_zeros(at, to - from))
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: redirect {}: the {} bytes at {} are not the zeros of a slimmed "
                              "value",
                              what_, next_, len, e.value));
    std::memcpy(at, value_.data() + (from - e.value), to - from);
    if (e.value + len > end) break;  // the rest is in the next piece
    value_.clear();
    ++next_;
  }
  return out;
}

Status RedirectRebuilder::finish() const {
  if (next_ < table_.entries.size())
    return fail(Errc::kInvalidInput,
                fmt::format("{}: redirect {}: its value at {} is not within the {}-byte image",
                            what_, next_, table_.entries[next_].value, offset_));
  return {};
}

}  // namespace cfs::erofs
