// SPDX-License-Identifier: Apache-2.0
// HugePageAllocator: large buffers lie in mappings the kernel marks for transparent huge pages
// (its own /proc/self/smaps says so, not our bookkeeping), 2 MiB-aligned from 2 MiB on, those
// under 2 MiB packed into one huge page; freed mappings are reused whole up to a cap and
// unmapped beyond it (the kernel's /proc/self/maps), small buffers come from operator new, and a
// resize does not zero-fill.
#include "cfs/util/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "testutil/smaps.h"

namespace cfs {
namespace {

using huge_pages::kHugeMinBytes;
using huge_pages::kHugePageBytes;
using huge_pages::kKeepBytes;

using testutil::Vma;
using testutil::vma_of;

bool mapped(const void* p) { return vma_of(p).end != 0; }

TEST(HugePages, LargeBuffersAreAlignedHugePageMappings) {
  for (std::size_t n : {kHugeMinBytes, std::size_t{(1 << 20) + 13}, kHugePageBytes,
                        kHugePageBytes + 1, std::size_t{9 << 20}}) {
    HugeBytes b(n);
    ASSERT_EQ(b.size(), n);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % 4096, 0u) << n;
    if (n >= kHugePageBytes) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % kHugePageBytes, 0u) << n;
    }
    Vma v = vma_of(b.data());
    ASSERT_NE(v.end, 0u) << n;
    // "hg": the kernel's VM_HUGEPAGE, what madvise(MADV_HUGEPAGE) sets.
    EXPECT_TRUE(v.advised_huge()) << n << ":" << v.flags;
    // The whole rounded size is writable.
    b.data()[0] = std::byte{1};
    b.data()[n - 1] = std::byte{2};
  }
}

TEST(HugePages, BuffersUnderAHugePageShareOne) {
  const std::size_t n = 300u << 10;
  std::vector<HugeBytes> bufs;
  for (int i = 0; i < 4; ++i) bufs.emplace_back(n);
  // 4 x 300 KiB fit in one 2 MiB stretch: one huge page cleared, not four.
  const auto base = reinterpret_cast<std::uintptr_t>(bufs[0].data()) & ~(kHugePageBytes - 1);
  for (auto& b : bufs) {
    const auto at = reinterpret_cast<std::uintptr_t>(b.data());
    EXPECT_EQ(at & ~(kHugePageBytes - 1), base);
    EXPECT_EQ(at % 4096, 0u);
    std::memset(b.data(), 0x11, n);  // writable; no two overlap: checked below
  }
  for (std::size_t i = 0; i < bufs.size(); ++i)
    for (std::size_t j = i + 1; j < bufs.size(); ++j) {
      const auto a = reinterpret_cast<std::uintptr_t>(bufs[i].data());
      const auto b = reinterpret_cast<std::uintptr_t>(bufs[j].data());
      EXPECT_TRUE(a + n <= b || b + n <= a) << i << " " << j;
    }
  // The mapping stays while any of them does.
  const void* first = bufs[0].data();
  bufs.erase(bufs.begin() + 1, bufs.end());
  EXPECT_TRUE(mapped(first));
}

TEST(HugePages, SmallBuffersAreNotHugePageMappings) {
  HugeBytes b(kHugeMinBytes - 1);
  Vma v = vma_of(b.data());
  ASSERT_NE(v.end, 0u);
  EXPECT_FALSE(v.advised_huge()) << v.flags;
}

TEST(HugePages, AFreedMappingIsReusedWithoutZeroFill) {
  huge_pages::release_kept();
  const std::size_t n = 3u << 20;
  const void* first = nullptr;
  {
    HugeBytes b(n);
    first = b.data();
    std::memset(b.data(), 0x5a, n);
  }
  EXPECT_TRUE(mapped(first));  // kept, not unmapped
  EXPECT_GE(huge_pages::kept_bytes(), 4u << 20);
  HugeBytes again;
  again.resize(n - 100);  // a default-initialising resize: no zero fill of the reused pages
  EXPECT_EQ(static_cast<const void*>(again.data()), first);
  EXPECT_EQ(again[0], std::byte{0x5a});
  EXPECT_EQ(again[n - 101], std::byte{0x5a});
}

// The pool keeps the mappings freed last: a full pool of 2 MiB mappings (another test's, or
// a lazy mount's earlier objects) makes room for a freed 4 MiB one rather than unmapping it, so
// the next 4 MiB buffer reuses it. (Before, the newest was unmapped and the pool stayed as it
// was, never serving a larger buffer again; under --gtest_shuffle this made
// AFreedMappingIsReusedWithoutZeroFill fail after FreedMappingsBeyondTheCapAreUnmapped. The
// tests that depend on what the pool holds now start from an empty one.)
TEST(HugePages, AFullPoolMakesRoomForTheNewestFreedMapping) {
  huge_pages::release_kept();
  {
    std::vector<HugeBytes> bufs;
    for (std::size_t i = 0; i < kKeepBytes / kHugePageBytes + 1; ++i)
      bufs.emplace_back(kHugePageBytes);
  }
  ASSERT_EQ(huge_pages::kept_bytes(), kKeepBytes);  // full, of 2 MiB mappings only
  const std::size_t n = 3u << 20;
  const void* first = nullptr;
  {
    HugeBytes b(n);
    first = b.data();
    b[0] = std::byte{0x33};
  }
  EXPECT_TRUE(mapped(first));
  EXPECT_LE(huge_pages::kept_bytes(), kKeepBytes);
  HugeBytes again;
  again.resize(n);
  EXPECT_EQ(static_cast<const void*>(again.data()), first);
  EXPECT_EQ(again[0], std::byte{0x33});
}

TEST(HugePages, FreedMappingsBeyondTheCapAreUnmapped) {
  huge_pages::release_kept();
  std::vector<HugeBytes> bufs;
  for (std::size_t i = 0; i < kKeepBytes / kHugePageBytes + 3; ++i)
    bufs.emplace_back(kHugePageBytes);
  std::vector<const void*> at;
  for (auto& b : bufs) at.push_back(b.data());
  bufs.clear();
  EXPECT_LE(huge_pages::kept_bytes(), kKeepBytes);
  std::size_t still = 0;
  for (const void* p : at)
    if (mapped(p)) ++still;
  EXPECT_LE(still * kHugePageBytes, kKeepBytes);
  EXPECT_GE(at.size() - still, 3u);  // at least the three past the cap are gone
}

TEST(HugePages, PastTheCapBuffersAreOrdinaryBlocks) {
  // Not touched: a mapping costs no memory until written. From an empty pool: a kept 4 MiB
  // mapping a 2 MiB buffer took would count 4 MiB towards the cap.
  huge_pages::release_kept();
  std::vector<HugeBytes> bufs;
  const std::size_t cap = huge_pages::kLiveBytes / kHugePageBytes;
  for (std::size_t i = 0; i < cap + 2; ++i) bufs.emplace_back(kHugePageBytes);
  std::size_t huge = 0;
  for (const auto& b : bufs)
    if (vma_of(b.data()).advised_huge()) ++huge;
  EXPECT_LE(huge, cap);
  EXPECT_GE(huge, cap - 1);
  EXPECT_FALSE(vma_of(bufs.back().data()).advised_huge());
  bufs.clear();  // the cap counts only what is handed out
  HugeBytes again(kHugePageBytes);
  EXPECT_TRUE(vma_of(again.data()).advised_huge());
}

}  // namespace
}  // namespace cfs
