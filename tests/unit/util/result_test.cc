// SPDX-License-Identifier: Apache-2.0
// CFS_TRY / CFS_ASSIGN and their _CTX forms: what propagates, what context is added, and that
// the context expression is evaluated only on failure.
#include "cfs/util/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace cfs {
namespace {

Result<int> value_or_enoent(bool ok) {
  if (!ok) return fail_errno("open x", ENOENT);
  return 42;
}

Status use_try(bool ok, int& reached) {
  CFS_TRY(value_or_enoent(ok));
  reached = 1;
  return {};
}

Result<int> use_assign(bool ok) {
  CFS_ASSIGN(int v, value_or_enoent(ok));
  return v + 1;
}

int g_ctx_calls = 0;
std::string counted_context() {
  ++g_ctx_calls;
  return "loading image";
}

Status use_try_ctx(bool ok) {
  CFS_TRY_CTX(value_or_enoent(ok), counted_context());
  return {};
}

Result<int> use_assign_ctx(bool ok) {
  CFS_ASSIGN_CTX(const int v, value_or_enoent(ok), counted_context());
  CFS_ASSIGN_CTX(int w, value_or_enoent(true), "never used");  // two on one function
  return v + w;
}

TEST(Result, TryPropagatesTheErrorUnchanged) {
  int reached = 0;
  EXPECT_TRUE(use_try(true, reached));
  EXPECT_EQ(reached, 1);
  reached = 0;
  auto st = use_try(false, reached);
  ASSERT_FALSE(st);
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(st.error().is_errno(ENOENT));
  EXPECT_EQ(st.error().context(), "open x");
}

TEST(Result, AssignUnwrapsOrPropagates) {
  EXPECT_EQ(use_assign(true), 43);
  auto r = use_assign(false);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is_errno(ENOENT));
}

TEST(Result, CtxFormsPrependContextOnlyOnFailure) {
  g_ctx_calls = 0;
  EXPECT_TRUE(use_try_ctx(true));
  EXPECT_EQ(use_assign_ctx(true), 84);
  EXPECT_EQ(g_ctx_calls, 0);

  auto st = use_try_ctx(false);
  ASSERT_FALSE(st);
  EXPECT_TRUE(st.error().is_errno(ENOENT));  // the code is kept
  EXPECT_EQ(st.error().context(), "loading image: open x");
  EXPECT_EQ(st.error().message(), "loading image: open x: No such file or directory");

  auto r = use_assign_ctx(false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().context(), "loading image: open x");
  EXPECT_EQ(g_ctx_calls, 2);
}

TEST(Result, CfsErrorsHaveTheirOwnCategory) {
  Error e(Errc::kCorruptImage, "nid 36");
  EXPECT_TRUE(e.is(Errc::kCorruptImage));
  EXPECT_FALSE(e.is_errno(static_cast<int>(Errc::kCorruptImage)));
  EXPECT_EQ(e.message(), "nid 36: corrupt image");
  EXPECT_EQ(Error(Errc::kInvalidInput, "").message(), "invalid input");
}

}  // namespace
}  // namespace cfs
