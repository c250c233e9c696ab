// SPDX-License-Identifier: Apache-2.0
// The overlay xattr naming rules. Expected values are the kernel's (Linux 6.18 experiments:
// ovl_xattr_unescape lists trusted.overlay.overlay.X as trusted.overlay.X and hides every other
// trusted.overlay.* name; docs/metacopy.md).
#include "cfs/overlay/xattr.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace cfs::overlay {
namespace {

TEST(OverlayXattr, EscapedNamesLoseOneLevel) {
  EXPECT_EQ(visible_name("trusted.overlay.overlay.foo"), "trusted.overlay.foo");
  EXPECT_EQ(visible_name("trusted.overlay.overlay.overlay.x"), "trusted.overlay.overlay.x");
  EXPECT_EQ(visible_name("trusted.overlay.foo"), std::nullopt);
  EXPECT_EQ(visible_name("trusted.overlay.metacopy"), std::nullopt);
  EXPECT_EQ(visible_name("user.overlay.overlay.foo"), "user.overlay.overlay.foo");
  EXPECT_EQ(visible_name("user.overlay.whiteout"), "user.overlay.whiteout");
  EXPECT_EQ(visible_name("security.selinux"), "security.selinux");
  EXPECT_EQ(visible_name("trusted.foo"), "trusted.foo");
}

TEST(OverlayXattr, RawNameRoundTrips) {
  for (std::string raw : {"trusted.overlay.overlay.opaque", "user.a", "trusted.x",
                          "trusted.overlay.overlay.overlay.y"}) {
    auto visible = visible_name(raw);
    ASSERT_TRUE(visible) << raw;
    EXPECT_EQ(raw_name(*visible), raw);
  }
}

TEST(OverlayXattr, EscapingForTheImage) {
  EXPECT_EQ(escaped_name("trusted.overlay.metacopy"), "trusted.overlay.overlay.metacopy");
  EXPECT_EQ(escaped_name("trusted.overlay.overlay.x"), "trusted.overlay.overlay.overlay.x");
  EXPECT_EQ(escaped_name("trusted.overlayfoo"), "trusted.overlayfoo");
  EXPECT_EQ(escaped_name("user.overlay.opaque"), "user.overlay.opaque");
}

TEST(Whiteout, ChardevZeroIn32Bits) {
  EXPECT_TRUE(is_whiteout(S_IFCHR | 0644, 0));
  EXPECT_TRUE(is_whiteout(S_IFCHR, std::uint64_t{1} << 32));  // composefs keeps 32 bits
  EXPECT_FALSE(is_whiteout(S_IFCHR, 1));
  EXPECT_FALSE(is_whiteout(S_IFBLK, 0));
  EXPECT_FALSE(is_whiteout(S_IFREG, 0));
}

TEST(Redirect, OnlyAbsoluteRedirectsReachData) {
  EXPECT_EQ(*redirect_object_path("/ab/cdef"), "ab/cdef");
  // Empty components are invalid redirects for overlayfs (ovl_get_redirect_xattr: EINVAL),
  // as a kernel mount of such an image shows ("overlayfs: invalid redirect (//ab/...)").
  for (const char* bad : {"//ab/cdef", "/ab//cdef", "/ab/cdef/", "/"}) {
    auto r = redirect_object_path(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is_errno(EINVAL)) << bad << ": " << r.error().message();
  }
  EXPECT_EQ(*redirect_object_path("/../x"), "../x");  // refused later by the resolver (EXDEV)
  EXPECT_FALSE(redirect_object_path("ab/cdef"));
  EXPECT_FALSE(redirect_object_path(""));
}

TEST(Redirect, PayloadAsComposefsReadsIt) {
  EXPECT_EQ(redirect_payload("/ab/cdef"), "ab/cdef");
  EXPECT_EQ(redirect_payload("//ab"), "/ab");  // one slash only
  EXPECT_EQ(redirect_payload("ab"), "ab");
  EXPECT_EQ(redirect_payload(""), "");
}

}  // namespace
}  // namespace cfs::overlay
