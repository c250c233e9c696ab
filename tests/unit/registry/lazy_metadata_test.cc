// SPDX-License-Identifier: Apache-2.0
// The lazy EROFS's bound by its blob (tests/integration/test_oci_lazy.py mounts a zero-padded
// EROFS against it through a registry).
#include "cfs/registry/lazy_metadata.h"

#include <gtest/gtest.h>

namespace cfs::registry {
namespace {

TEST(LazyErofsLimit, FollowsTheBlobBetweenTheFloorAndTheCap) {
  // A small blob: the floor (every image up to ~300k files fits whatever its compression).
  EXPECT_EQ(lazy_erofs_limit(20'000, true), kLazyErofsFloor);
  EXPECT_EQ(lazy_erofs_limit(0, true), kLazyErofsFloor);
  // Past the floor: kLazyErofsRatio times the blob.
  EXPECT_EQ(lazy_erofs_limit(100'000, true), 100'000 * kLazyErofsRatio);
  // Never past the cap, however large the blob says it is (no overflow either).
  EXPECT_EQ(lazy_erofs_limit(kMaxLazyErofsSize / kLazyErofsRatio + 1, true), kMaxLazyErofsSize);
  EXPECT_EQ(lazy_erofs_limit(~std::uint64_t{0}, true), kMaxLazyErofsSize);
  // An uncompressed EROFS blob is its own bytes: the registry sends each byte held.
  EXPECT_EQ(lazy_erofs_limit(20'000, false), kMaxLazyErofsSize);
}

}  // namespace
}  // namespace cfs::registry
