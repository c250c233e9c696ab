// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/tar.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "cfs/util/decimal.h"

namespace cfs::oci::tar {

namespace {

// ustar header fields: offset, length.
struct Field {
  std::size_t off, len;
};
constexpr Field kName{0, 100}, kMode{100, 8}, kUid{108, 8}, kGid{116, 8}, kSize{124, 12},
    kMtime{136, 12}, kChksum{148, 8}, kLinkname{157, 100}, kMagic{257, 6}, kVersion{263, 2},
    kDevMajor{329, 8}, kDevMinor{337, 8}, kPrefix{345, 155};
constexpr std::size_t kTypeflag = 156;

std::string_view text(std::span<const std::byte> h, Field f) {
  std::string_view s(reinterpret_cast<const char*>(h.data()) + f.off, f.len);
  return s.substr(0, s.find('\0'));
}
std::span<const std::byte> field(std::span<const std::byte> h, Field f) {
  return h.subspan(f.off, f.len);
}
bool all_zero(std::span<const std::byte> b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; });
}
bool is_ustar(std::span<const std::byte> h) {
  return std::memcmp(h.data() + kMagic.off, "ustar\0", 6) == 0 &&
         std::memcmp(h.data() + kVersion.off, "00", 2) == 0;
}
bool is_gnu(std::span<const std::byte> h) {
  return std::memcmp(h.data() + kMagic.off, "ustar ", 6) == 0 &&
         std::memcmp(h.data() + kVersion.off, " \0", 2) == 0;
}
bool tar_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/// The entry's name for messages: as much as is known.
std::string label(std::string_view path) {
  std::string s(path.substr(0, 200));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return s;
}

struct Pending {
  std::optional<std::string_view> long_name, long_link, pax;
  std::size_t count = 0;
  std::uint64_t meta = 0;
  bool empty() const { return !long_name && !long_link && !pax; }
};

}  // namespace

Result<std::uint64_t> parse_numeric(std::span<const std::byte> f) {
  if (f.empty()) return 0;
  auto b0 = static_cast<std::uint8_t>(f[0]);
  if (b0 & 0x80) {
    if (b0 & 0x40) return fail(Errc::kInvalidInput, "negative base-256 number");
    std::uint64_t v = b0 & 0x3f;
    for (std::size_t i = 1; i < f.size(); ++i) {
      if (v > (UINT64_MAX >> 8)) return fail(Errc::kInvalidInput, "base-256 number overflows");
      v = v << 8 | static_cast<std::uint8_t>(f[i]);
    }
    return v;
  }
  std::string_view s(reinterpret_cast<const char*>(f.data()), f.size());
  s = s.substr(0, s.find('\0'));
  while (!s.empty() && tar_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && tar_space(s.back())) s.remove_suffix(1);
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') return fail(Errc::kInvalidInput, "not an octal number");
    if (v > (UINT64_MAX >> 3)) return fail(Errc::kInvalidInput, "octal number overflows");
    v = v << 3 | static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

std::uint32_t pax_mtime_nsec(std::string_view value) {
  std::size_t dot = value.find('.');
  if (dot == std::string_view::npos) return 0;
  std::string_view frac = value.substr(dot + 1);
  if (frac.size() > 9) frac = frac.substr(0, 9);
  if (frac.empty()) return 0;
  std::uint32_t v = 0;
  for (char c : frac) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  for (std::size_t i = frac.size(); i < 9; ++i) v *= 10;
  return v;
}

namespace {

class EntryBuilder {
 public:
  EntryBuilder(std::span<const std::byte> h, const Pending& p, std::uint64_t offset)
      : h_(h), p_(p), offset_(offset) {}

  Result<Entry> build() {
    Entry e;
    e.offset = offset_;
    e.typeflag = static_cast<char>(h_[kTypeflag]);
    bool ext = is_ustar(h_) || is_gnu(h_);
    e.path = std::string(text(h_, kName));
    if (is_ustar(h_)) {
      std::string_view prefix = text(h_, kPrefix);
      if (!prefix.empty()) e.path = std::string(prefix) + "/" + e.path;
    }
    if (p_.long_name) e.path = std::string(*p_.long_name);
    e.link_target = std::string(p_.long_link ? *p_.long_link : text(h_, kLinkname));
    name_ = e.path;
    CFS_ASSIGN(std::uint64_t mode, number(kMode, "mode"));
    e.mode = static_cast<std::uint32_t>(mode);
    CFS_ASSIGN(e.uid, number(kUid, "uid"));
    CFS_ASSIGN(e.gid, number(kGid, "gid"));
    CFS_ASSIGN(e.mtime, number(kMtime, "mtime"));
    CFS_ASSIGN(e.size, number(kSize, "size"));
    if (ext) {
      CFS_ASSIGN(std::uint64_t maj, number(kDevMajor, "devmajor"));
      CFS_ASSIGN(std::uint64_t min, number(kDevMinor, "devminor"));
      e.dev_major = static_cast<std::uint32_t>(maj);
      e.dev_minor = static_cast<std::uint32_t>(min);
    }
    if (p_.pax) CFS_TRY(apply_pax(*p_.pax, e));
    name_ = e.path;
    if (e.path.empty()) return bad("empty path");
    bool header_only = e.typeflag >= '1' && e.typeflag <= '6';
    if (header_only && e.size != 0)
      return bad(fmt::format("type '{}' entry with {} bytes of data", e.typeflag, e.size));
    if (padded(e.size) < e.size) return bad("size overflows");
    return e;
  }

 private:
  tl::unexpected<Error> bad(const std::string& why) const {
    return fail(Errc::kInvalidInput,
                fmt::format("tar entry '{}' at byte {}: {}", label(name_), offset_, why));
  }

  Result<std::uint64_t> number(Field f, const char* what) const {
    auto v = parse_numeric(field(h_, f));
    if (!v) return bad(fmt::format("{} field: {}", what, v.error().context()));
    return v;
  }

  Status apply_pax(std::string_view data, Entry& e) {
    std::size_t pos = 0;
    while (pos < data.size()) {
      std::size_t sp = data.find(' ', pos);
      if (sp == std::string_view::npos) return bad("pax record without a length");
      auto len = parse_decimal_u64(data.substr(pos, sp - pos));
      if (!len || *len <= sp - pos + 1 || *len > data.size() - pos)
        return bad(
            fmt::format("pax record at byte {} of the extended header has a bad length", pos));
      std::string_view rec = data.substr(pos, static_cast<std::size_t>(*len));
      if (rec.back() != '\n')
        return bad(fmt::format("pax record at byte {} does not end with a newline", pos));
      std::string_view kv = rec.substr(sp - pos + 1, rec.size() - (sp - pos + 1) - 1);
      std::size_t eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0)
        return bad(fmt::format("pax record at byte {} is not key=value", pos));
      CFS_TRY(pax_record(kv.substr(0, eq), kv.substr(eq + 1), e));
      pos += rec.size();
    }
    return {};
  }

  Status pax_record(std::string_view key, std::string_view value, Entry& e) {
    auto u64 = [&](std::uint64_t& out) -> Status {
      auto v = parse_decimal_u64(value);
      if (!v) return bad(fmt::format("pax {} '{}' is not a number", key, label(value)));
      out = *v;
      return {};
    };
    if (key == "path") {
      e.path = std::string(value);
      name_ = e.path;
    } else if (key == "linkpath") {
      e.link_target = std::string(value);
    } else if (key == "size") {
      CFS_TRY(u64(e.size));
    } else if (key == "uid") {
      CFS_TRY(u64(e.uid));
    } else if (key == "gid") {
      CFS_TRY(u64(e.gid));
    } else if (key == "mtime") {
      auto v = parse_decimal_u64(value.substr(0, value.find('.')));
      if (!v) return bad(fmt::format("pax mtime '{}' is not a time", label(value)));
      e.mtime = *v;
      e.mtime_nsec = pax_mtime_nsec(value);
    } else if (key.starts_with("SCHILY.xattr.")) {
      e.xattrs.emplace_back(std::string(key.substr(13)), std::string(value));
    } else if (key.starts_with("GNU.sparse.")) {
      return bad("sparse entries are not supported");
    }
    return {};
  }

  std::span<const std::byte> h_;
  const Pending& p_;
  std::uint64_t offset_;
  std::string name_;
};

}  // namespace

Result<Event> Parser::parse(std::span<const std::byte> input, std::uint64_t offset) {
  Pending p;
  std::size_t pos = 0;
  auto need = [](std::size_t n) {
    Event ev;
    ev.kind = EventKind::kNeedData;
    ev.need = n;
    return ev;
  };
  for (;;) {
    std::uint64_t at = offset + pos;
    if (input.size() - pos < kBlockSize) return need(pos + kBlockSize);
    auto h = input.subspan(pos, kBlockSize);
    std::string name = label(text(h, kName));
    auto bad = [&](const std::string& why) {
      return fail(Errc::kInvalidInput,
                  fmt::format("tar header '{}' at byte {}: {}", name, at, why));
    };
    if (all_zero(h)) {
      if (input.size() - pos < 2 * kBlockSize) return need(pos + 2 * kBlockSize);
      if (!all_zero(input.subspan(pos + kBlockSize, kBlockSize)))
        return fail(Errc::kInvalidInput,
                    fmt::format("tar: a zero block at byte {} is followed by data", at));
      if (!p.empty())
        return fail(Errc::kInvalidInput,
                    fmt::format("tar: extension headers before byte {} have no entry", at));
      Event ev;
      ev.kind = EventKind::kEnd;
      ev.consumed = pos + 2 * kBlockSize;
      return ev;
    }
    if (p.count > limits_.max_extensions)
      return bad(fmt::format("more than {} extension headers", limits_.max_extensions));

    auto stored = parse_numeric(field(h, kChksum));
    if (!stored) return bad("checksum field is not a number");
    std::uint64_t sum = 0;
    std::int64_t ssum = 0;
    for (std::size_t i = 0; i < kBlockSize; ++i) {
      bool in_chksum = i >= kChksum.off && i < kChksum.off + kChksum.len;
      auto b = in_chksum ? std::uint8_t{' '} : static_cast<std::uint8_t>(h[i]);
      sum += b;
      ssum += in_chksum ? ' ' : static_cast<std::int8_t>(b);
    }
    if (*stored != sum && *stored != static_cast<std::uint64_t>(ssum))
      return bad(fmt::format("header checksum mismatch (stored {}, computed {})", *stored, sum));

    auto type = static_cast<char>(h[kTypeflag]);
    bool ext = is_ustar(h) || is_gnu(h);
    bool extension = ext && (type == 'L' || type == 'K' || type == 'x');
    if (extension || type == 'g') {
      auto size = parse_numeric(field(h, kSize));
      if (!size) return bad("size field: " + size.error().context());
      std::uint64_t meta = (type == 'g' ? 0 : p.meta) + *size;
      if (*size > limits_.max_metadata || meta > limits_.max_metadata)
        return bad(fmt::format("{} bytes of extension headers exceed the limit of {}", meta,
                               limits_.max_metadata));
      auto total = static_cast<std::size_t>(kBlockSize + padded(*size));
      if (input.size() - pos < total) return need(pos + total);
      std::string_view data(reinterpret_cast<const char*>(input.data()) + pos + kBlockSize,
                            static_cast<std::size_t>(*size));
      if (type == 'g') {
        if (!p.empty()) return bad("pax global header between an entry's extension headers");
        Event ev;
        ev.kind = EventKind::kGlobal;
        ev.consumed = pos + total;
        return ev;
      }
      auto& slot = type == 'L' ? p.long_name : type == 'K' ? p.long_link : p.pax;
      if (slot) return bad(fmt::format("repeated '{}' extension header", type));
      slot = type == 'x' ? data : data.substr(0, data.find('\0'));
      p.meta = meta;
      ++p.count;
      pos += total;
      continue;
    }
    if (ext && type == 'S') return bad("sparse entries are not supported");

    EntryBuilder b(h, p, offset);
    CFS_ASSIGN(Entry e, b.build());
    Event ev;
    ev.kind = EventKind::kEntry;
    ev.consumed = pos + kBlockSize;
    ev.entry = std::move(e);
    return ev;
  }
}

Result<Event> Parser::at_eof(std::span<const std::byte> rest, std::uint64_t offset) const {
  if (!all_zero(rest))
    return fail(Errc::kInvalidInput,
                fmt::format("tar: the archive ends inside a header ({} bytes at byte {})",
                            rest.size(), offset));
  Event ev;
  ev.kind = EventKind::kEnd;
  ev.consumed = rest.size();
  return ev;
}

}  // namespace cfs::oci::tar
