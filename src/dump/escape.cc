// SPDX-License-Identifier: Apache-2.0
#include "dump/escape.h"

#include <cstring>
#include <limits>

namespace cfs::dump::detail {
namespace {

int hexdigit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return 10 + (c - 'a');
  if (c >= 'A' && c <= 'F') return 10 + (c - 'A');
  return -1;
}

// C-locale isspace/isgraph/isprint without the locale machinery.
bool is_c_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

}  // namespace

std::optional<std::string_view> unescape(std::string_view in, std::string& scratch,
                                         std::string* err) {
  const char* bs = static_cast<const char*>(std::memchr(in.data(), '\\', in.size()));
  if (bs == nullptr) return in;
  scratch.assign(in.data(), static_cast<std::size_t>(bs - in.data()));
  const char* p = bs;
  const char* end = in.data() + in.size();
  while (p < end) {
    char c = *p++;
    if (c != '\\') {
      scratch.push_back(c);
      continue;
    }
    if (p >= end) {
      *err = "No character after escape";
      return std::nullopt;
    }
    c = *p++;
    switch (c) {
      case '\\':
        scratch.push_back('\\');
        break;
      case 'n':
        scratch.push_back('\n');
        break;
      case 'r':
        scratch.push_back('\r');
        break;
      case 't':
        scratch.push_back('\t');
        break;
      case 'x': {
        // Same checks, in the same order, as upstream's unescape_string().
        if (p >= end) {
          *err = "No hex characters after hex escape";
          return std::nullopt;
        }
        int x1 = hexdigit(*p++);
        if (p >= end) {
          *err = "No hex characters after hex escape";
          return std::nullopt;
        }
        int x2 = hexdigit(*p++);
        if (x1 < 0 || x2 < 0) {
          *err = "Invalid hex characters after hex escape";
          return std::nullopt;
        }
        scratch.push_back(static_cast<char>(x1 << 4 | x2));
        break;
      }
      default:
        *err = std::string("Unsupported escape type ") + c;
        return std::nullopt;
    }
  }
  return std::string_view(scratch);
}

std::optional<std::uint64_t> parse_u64(std::string_view s, unsigned base) noexcept {
  if (s.empty()) return std::nullopt;
  std::size_t i = 0;
  while (i < s.size() && is_c_space(s[i])) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    negative = s[i] == '-';
    ++i;
  }
  std::size_t digits_start = i;
  std::uint64_t v = 0;
  bool overflow = false;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  for (; i < s.size(); ++i) {
    int d = hexdigit(s[i]);
    if (d < 0 || static_cast<unsigned>(d) >= base) break;
    auto ud = static_cast<std::uint64_t>(d);
    if (v > (kMax - ud) / base) overflow = true;
    v = v * base + ud;
  }
  // No digits: strtoull leaves endptr at the start, so the field is "not fully consumed".
  if (i == digits_start || i != s.size()) return std::nullopt;
  if (overflow) return kMax;
  return negative ? (~v + 1) : v;
}

void append_escaped(std::string& out, std::string_view s, unsigned flags) {
  static constexpr char kHex[] = "0123456789abcdef";
  if ((flags & kEscapeLoneDash) && s == "-") {
    out += "\\x2d";
    return;
  }
  const bool noescape_space = (flags & kNoEscapeSpace) != 0;
  const bool escape_equal = (flags & kEscapeEqual) != 0;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    bool hex;
    if (c == '=') {
      hex = escape_equal;
    } else {
      // isprint (0x20..0x7e) for ls paths, isgraph (0x21..0x7e) everywhere else.
      unsigned lo = noescape_space ? 0x20 : 0x21;
      hex = c < lo || c > 0x7e;
    }
    if (hex) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
}

}  // namespace cfs::dump::detail
