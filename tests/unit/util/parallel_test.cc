// SPDX-License-Identifier: Apache-2.0
// parallel_for: every index exactly once, on at most `threads` threads, the caller included.
#include "cfs/util/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace cfs {
namespace {

TEST(ParallelFor, EveryIndexOnceOnAtMostThreadsThreads) {
  for (unsigned threads : {0u, 1u, 2u, 3u, 8u}) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{5000}}) {
      std::vector<std::atomic<int>> seen(n);
      std::mutex mu;
      std::set<std::thread::id> ids;
      parallel_for(n, threads, [&](std::size_t i) {
        seen[i].fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(mu);
        ids.insert(std::this_thread::get_id());
      });
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(seen[i].load(), 1) << i << " n=" << n;
      EXPECT_LE(ids.size(), std::max(1u, threads)) << "n=" << n;
      if (n > 0 && threads <= 1) {
        EXPECT_EQ(ids, std::set<std::thread::id>{std::this_thread::get_id()});
      }
    }
  }
}

TEST(ParallelFor, RunsConcurrently) {
  // Two items that each wait for the other can only finish on two threads.
  std::atomic<int> arrived{0};
  parallel_for(2, 2, [&](std::size_t) {
    arrived.fetch_add(1);
    while (arrived.load() < 2) std::this_thread::yield();
  });
  EXPECT_EQ(arrived.load(), 2);
}

TEST(ParallelTryFor, ReturnsTheErrorAndStopsStartingItems) {
  std::atomic<std::size_t> ran{0};
  Status st = parallel_try_for(1000, 2, [&](std::size_t i) -> Status {
    ran.fetch_add(1);
    if (i == 3) return fail(Errc::kInvalidInput, "item three");
    return {};
  });
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("item three"), std::string::npos) << st.error().message();
  EXPECT_LT(ran.load(), 1000u);
  EXPECT_TRUE(parallel_try_for(100, 2, [](std::size_t) -> Status { return {}; }));
}

}  // namespace
}  // namespace cfs
