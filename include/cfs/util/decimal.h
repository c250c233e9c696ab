// SPDX-License-Identifier: Apache-2.0
// Decimal text as strict formats write it (mountinfo fields, HTTP Content-Range values, pax
// records, the lazy metadata's byte-count annotations, the referrers memo): the one parser of
// unsigned decimal numbers outside the C-compatible dump reader (dump/escape.h: signs, spaces,
// octal) and the tar header's octal and base-256 fields (oci/tar.h). Thread-safety: pure
// functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cfs {

/// The value of `s` when it is one or more ASCII digits and nothing else (no sign, space or
/// prefix) and fits in 64 bits; nullopt otherwise: a wrapped value would name another mount,
/// device or byte.
std::optional<std::uint64_t> parse_decimal_u64(std::string_view s) noexcept;

}  // namespace cfs
