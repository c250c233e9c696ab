// SPDX-License-Identifier: Apache-2.0
// The writer's split xattr values (head + rest, erofs/plan_internal.h): a value must compare,
// order and print as its bytes, whichever way they are split. Expected values are the bytes
// themselves (std::string comparison), not the writer's output.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "erofs/plan_internal.h"

namespace cfs::erofs::detail {
namespace {

int sign(int v) { return (v > 0) - (v < 0); }

TEST(XattrRef, ValueIsHeadThenRest) {
  const XattrRef plain("trusted.overlay.redirect", "/ab/cd");
  const XattrRef split("trusted.overlay.redirect", "ab/cd", "/");
  std::string scratch;
  EXPECT_EQ(plain.value(scratch), "/ab/cd");
  EXPECT_EQ(split.value(scratch), "/ab/cd");
  EXPECT_EQ(split.value_size(), 6U);
  EXPECT_TRUE(same_value(plain, split));
  EXPECT_TRUE(same_value(split, plain));
  EXPECT_FALSE(same_value(split, XattrRef("k", "ab/ce", "/")));
  EXPECT_FALSE(same_value(split, XattrRef("k", "ab/cd")));  // shorter
}

TEST(XattrRef, CompareIsMemcmpOfTheBytes) {
  // Every split of a few same-length values, including bytes above 0x7f (memcmp compares
  // unsigned bytes).
  const std::vector<std::string> values = {"/abc", "/abd",
                                           "\x80"
                                           "abc",
                                           "0abc", "/abc"};
  std::vector<XattrRef> refs;
  for (const std::string& v : values)
    for (std::size_t cut = 0; cut <= v.size(); ++cut)
      refs.emplace_back("k", std::string_view(v).substr(cut), std::string_view(v).substr(0, cut));
  std::string sa, sb;
  for (const XattrRef& a : refs) {
    for (const XattrRef& b : refs) {
      const std::string va(a.value(sa)), vb(b.value(sb));
      EXPECT_EQ(sign(compare_values(a, b)), sign(va.compare(vb))) << va << " vs " << vb;
      EXPECT_EQ(same_value(a, b), va == vb);
    }
  }
}

}  // namespace
}  // namespace cfs::erofs::detail
