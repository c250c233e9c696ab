// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/hex.h"

#include <array>

namespace cfs {
namespace {

// Digit values by byte (-1: not a digit); bit 4 marks upper case.
constexpr std::array<std::int8_t, 256> kValue = [] {
  std::array<std::int8_t, 256> t{};
  t.fill(-1);
  for (std::size_t c = '0'; c <= '9'; ++c) t[c] = static_cast<std::int8_t>(c - '0');
  for (std::size_t c = 'a'; c <= 'f'; ++c) t[c] = static_cast<std::int8_t>(c - 'a' + 10);
  for (std::size_t c = 'A'; c <= 'F'; ++c) t[c] = static_cast<std::int8_t>(16 + c - 'A' + 10);
  return t;
}();

}  // namespace

int hex_value(char c) noexcept {
  int v = kValue[static_cast<unsigned char>(c)];
  return v < 0 ? -1 : v & 15;
}

int hex_value_lower(char c) noexcept {
  int v = kValue[static_cast<unsigned char>(c)];
  return v < 16 ? v : -1;
}

void append_hex(std::string& out, std::span<const std::uint8_t> bytes) {
  std::size_t at = out.size();
  out.resize(at + 2 * bytes.size());
  for (std::uint8_t b : bytes) {
    out[at++] = kHexDigits[b >> 4];
    out[at++] = kHexDigits[b & 0xf];
  }
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  append_hex(out, bytes);
  return out;
}

bool decode_hex(std::string_view hex, std::span<std::uint8_t> out, bool lower_only) noexcept {
  if (hex.size() != 2 * out.size()) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = lower_only ? hex_value_lower(hex[2 * i]) : hex_value(hex[2 * i]);
    int lo = lower_only ? hex_value_lower(hex[2 * i + 1]) : hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::vector<std::uint8_t> out(hex.size() / 2);
  if (!decode_hex(hex, out, false)) return std::nullopt;
  return out;
}

}  // namespace cfs
