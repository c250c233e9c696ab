// SPDX-License-Identifier: Apache-2.0
// JSON string literals for every command's --json output, with one rule for bytes that are not
// UTF-8 (file names are bytes; JSON text must be Unicode):
//
//   * valid UTF-8 passes through unchanged, except '"' and '\' (escaped with a backslash) and
//     the control characters U+0000..U+001F (\b \t \n \f \r, else \u00XX);
//   * every other byte B (0x80..0xFF that is not part of a valid, shortest-form UTF-8 sequence
//     of a scalar value) becomes the escape \uDCXX of the lone surrogate U+DC00 + B.
//
// This is Python's "surrogateescape" (PEP 383): `json.loads(text)` followed by
// `s.encode("utf-8", "surrogateescape")` (or os.fsencode) gives back the original bytes, and the
// mapping is unambiguous because valid UTF-8 never encodes a surrogate. The output is ASCII plus
// valid UTF-8. Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace cfs::json {

/// Appends `s` to `out` as a quoted JSON string.
void append_string(std::string& out, std::string_view s);

/// `s` as a quoted JSON string.
std::string string(std::string_view s);

}  // namespace cfs::json
