// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "registry/client_impl.h"
#include "registry/progress_tracker.h"

namespace cfs::registry::detail {
namespace {

using Kind = TransferEvent::Kind;

TEST(Backoff, DoublesCapsAndHonoursRetryAfter) {
  RetryOptions o{4, 0.5, 3.0};
  Backoff b(o);
  EXPECT_EQ(b.next(-1), 0.5);
  EXPECT_EQ(b.next(-1), 1.0);
  EXPECT_EQ(b.next(7), 3.0);  // Retry-After, capped
  EXPECT_EQ(b.next(0), 0.0);
  EXPECT_EQ(b.next(-1), std::nullopt);
  EXPECT_EQ(b.retries(), 4u);  // what a "gave up after N retries" error says
}

TEST(Backoff, NoRetryWhoseWaitEndsAfterTheGiveUpTime) {
  // The retries of the default options (1, 2, 4, 8, 16 s) against a give-up time 3.5 s away: the
  // waits of 1 and 2 s end before it (the clock does not move here), the 4 s one would not.
  RetryOptions o;
  const auto at = std::chrono::steady_clock::now() + std::chrono::milliseconds(3500);
  Backoff b(o, at);
  EXPECT_EQ(b.next(-1), 1.0);
  EXPECT_EQ(b.next(-1), 2.0);
  EXPECT_EQ(b.next(-1), std::nullopt);
  EXPECT_EQ(b.retries(), 2u);  // the refused wait is no retry
  // A Retry-After past it too; one within it is honoured.
  Backoff c(o, at);
  EXPECT_EQ(c.next(5), std::nullopt);
  EXPECT_EQ(c.retries(), 0u);
  Backoff d(o, at);
  EXPECT_EQ(d.next(3), 3.0);
  // Already past: no retry at all.
  Backoff e(o, std::chrono::steady_clock::now() - std::chrono::seconds(1));
  EXPECT_EQ(e.next(0), std::nullopt);
}

TEST(Progress, TotalsCoverSkippedAndResumedBlobs) {
  std::vector<TransferEvent> events;
  ProgressCallback cb = [&](const TransferEvent& e) { events.push_back(e); };
  std::mutex mu;
  ProgressTracker tr(cb, mu);
  tr.expect("a", 100);
  tr.expect("b", 50);
  tr.start("a", TransferEvent::Direction::kDownload, 100, 40);
  EXPECT_EQ(events.back().kind, Kind::kStart);
  EXPECT_EQ(events.back().resumed_from, 40u);
  EXPECT_EQ(events.back().total_bytes, 40u);
  EXPECT_EQ(events.back().total_size, 150u);
  tr.progress("a", 100);
  tr.finish("a", Kind::kDone);
  tr.finish("b", Kind::kSkipped, "already there");
  EXPECT_EQ(events.back().kind, Kind::kSkipped);
  EXPECT_EQ(events.back().message, "already there");
  EXPECT_EQ(events.back().total_bytes, 150u);
  EXPECT_EQ(events.back().bytes, 50u);
  tr.retry("a", 2.5, "HTTP 503");
  EXPECT_EQ(events.back().kind, Kind::kRetry);
  EXPECT_EQ(events.back().retry_delay_s, 2.5);
}

TEST(Progress, NoCallbackNoWork) {
  ProgressCallback none;
  std::mutex mu;
  ProgressTracker tr(none, mu);
  tr.start("a", TransferEvent::Direction::kUpload, std::nullopt, 0);
  tr.progress("a", 5);
  tr.finish("a", Kind::kDone);
}

}  // namespace
}  // namespace cfs::registry::detail
