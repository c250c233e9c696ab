// SPDX-License-Identifier: Apache-2.0
// trusted.overlay.metacopy values. The byte layout expected here is struct ovl_metacopy as the
// kernel defines it (Linux 6.6+: version 0, len = 4 + digest size, flags 0, digest_algo
// FS_VERITY_HASH_ALG_SHA256 = 1 / SHA512 = 2, then the digest), written out by hand; composefs
// 1.0.8 writes "00 24 00 01" + 32 bytes. Validation results are the kernel's (6.18 experiments:
// ovl_check_metacopy_xattr at lookup, ovl_get_verity_digest at open).
#include "cfs/overlay/metacopy.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace cfs::overlay {
namespace {

std::string bytes(std::initializer_list<int> b, std::size_t digest = 0, char fill = '\xab') {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  s.append(digest, fill);
  return s;
}

verity::Digest filled(verity::HashAlg alg, std::uint8_t v) {
  verity::Digest d = verity::Digest::zero(alg);
  for (std::size_t i = 0; i < d.size; ++i) d.bytes[i] = v;
  return d;
}

TEST(Metacopy, EncodesBothLayouts) {
  EXPECT_EQ(Metacopy::encode(filled(verity::HashAlg::kSha256, 0xab)).view(),
            bytes({0x00, 0x24, 0x00, 0x01}, 32));
  EXPECT_EQ(Metacopy::encode(filled(verity::HashAlg::kSha512, 0xcd)).view(),
            bytes({0x00, 0x44, 0x00, 0x02}, 64, '\xcd'));
}

TEST(Metacopy, DecodeInvertsEncode) {
  for (auto alg : {verity::HashAlg::kSha256, verity::HashAlg::kSha512}) {
    verity::Digest d = filled(alg, 0);
    for (std::size_t i = 0; i < d.size; ++i) d.bytes[i] = static_cast<std::uint8_t>(3 * i + 1);
    auto m = Metacopy::decode(Metacopy::encode(d).view());
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->digest, d);
    EXPECT_EQ(Metacopy::read_digest(Metacopy::encode(d).view()), d);
  }
}

TEST(Metacopy, LookupRejectsOneToThreeBytes) {
  EXPECT_TRUE(Metacopy::check_at_lookup(""));
  EXPECT_TRUE(Metacopy::check_at_lookup(bytes({0, 4, 0, 0})));
  for (std::size_t n = 1; n <= 3; ++n) {
    auto st = Metacopy::check_at_lookup(std::string(n, '\0'));
    ASSERT_FALSE(st);
    EXPECT_TRUE(st.error().is_errno(EIO));
  }
}

TEST(Metacopy, DecodeFollowsKernelValidation) {
  auto ok = Metacopy::decode(bytes({0, 36, 0, 1}, 32));
  ASSERT_TRUE(ok);
  ASSERT_TRUE(ok->has_digest());
  EXPECT_EQ(ok->digest->alg, verity::HashAlg::kSha256);
  EXPECT_EQ(ok->digest->bytes[0], 0xab);

  auto empty = Metacopy::decode("");
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_digest());
  // 4-byte values are not validated by the kernel (no OVL_HAS_DIGEST).
  for (auto v : {bytes({0, 4, 0, 0}), bytes({1, 4, 0, 0}), bytes({0, 5, 0, 0})}) {
    auto r = Metacopy::decode(v);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->has_digest());
  }
  auto algo0 = Metacopy::decode(bytes({0, 36, 0, 0}, 32));
  ASSERT_TRUE(algo0);
  EXPECT_FALSE(algo0->has_digest());

  struct Bad {
    std::string value;
    int err;
  } bad[] = {
      {bytes({1, 36, 0, 1}, 32), EIO},     // unsupported version
      {bytes({0, 32, 0, 1}, 32), EIO},     // len != size
      {bytes({0, 72, 0, 1}, 68), ERANGE},  // larger than OVL_METACOPY_MAX_SIZE
      {bytes({0, 36, 0, 2}, 32), EIO},     // SHA-512 id with a 32-byte digest
      {bytes({0, 68, 0, 1}, 64), EIO},     // SHA-256 id with a 64-byte digest
      {bytes({0, 36, 0, 9}, 32), EIO},     // unknown algorithm
      {std::string(2, '\0'), EIO},         // too small (as at lookup)
  };
  for (const auto& b : bad) {
    auto r = Metacopy::decode(b.value);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is_errno(b.err)) << r.error().message();
  }
  auto sha512 = Metacopy::decode(bytes({0, 68, 0, 2}, 64));
  ASSERT_TRUE(sha512);
  EXPECT_EQ(sha512->digest->alg, verity::HashAlg::kSha512);
  EXPECT_EQ(sha512->digest->size, 64u);
}

TEST(Metacopy, ReaderTakesWhatComposefsTakes) {
  // composefs 1.0.8's reader: any 36-byte value, header unchecked (lcfs_build_node_erofs_xattr).
  auto odd = Metacopy::read_digest(bytes({7, 7, 7, 7}, 32));
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->alg, verity::HashAlg::kSha256);
  EXPECT_EQ(odd->bytes[31], 0xab);
  // The SHA-512 form only with a valid header.
  EXPECT_TRUE(Metacopy::read_digest(bytes({0, 68, 0, 2}, 64)));
  EXPECT_FALSE(Metacopy::read_digest(bytes({0, 68, 0, 1}, 64)));
  EXPECT_FALSE(Metacopy::read_digest(bytes({1, 68, 0, 2}, 64)));
  EXPECT_FALSE(Metacopy::read_digest(""));
  EXPECT_FALSE(Metacopy::read_digest(bytes({0, 4, 0, 0})));
  EXPECT_FALSE(Metacopy::read_digest(bytes({0, 37, 0, 1}, 33)));
}

}  // namespace
}  // namespace cfs::overlay
