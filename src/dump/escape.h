// SPDX-License-Identifier: Apache-2.0
// Dump-format escaping shared by the parser and the printer (private to the dump module).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cfs::dump::detail {

/// Decodes `\\ \n \r \t \xHH` escapes. Returns the decoded text: `in` itself when it holds no
/// backslash (the common case, no copy), else a view of `scratch`. On a bad escape returns
/// nullopt and sets *err to upstream's message.
std::optional<std::string_view> unescape(std::string_view in, std::string& scratch,
                                         std::string* err);

/// strtoull(3) as upstream applies it to numeric fields: leading whitespace, an optional sign
/// (negative values wrap modulo 2^64), overflow saturates to UINT64_MAX, and the whole field
/// must be consumed. nullopt for an empty field or trailing garbage.
std::optional<std::uint64_t> parse_u64(std::string_view s, unsigned base) noexcept;

/// The text up to its first NUL. Upstream keeps names, paths, payloads, digests and xattr keys
/// as C strings: an escaped NUL (\x00) in a dump cuts them there, and its printers stop at
/// one; content and xattr values keep their length.
inline std::string_view cstr(std::string_view s) {
  std::size_t n = s.find('\0');
  return n == std::string_view::npos ? s : s.substr(0, n);
}

/// Escaping flags, as composefs-info uses them.
enum EscapeFlags : unsigned {
  kEscapeStandard = 0,
  kNoEscapeSpace = 1U << 0,   ///< ls paths: printable ASCII incl. space stays literal
  kEscapeEqual = 1U << 1,     ///< xattr keys and values
  kEscapeLoneDash = 1U << 2,  ///< optional fields: "-" alone means "none"
};

/// Appends the escaped form of s to out.
void append_escaped(std::string& out, std::string_view s, unsigned flags);

}  // namespace cfs::dump::detail
