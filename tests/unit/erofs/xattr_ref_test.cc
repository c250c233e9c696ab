// SPDX-License-Identifier: Apache-2.0
// The writer's compact xattrs (erofs/plan_internal.h): interned keys, and values split into a
// head and the rest that must compare, order and print as their bytes, whichever way they are
// split. Expected values are the bytes themselves (std::string comparison), not the writer's
// output.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "erofs/plan_internal.h"

namespace cfs::erofs::detail {
namespace {

int sign(int v) { return (v > 0) - (v < 0); }

TEST(XattrRef, ValueIsHeadThenRest) {
  XattrNames names;
  const XattrRef plain = names.make("trusted.overlay.redirect", "/ab/cd");
  const XattrRef split = names.make("trusted.overlay.redirect", "ab/cd", "/");
  std::string scratch;
  EXPECT_EQ(names.value(plain, scratch), "/ab/cd");
  EXPECT_EQ(names.value(split, scratch), "/ab/cd");
  EXPECT_EQ(split.value_size(), 6U);
  EXPECT_TRUE(names.same_value(plain, split));
  EXPECT_TRUE(names.same_value(split, plain));
  EXPECT_FALSE(names.same_value(split, names.make("k", "ab/ce", "/")));
  EXPECT_FALSE(names.same_value(split, names.make("k", "ab/cd")));  // shorter
}

TEST(XattrRef, KeysAreInternedByTheirBytes) {
  XattrNames names;
  const std::string a = "user.a", a2 = "user.a", b = "user.b";
  const XattrRef x = names.make(a, "1"), y = names.make(a2, "2"), z = names.make(b, "1");
  EXPECT_EQ(x.key, y.key);  // different storage, same bytes
  EXPECT_NE(x.key, z.key);
  EXPECT_EQ(names.key(y), "user.a");
  EXPECT_EQ(names.key(z), "user.b");
}

TEST(XattrRef, HeadsBeyondTheTableAreJoined) {
  // 300 distinct heads: the head table holds 255 (index 0 is the empty head); the others are
  // stored joined, and every value still reads back as its bytes.
  XattrNames names;
  std::vector<std::string> heads;
  for (int i = 0; i < 300; ++i) {
    std::string h = "h";  // appended: Release -O3 -Werror=restrict flags "h" + to_string
    h.append(std::to_string(i)).append("/");
    heads.push_back(std::move(h));
  }
  std::vector<XattrRef> refs;
  for (const std::string& h : heads) refs.push_back(names.make("k", "rest", h));
  std::string scratch;
  for (std::size_t i = 0; i < heads.size(); ++i) {
    EXPECT_EQ(names.value(refs[i], scratch), std::string(heads[i]).append("rest"));
    EXPECT_EQ(refs[i].value_size(), heads[i].size() + 4);
  }
  const std::string whole0 = std::string(heads[0]).append("rest");
  const std::string split299 = std::string(heads[299]).append("res");
  EXPECT_TRUE(names.same_value(refs[0], names.make("k", whole0)));
  EXPECT_TRUE(names.same_value(refs[299], names.make("k", "t", split299)));
}

TEST(XattrRef, CompareIsMemcmpOfTheBytes) {
  // Every split of a few same-length values, including bytes above 0x7f (memcmp compares
  // unsigned bytes).
  const std::vector<std::string> values = {"/abc", "/abd",
                                           "\x80"
                                           "abc",
                                           "0abc", "/abc"};
  XattrNames names;
  std::vector<XattrRef> refs;
  for (const std::string& v : values)
    for (std::size_t cut = 0; cut <= v.size(); ++cut)
      refs.push_back(
          names.make("k", std::string_view(v).substr(cut), std::string_view(v).substr(0, cut)));
  std::string sa, sb;
  for (const XattrRef& a : refs) {
    for (const XattrRef& b : refs) {
      const std::string va(names.value(a, sa)), vb(names.value(b, sb));
      EXPECT_EQ(sign(names.compare_values(a, b)), sign(va.compare(vb))) << va << " vs " << vb;
      EXPECT_EQ(names.same_value(a, b), va == vb);
    }
  }
}

}  // namespace
}  // namespace cfs::erofs::detail
