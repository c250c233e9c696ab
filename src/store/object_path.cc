// SPDX-License-Identifier: Apache-2.0
#include <cstddef>

#include "cfs/store/object_store.h"

namespace cfs::store {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not a valid object name: names are canonical lower case
}

}  // namespace

std::string object_path(const ObjectDigest& digest) {
  std::string s;
  s.reserve(65);
  for (std::size_t i = 0; i < digest.size(); ++i) {
    if (i == 1) s.push_back('/');
    s.push_back(kHex[digest[i] >> 4]);
    s.push_back(kHex[digest[i] & 0xF]);
  }
  return s;
}

bool is_digest_hex(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex)
    if (hex_value(c) < 0) return false;
  return true;
}

std::optional<ObjectDigest> digest_from_object_path(std::string_view payload) {
  if (payload.size() != 65 || payload[2] != '/') return std::nullopt;
  std::string hex;
  hex.reserve(64);
  hex.append(payload.substr(0, 2)).append(payload.substr(3));
  if (!is_digest_hex(hex)) return std::nullopt;
  ObjectDigest d{};
  for (std::size_t i = 0; i < d.size(); ++i)
    d[i] = static_cast<std::uint8_t>(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
  return d;
}

bool is_object_path(std::string_view payload) {
  return digest_from_object_path(payload).has_value();
}

}  // namespace cfs::store
