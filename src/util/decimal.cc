// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/decimal.h"

namespace cfs {

std::optional<std::uint64_t> parse_decimal_u64(std::string_view s) noexcept {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return std::nullopt;  // 20 digits reach past 2^64 - 1
    v = v * 10 + digit;
  }
  return v;
}

}  // namespace cfs
