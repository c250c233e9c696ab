// SPDX-License-Identifier: Apache-2.0
// The per-inode xattr budget at its limit. The oracle is the rule as the reference document
// states it for composefs 1.0.8 (composefs-format.md §2.1, docs/format.md "Limits"): the sum
// over an inode's xattrs of (7 + key length + value length), plus 12 once, must stay at most
// 32767. The values below are computed from that rule, not from the class.
#include "cfs/overlay/limits.h"

#include <gtest/gtest.h>

namespace cfs::overlay {
namespace {

constexpr std::size_t kDocLimit = 32767;
constexpr std::size_t kDocEntry = 7;
constexpr std::size_t kDocHeader = 12;

// Largest value one more xattr with a key of `key` bytes may have after `used` bytes.
constexpr std::size_t max_value(std::size_t used, std::size_t key) {
  return kDocLimit - used - (used == 0 ? kDocHeader : 0) - kDocEntry - key;
}

TEST(XattrBudget, OneXattrAtTheLimit) {
  // user.a: 12 + 7 + 6 + v <= 32767, so v <= 32742 (issue 11: 32740 must pass).
  ASSERT_EQ(max_value(0, 6), 32742u);
  for (std::size_t v : {32700u, 32740u, 32741u, 32742u}) {
    XattrBudget b;
    EXPECT_TRUE(b.set(6, v)) << v;
  }
  for (std::size_t v : {32743u, 32767u, 40000u, 65535u}) {
    XattrBudget b;
    EXPECT_FALSE(b.set(6, v)) << v;
    EXPECT_EQ(b.used(), 0);  // a refusal changes nothing
  }
}

TEST(XattrBudget, SeveralXattrsAndLongKeys) {
  // Three xattrs: keys of 255, 100 and 10 bytes; the last one gets what is left.
  XattrBudget b;
  std::size_t used = 0;
  ASSERT_TRUE(b.set(255, 10000));
  used += kDocHeader + kDocEntry + 255 + 10000;
  ASSERT_TRUE(b.set(100, 20000));
  used += kDocEntry + 100 + 20000;
  const std::size_t last = max_value(used, 10);
  XattrBudget over = b;
  EXPECT_FALSE(over.set(10, last + 1));
  EXPECT_TRUE(b.set(10, last));
  EXPECT_EQ(static_cast<std::size_t>(b.used()), kDocLimit);
  EXPECT_FALSE(b.set(1, 0));  // even an empty one no longer fits
}

TEST(XattrBudget, ReplacingCountsTheNewValueOnly) {
  XattrBudget b;
  ASSERT_TRUE(b.set(6, 30000));
  // Replacing the only xattr frees everything, header included.
  EXPECT_TRUE(b.set(6, max_value(0, 6), 30000));
  EXPECT_EQ(static_cast<std::size_t>(b.used()), kDocLimit);
  EXPECT_EQ(b.count(), 1u);
  EXPECT_FALSE(b.set(6, max_value(0, 6) + 1, max_value(0, 6)));
}

TEST(XattrBudget, ClonedStartsFromZero) {
  // composefs' writer works on a deep clone that copies the xattrs but not the running size:
  // the header is not charged again, and replacing a copied value goes "below zero", which
  // fails unless the new entry brings the total back to zero or more.
  XattrBudget b = XattrBudget::cloned(2);
  EXPECT_TRUE(b.set(24, 36));  // metacopy
  EXPECT_EQ(static_cast<std::size_t>(b.used()), kDocEntry + 24 + 36);
  XattrBudget c = XattrBudget::cloned(2);
  EXPECT_FALSE(c.set(21, 0, 5));  // user.overlay.whiteout replacing a 5-byte value
  XattrBudget d = XattrBudget::cloned(2);
  EXPECT_TRUE(d.set(21, 0, 0));  // replacing an empty value lands exactly on zero
  EXPECT_EQ(d.used(), 0);
}

}  // namespace
}  // namespace cfs::overlay
