// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/decimal.h"

#include <gtest/gtest.h>

namespace cfs {
namespace {

// The limits written out by hand (2^64 - 1 = 18446744073709551615): the oracle is the number.
TEST(Decimal, DigitsOnlyAndNothingPastSixtyFourBits) {
  EXPECT_EQ(parse_decimal_u64("0"), 0u);
  EXPECT_EQ(parse_decimal_u64("007"), 7u);
  EXPECT_EQ(parse_decimal_u64("4096"), 4096u);
  EXPECT_EQ(parse_decimal_u64("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_decimal_u64("18446744073709551616"), std::nullopt);
  EXPECT_EQ(parse_decimal_u64("99999999999999999999"), std::nullopt);
  EXPECT_EQ(parse_decimal_u64("000000000000000000001"), std::nullopt);  // 21 digits
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "0x10", "1.0", "1e3"})
    EXPECT_EQ(parse_decimal_u64(bad), std::nullopt) << bad;
}

}  // namespace
}  // namespace cfs
