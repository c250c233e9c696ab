// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

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
