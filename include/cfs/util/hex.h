// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cfs {

/// Lowercase hex of bytes.
std::string to_hex(std::span<const std::uint8_t> bytes);
/// Parses hex (either case, even length); nullopt on any other character or odd length.
std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex);

}  // namespace cfs
