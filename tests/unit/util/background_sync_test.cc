// SPDX-License-Identifier: Apache-2.0
// BackgroundSync: a run per `every` bytes added, never more than one at a time, requests made
// during a run folded into one more run, errors kept for status(), and the real syncfs one.
#include "cfs/util/background_sync.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cfs/util/sys.h"
#include "testutil/temp_dir.h"

namespace cfs {
namespace {

// Waits (up to 10 s) until the runs reach n.
bool wait_runs(const BackgroundSync& bs, std::uint64_t n) {
  for (int i = 0; i < 10000 && bs.runs() < n; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return bs.runs() >= n;
}

TEST(BackgroundSync, RunsOncePerThresholdAndFoldsRequestsDuringARun) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> calls{0}, inside{0}, max_inside{0};
  BackgroundSync bs(
      [&]() -> Status {
        int now = inside.fetch_add(1) + 1;
        max_inside.store(std::max(max_inside.load(), now));
        calls.fetch_add(1);
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return release; });
        inside.fetch_sub(1);
        return {};
      },
      100);
  bs.added(99);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(calls.load(), 0) << "below the threshold nothing runs";
  bs.added(1);  // 100: the first run starts and blocks
  for (int i = 0; i < 10000 && calls.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(calls.load(), 1);
  for (int i = 0; i < 5; ++i) bs.added(100);  // five requests while it runs: one more run
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(wait_runs(bs, 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(bs.runs(), 2U);
  EXPECT_EQ(max_inside.load(), 1);
  EXPECT_TRUE(bs.status());
}

TEST(BackgroundSync, KeepsTheFirstError) {
  std::atomic<int> n{0};
  BackgroundSync bs(
      [&]() -> Status {
        return fail(Errc::kInvalidInput, n.fetch_add(1) == 0 ? "first" : "second");
      },
      10);
  EXPECT_TRUE(bs.status());
  bs.added(10);
  ASSERT_TRUE(wait_runs(bs, 1));
  bs.added(10);
  ASSERT_TRUE(wait_runs(bs, 2));
  auto st = bs.status();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("first"), std::string::npos) << st.error().message();
}

TEST(BackgroundSync, NoThreadWithoutARunAndDestructionStopsIt) {
  std::atomic<int> calls{0};
  {
    BackgroundSync bs(
        [&]() -> Status {
          calls.fetch_add(1);
          return {};
        },
        1000);
    bs.added(10);
  }
  EXPECT_EQ(calls.load(), 0);
}

TEST(BackgroundSync, SyncfsOfADirectory) {
  testutil::TempDir tmp("cfs-bgsync-");
  ASSERT_TRUE(tmp.ok());
  auto dir = sys::open(tmp.path(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir);
  auto bs = syncfs_every(dir->get(), tmp.path(), 1);
  ASSERT_TRUE(bs) << bs.error().message();
  (*bs)->added(1);
  ASSERT_TRUE(wait_runs(**bs, 1));
  EXPECT_TRUE((*bs)->status());
  auto missing = syncfs_every(-1, "nowhere");
  EXPECT_FALSE(missing);
}

}  // namespace
}  // namespace cfs
