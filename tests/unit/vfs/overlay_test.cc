// SPDX-License-Identifier: Apache-2.0
// The overlay xattr rules. Expected values are the kernel's, as recorded in
// ../shared/reference/overlayfs.md §1, §2.1 and the table of §10 (Linux 6.18 experiments).
#include "cfs/vfs/overlay.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace cfs::vfs {
namespace {

TEST(OverlayXattr, EscapedNamesLoseOneLevel) {
  EXPECT_EQ(visible_xattr_name("trusted.overlay.overlay.foo"), "trusted.overlay.foo");
  EXPECT_EQ(visible_xattr_name("trusted.overlay.overlay.overlay.x"), "trusted.overlay.overlay.x");
  EXPECT_EQ(visible_xattr_name("trusted.overlay.foo"), std::nullopt);
  EXPECT_EQ(visible_xattr_name("trusted.overlay.metacopy"), std::nullopt);
  EXPECT_EQ(visible_xattr_name("user.overlay.overlay.foo"), "user.overlay.overlay.foo");
  EXPECT_EQ(visible_xattr_name("user.overlay.whiteout"), "user.overlay.whiteout");
  EXPECT_EQ(visible_xattr_name("security.selinux"), "security.selinux");
  EXPECT_EQ(visible_xattr_name("trusted.foo"), "trusted.foo");
}

TEST(OverlayXattr, RawNameRoundTrips) {
  for (std::string raw : {"trusted.overlay.overlay.opaque", "user.a", "trusted.x",
                          "trusted.overlay.overlay.overlay.y"}) {
    auto visible = visible_xattr_name(raw);
    ASSERT_TRUE(visible) << raw;
    EXPECT_EQ(raw_xattr_name(*visible), raw);
  }
}

std::string bytes(std::initializer_list<int> b, std::size_t digest = 0) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  s.append(digest, '\xab');
  return s;
}

TEST(Metacopy, LookupRejectsOneToThreeBytes) {
  EXPECT_TRUE(check_metacopy_at_lookup(""));
  EXPECT_TRUE(check_metacopy_at_lookup(bytes({0, 4, 0, 0})));
  for (std::size_t n = 1; n <= 3; ++n) {
    auto st = check_metacopy_at_lookup(std::string(n, '\0'));
    ASSERT_FALSE(st);
    EXPECT_TRUE(st.error().is_errno(EIO));
  }
}

TEST(Metacopy, ParseFollowsKernelValidation) {
  // The parsed digest points into the value, which must outlive it.
  const std::string value = bytes({0, 36, 0, 1}, 32);
  auto ok = parse_metacopy(value);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->has_digest());
  EXPECT_EQ(ok->digest.size(), 32u);
  EXPECT_EQ(ok->digest[0], 0xab);

  auto empty = parse_metacopy("");
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_digest());
  // 4-byte values are not validated by the kernel (f_badver, f_badlen in §10).
  for (auto v : {bytes({0, 4, 0, 0}), bytes({1, 4, 0, 0}), bytes({0, 5, 0, 0})}) {
    auto r = parse_metacopy(v);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->has_digest());
  }
  auto algo0 = parse_metacopy(bytes({0, 36, 0, 0}, 32));
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
      {bytes({0, 36, 0, 9}, 32), EIO},     // unknown algorithm
  };
  for (const auto& b : bad) {
    auto r = parse_metacopy(b.value);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is_errno(b.err)) << r.error().message();
  }
  auto sha512 = parse_metacopy(bytes({0, 68, 0, 2}, 64));
  ASSERT_TRUE(sha512);
  EXPECT_EQ(sha512->digest.size(), 64u);
}

TEST(Redirect, OnlyAbsoluteRedirectsReachData) {
  EXPECT_EQ(*redirect_object_path("/ab/cdef"), "ab/cdef");
  EXPECT_EQ(*redirect_object_path("//ab/cdef"), "ab/cdef");
  EXPECT_EQ(*redirect_object_path("/../x"), "../x");  // refused later by the resolver (EXDEV)
  EXPECT_FALSE(redirect_object_path("ab/cdef"));
  EXPECT_FALSE(redirect_object_path(""));
}

}  // namespace
}  // namespace cfs::vfs
