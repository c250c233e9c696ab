// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/hex.h"

#include <gtest/gtest.h>

namespace cfs {
namespace {

TEST(Hex, RoundTrip) {
  std::vector<std::uint8_t> bytes{0x00, 0x7f, 0x80, 0xff, 0x1a};
  EXPECT_EQ(to_hex(bytes), "007f80ff1a");
  auto back = from_hex("007F80ff1A");
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, bytes);
}

TEST(Hex, RejectsBadInput) {
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
  EXPECT_FALSE(from_hex("0g"));
}

}  // namespace
}  // namespace cfs
