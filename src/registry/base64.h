// SPDX-License-Identifier: Apache-2.0
// Standard base64 (RFC 4648 §4, padded) and base64url without padding (JWT segments), over
// OpenSSL's encoder.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cfs::registry {

std::string base64_encode(std::string_view data);
/// Decodes padded standard base64 (whitespace not allowed); nullopt if malformed.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace cfs::registry
