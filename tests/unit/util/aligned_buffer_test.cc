// SPDX-License-Identifier: Apache-2.0
// AlignedBuffer: every span it hands out starts on a page boundary (what the kernel's copy and
// O_DIRECT need), whatever the size asked for and however often it grows; from one huge page
// on, the buffer is whole huge pages the kernel has marked for transparent huge pages (its own
// /proc/self/smaps is the oracle).
#include "cfs/util/aligned_buffer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <thread>

#include "cfs/util/huge_pages.h"
#include "testutil/smaps.h"

namespace cfs {
namespace {

bool page_aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE)) ==
         0;
}

TEST(AlignedBuffer, EverySizeIsPageAligned) {
  ASSERT_EQ(AlignedBuffer::kAlign % static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), 0u);
  // Sizes glibc serves from its heap (16 bytes past a boundary for a plain malloc) and from
  // mmap, odd ones and exact pages.
  for (std::size_t n :
       {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4096}, std::size_t{4097},
        std::size_t{192 * 1024}, std::size_t{(1 << 20) + 13}, std::size_t{8 << 20}}) {
    AlignedBuffer b;
    auto s = b.get(n);
    EXPECT_EQ(s.size(), n);
    EXPECT_TRUE(page_aligned(s.data())) << n;
    EXPECT_GE(b.capacity(), n);
    EXPECT_EQ(b.capacity() % AlignedBuffer::kAlign, 0u);
    if (n != 0) {
      s[0] = std::byte{1};  // the whole span is writable
      s[n - 1] = std::byte{2};
    }
  }
}

TEST(AlignedBuffer, DataIsTheAlignedStart) {
  AlignedBuffer b;
  EXPECT_EQ(b.data(), nullptr);
  b.reserve((1 << 20) + 1);
  EXPECT_TRUE(page_aligned(b.data()));
  EXPECT_EQ(b.data(), b.get(100).data());
}

TEST(AlignedBuffer, ReusedWithoutReallocatingAndAlignedAfterGrowing) {
  AlignedBuffer b(64 * 1024);
  const std::byte* first = b.get(64 * 1024).data();
  EXPECT_EQ(b.get(100).data(), first);  // smaller requests reuse the memory
  EXPECT_EQ(static_cast<const void*>(b.get_u8(64 * 1024).data()), static_cast<const void*>(first));
  auto grown = b.get(3 * 1024 * 1024 + 5);
  EXPECT_TRUE(page_aligned(grown.data()));
  EXPECT_GE(b.capacity(), grown.size());
}

TEST(AlignedBuffer, OnePerThread) {
  // The intended use: a thread_local buffer, distinct and aligned on every thread.
  auto addr = [] {
    thread_local AlignedBuffer buf;
    return static_cast<const void*>(buf.get(192 * 1024).data());
  };
  const void* main_addr = addr();
  const void* other = nullptr;
  std::thread([&] { other = addr(); }).join();
  EXPECT_TRUE(page_aligned(main_addr));
  EXPECT_TRUE(page_aligned(other));
  EXPECT_NE(main_addr, other);
  EXPECT_EQ(addr(), main_addr);
}

TEST(AlignedBuffer, FromOneHugePageOnItIsAdvisedHugePages) {
  using huge_pages::kHugePageBytes;
  for (std::size_t n : {kHugePageBytes, kHugePageBytes + 1, std::size_t{20} << 20}) {
    AlignedBuffer b;
    auto s = b.get(n);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(s.data()) % kHugePageBytes, 0u) << n;
    EXPECT_EQ(b.capacity() % kHugePageBytes, 0u) << n;
    const testutil::Vma v = testutil::vma_of(s.data());
    ASSERT_NE(v.end, 0u) << n;
    // "hg": the kernel's VM_HUGEPAGE, what madvise(MADV_HUGEPAGE) sets on the mapping.
    EXPECT_TRUE(v.advised_huge()) << n << ":" << v.flags;
    EXPECT_GE(v.end, reinterpret_cast<std::uintptr_t>(s.data()) + b.capacity()) << n;
  }
  // Below a huge page nothing is advised: a 192 KiB read buffer stays 4 KiB pages (glibc's
  // heap or a mapping of its own), so small buffers cost no 2 MiB clearing.
  AlignedBuffer small;
  EXPECT_FALSE(testutil::vma_of(small.get(192 * 1024).data()).advised_huge());
}

TEST(AlignedBuffer, ItsHugePageAdviceEndsWithIt) {
  using huge_pages::kHugePageBytes;
  // A freed 16 MiB block raises glibc's mmap threshold to its size (the dynamic threshold), so
  // that glibc then serves a few MiB from its heap: the case where advice given to a block
  // outlived it and marked heap memory glibc hands out again (whatever lands there faults in
  // 2 MiB pages). Through a volatile pointer so the compiler cannot drop the pair.
  void* volatile big = std::malloc(16u << 20);
  std::free(big);
  const void* was = nullptr;
  {
    AlignedBuffer b;
    was = b.get(kHugePageBytes).data();
    EXPECT_TRUE(testutil::vma_of(was).advised_huge());
  }
  const testutil::Vma v = testutil::vma_of(was);
  EXPECT_FALSE(v.end != 0 && v.advised_huge()) << "still advised: " << v.flags;
}

}  // namespace
}  // namespace cfs
