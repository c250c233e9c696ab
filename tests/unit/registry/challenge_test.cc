// SPDX-License-Identifier: Apache-2.0
#include "registry/challenge.h"

#include <gtest/gtest.h>

namespace cfs::registry::detail {
namespace {

TEST(Challenge, BearerWithQuotedCommas) {
  auto c =
      parse_challenges(R"(Bearer realm="https://auth.example/token",service="registry.example",)"
                       R"(scope="repository:a/b:pull,push",error="insufficient_scope")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params.at("realm"), "https://auth.example/token");
  EXPECT_EQ(c[0].params.at("service"), "registry.example");
  EXPECT_EQ(c[0].params.at("scope"), "repository:a/b:pull,push");
  EXPECT_EQ(c[0].params.at("error"), "insufficient_scope");
}

TEST(Challenge, SeveralSchemesTokensAndEscapes) {
  auto c = parse_challenges(R"(Basic Realm="a \"quoted\" realm" , BEARER realm=tok, x = "y")");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params.at("realm"), "a \"quoted\" realm");
  EXPECT_EQ(c[1].scheme, "bearer");
  EXPECT_EQ(c[1].params.at("realm"), "tok");
  EXPECT_EQ(c[1].params.at("x"), "y");
}

TEST(Challenge, JunkNeverLoopsOrThrows) {
  for (const char* s : {"", ",,,", "\"", "Bearer realm=\"unterminated", "=x", "Basic , , realm",
                        "a=b=c", "\x01\x02"}) {
    auto c = parse_challenges(s);
    for (const auto& ch : c) EXPECT_FALSE(ch.scheme.empty()) << s;
  }
  EXPECT_EQ(parse_challenges("Bearer realm=\"unterminated")[0].params.at("realm"), "unterminated");
}

}  // namespace
}  // namespace cfs::registry::detail
