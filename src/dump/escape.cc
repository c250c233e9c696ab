// SPDX-License-Identifier: Apache-2.0
#include "dump/escape.h"

#include <array>
#include <cstring>
#include <limits>

#include "cfs/util/hex.h"

namespace cfs::dump::detail {
namespace {

// Bytes printed as-is, per escaping mode: isgraph (0x21..0x7e) or, for ls paths, isprint
// (0x20..0x7e); backslash never, '=' only without kEscapeEqual.
constexpr std::array<bool, 256> literal_table(bool with_space, bool with_equal) {
  std::array<bool, 256> t{};
  for (int c = with_space ? 0x20 : 0x21; c <= 0x7e; ++c) t[static_cast<std::size_t>(c)] = true;
  t['\\'] = false;
  t['='] = with_equal;
  return t;
}
constexpr auto kLiteralGraph = literal_table(false, true);
constexpr auto kLiteralPrint = literal_table(true, true);
constexpr auto kLiteralGraphNoEqual = literal_table(false, false);
constexpr auto kLiteralPrintNoEqual = literal_table(true, false);

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
        int x1 = hex_value(*p++);
        if (p >= end) {
          *err = "No hex characters after hex escape";
          return std::nullopt;
        }
        int x2 = hex_value(*p++);
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
  // Fast path: up to 18 plain decimal/octal digits cannot overflow.
  if (s.size() <= 18) {
    std::uint64_t v = 0;
    bool plain = true;
    for (char c : s) {
      auto d = static_cast<unsigned>(static_cast<unsigned char>(c) - '0');
      if (d >= base) {
        plain = false;
        break;
      }
      v = v * base + d;
    }
    if (plain) return v;
  }
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
    int d = hex_value(s[i]);
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
  if ((flags & kEscapeLoneDash) && s == "-") {
    out += "\\x2d";
    return;
  }
  const bool space = (flags & kNoEscapeSpace) != 0;
  const auto& literal = (flags & kEscapeEqual) != 0
                            ? (space ? kLiteralPrintNoEqual : kLiteralGraphNoEqual)
                            : (space ? kLiteralPrint : kLiteralGraph);
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size() && literal[static_cast<unsigned char>(s[run])]) ++run;
    out.append(s.data() + i, run - i);
    if (run == s.size()) break;
    auto c = static_cast<unsigned char>(s[run]);
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\x";
        out.push_back(kHexDigits[c >> 4]);
        out.push_back(kHexDigits[c & 0xf]);
    }
    i = run + 1;
  }
}

}  // namespace cfs::dump::detail
