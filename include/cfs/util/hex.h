// SPDX-License-Identifier: Apache-2.0
// Hexadecimal text: the one alphabet and decoder of the project (digests, object names, dump
// escapes, root stub names). Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cfs {

/// The lowercase alphabet every printed hex string uses.
inline constexpr std::string_view kHexDigits = "0123456789abcdef";

/// Value of a hex digit, either case; -1 for any other character.
int hex_value(char c) noexcept;
/// Value of a lowercase hex digit; -1 for anything else (upper case included): the canonical
/// form of object names and digests as cfs prints them.
int hex_value_lower(char c) noexcept;

/// Lowercase hex of bytes.
std::string to_hex(std::span<const std::uint8_t> bytes);
/// Appends the lowercase hex of bytes to out.
void append_hex(std::string& out, std::span<const std::uint8_t> bytes);
/// Parses hex (either case, even length); nullopt on any other character or odd length.
std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex);
/// Decodes hex into exactly out.size() bytes: `hex` must have 2 * out.size() digits, lowercase
/// only when `lower_only`. False (out unspecified) otherwise.
bool decode_hex(std::string_view hex, std::span<std::uint8_t> out, bool lower_only) noexcept;

}  // namespace cfs
