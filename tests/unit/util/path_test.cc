// SPDX-License-Identifier: Apache-2.0
// next_component: empty components skipped, as composefs' lookup_path() and the kernel do.
#include "cfs/util/path.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cfs {
namespace {

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> out;
  for (std::size_t pos = 0; auto name = next_component(path, pos);) out.emplace_back(*name);
  return out;
}

TEST(Path, ComponentsSkipEmptyOnes) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split(""), V{});
  EXPECT_EQ(split("/"), V{});
  EXPECT_EQ(split("///"), V{});
  EXPECT_EQ(split("a"), V{"a"});
  EXPECT_EQ(split("/a/b"), (V{"a", "b"}));
  EXPECT_EQ(split("a//b/"), (V{"a", "b"}));
  EXPECT_EQ(split("//./../c"), (V{".", "..", "c"}));
}

}  // namespace
}  // namespace cfs
