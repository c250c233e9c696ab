// SPDX-License-Identifier: Apache-2.0
#include "cfs/tree/object_name.h"

#include "cfs/util/hex.h"

namespace cfs::tree {
namespace {

constexpr verity::HashAlg kAlgs[] = {verity::HashAlg::kSha256, verity::HashAlg::kSha512};

// The algorithm whose hex digest has `digits` digits, if it is allowed.
std::optional<verity::HashAlg> alg_for_digits(std::size_t digits,
                                              std::optional<verity::HashAlg> want) {
  for (verity::HashAlg a : kAlgs)
    if (digits == 2 * verity::digest_size(a) && (!want || *want == a)) return a;
  return std::nullopt;
}

}  // namespace

std::string object_path(const verity::Digest& digest) {
  std::string s;
  s.reserve(2 * std::size_t{digest.size} + 1);
  append_hex(s, digest.view().first(1));
  s.push_back('/');
  append_hex(s, digest.view().subspan(1));
  return s;
}

std::optional<verity::Digest> parse_object_path(std::string_view path,
                                                std::optional<verity::HashAlg> alg) {
  if (path.size() < 3 || path[2] != '/') return std::nullopt;
  auto a = alg_for_digits(path.size() - 1, alg);
  if (!a) return std::nullopt;
  verity::Digest d = verity::Digest::zero(*a);
  std::span<std::uint8_t> out(d.bytes.data(), d.size);
  if (!decode_hex(path.substr(0, 2), out.first(1), true) ||
      !decode_hex(path.substr(3), out.subspan(1), true))
    return std::nullopt;
  return d;
}

bool is_object_path(std::string_view path, std::optional<verity::HashAlg> alg) {
  return parse_object_path(path, alg).has_value();
}

std::optional<verity::Digest> parse_digest_hex(std::string_view hex,
                                               std::optional<verity::HashAlg> alg) {
  auto a = alg_for_digits(hex.size(), alg);
  if (!a) return std::nullopt;
  verity::Digest d = verity::Digest::zero(*a);
  if (!decode_hex(hex, std::span<std::uint8_t>(d.bytes.data(), d.size), false)) return std::nullopt;
  return d;
}

}  // namespace cfs::tree
