// SPDX-License-Identifier: Apache-2.0
// The object-name codec. Expected names are written out by hand from the rule in
// docs/format.md ("ab/cdef…": the first byte's two hex digits, '/', the rest), 62 digits after
// the slash for SHA-256 and 126 for SHA-512 (composefs-rs repositories); the names of real
// files against `fsverity digest` are checked in tests/integration/test_sha512.py.
#include "cfs/tree/object_name.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

namespace cfs::tree {
namespace {

verity::Digest counting(verity::HashAlg alg, std::uint8_t first) {
  verity::Digest d = verity::Digest::zero(alg);
  for (std::size_t i = 0; i < d.size; ++i) d.bytes[i] = static_cast<std::uint8_t>(first + i);
  return d;
}

TEST(ObjectName, Sha256) {
  const verity::Digest d = counting(verity::HashAlg::kSha256, 0xf0);
  const std::string p = object_path(d);
  EXPECT_EQ(p, "f0/f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f");
  EXPECT_EQ(p.size(), object_path_size(verity::HashAlg::kSha256));
  EXPECT_EQ(parse_object_path(p), d);
  EXPECT_EQ(parse_object_path(p, verity::HashAlg::kSha256), d);
  EXPECT_FALSE(parse_object_path(p, verity::HashAlg::kSha512));
}

TEST(ObjectName, Sha512) {
  const verity::Digest d = counting(verity::HashAlg::kSha512, 0x00);
  const std::string p = object_path(d);
  std::string want = "00/";
  for (int i = 1; i < 64; ++i) {
    static constexpr char kDigits[] = "0123456789abcdef";
    want.push_back(kDigits[i >> 4]);
    want.push_back(kDigits[i & 15]);
  }
  EXPECT_EQ(p, want);
  EXPECT_EQ(p.size(), 129u);
  EXPECT_EQ(parse_object_path(p), d);
  EXPECT_EQ(parse_object_path(p)->alg, verity::HashAlg::kSha512);
  EXPECT_FALSE(parse_object_path(p, verity::HashAlg::kSha256));
}

TEST(ObjectName, RejectsAnythingElse) {
  const std::string p = object_path(counting(verity::HashAlg::kSha256, 0xf0));
  EXPECT_TRUE(is_object_path(p));
  EXPECT_FALSE(is_object_path(p.substr(1)));
  EXPECT_FALSE(is_object_path("F0" + p.substr(2)));                  // upper case
  EXPECT_FALSE(is_object_path(p.substr(0, 3) + "A" + p.substr(4)));  // upper case after '/'
  EXPECT_FALSE(is_object_path(p.substr(0, 2) + "x" + p.substr(3)));  // no slash
  EXPECT_FALSE(is_object_path(p.substr(0, 64) + "g"));
  EXPECT_FALSE(is_object_path("../" + p.substr(3)));
  EXPECT_FALSE(is_object_path(std::string("/").append(p, 0, 64)));  // (-O3 -Wrestrict)
  EXPECT_FALSE(is_object_path(p + "0"));
  EXPECT_FALSE(is_object_path(p + p.substr(3)));  // 2+'/'+124: neither length
  EXPECT_FALSE(is_object_path(""));
  EXPECT_FALSE(is_object_path("ab/"));
}

TEST(DigestHex, BothLengthsEitherCase) {
  const verity::Digest d256 = counting(verity::HashAlg::kSha256, 0xa0);
  const verity::Digest d512 = counting(verity::HashAlg::kSha512, 0x10);
  EXPECT_EQ(parse_digest_hex(d256.hex()), d256);
  EXPECT_EQ(parse_digest_hex(d512.hex()), d512);
  std::string upper = d256.hex();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(parse_digest_hex(upper), d256);
  EXPECT_FALSE(parse_digest_hex(d256.hex(), verity::HashAlg::kSha512));
  EXPECT_FALSE(parse_digest_hex(d256.hex().substr(1)));
  EXPECT_FALSE(parse_digest_hex(d256.hex() + "00"));
  EXPECT_FALSE(parse_digest_hex(std::string(63, 'a') + "g"));
  EXPECT_FALSE(parse_digest_hex(""));
}

}  // namespace
}  // namespace cfs::tree
