// SPDX-License-Identifier: Apache-2.0
// The Merkle tree cache stays within its byte budget, counting what each entry really costs
// (bookkeeping included), so many small files cannot grow it past the budget. Digests come
// from the verity module's one-shot digest (checked against fsverity-utils vectors there).
#include "cfs/vfs/tree_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "cfs/util/sys.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::vfs {
namespace {

UniqueFd memfd_with(const std::string& content) {
  UniqueFd fd(::memfd_create("tree-cache-test", MFD_CLOEXEC));
  EXPECT_GE(fd.get(), 0);
  EXPECT_TRUE(
      sys::pwrite_all(fd.get(), std::as_bytes(std::span(content.data(), content.size())), 0));
  return fd;
}

TEST(TreeCache, StaysWithinItsBudgetForManySmallFiles) {
  constexpr std::size_t kBudget = 16 << 10;
  TreeCache cache(kBudget, "");
  for (int i = 0; i < 500; ++i) {
    std::string content = "file " + std::to_string(i);  // one block: an empty tree
    auto want = verity::digest_bytes(std::as_bytes(std::span(content.data(), content.size())));
    UniqueFd fd = memfd_with(content);
    auto t = cache.get(want, fd.get(), content.size(), std::string("f").append(std::to_string(i)));
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_LE(cache.bytes(), kBudget);
  }
  // Each entry costs at least a few hundred bytes of bookkeeping, whatever its tree.
  EXPECT_GT(cache.entries(), 0u);
  EXPECT_LE(cache.entries() * 300, kBudget);
  EXPECT_GE(cache.bytes(), cache.entries() * 300);
}

TEST(TreeCache, RefusesContentThatDoesNotMatch) {
  TreeCache cache(1 << 20, "");
  std::string content(10000, 'x');
  auto want = verity::digest_bytes(std::as_bytes(std::span(content.data(), content.size())));
  content[5000] = 'y';
  UniqueFd fd = memfd_with(content);
  auto t = cache.get(want, fd.get(), content.size(), "tampered");
  ASSERT_FALSE(t);
  EXPECT_TRUE(t.error().is(Errc::kDigestMismatch));
  EXPECT_EQ(cache.entries(), 0u);
}

}  // namespace
}  // namespace cfs::vfs
