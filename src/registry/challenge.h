// SPDX-License-Identifier: Apache-2.0
// WWW-Authenticate challenges (RFC 7235 §4.1): `Bearer realm="…",service="…",scope="…"` or
// `Basic realm="…"`, several possibly in one header.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cfs::registry::detail {

struct Challenge {
  std::string scheme;                         ///< lowercased: "basic", "bearer", ...
  std::map<std::string, std::string> params;  ///< names lowercased, values unquoted
};

/// Parses one header value. Malformed parts are skipped; never fails.
std::vector<Challenge> parse_challenges(std::string_view header);

}  // namespace cfs::registry::detail
