// SPDX-License-Identifier: Apache-2.0
// Turns byte counts from the transfer threads into TransferEvents with rates, ETAs and totals
// (one tracker per public Client call), serialising calls to the user's callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "cfs/registry/progress.h"

namespace cfs::registry::detail {

class ProgressTracker {
 public:
  using Kind = TransferEvent::Kind;
  using Direction = TransferEvent::Direction;

  /// `cb` may be empty (then every call is cheap and does nothing). `cb_mu` serialises the
  /// callbacks of every tracker of one client.
  ProgressTracker(const ProgressCallback& cb, std::mutex& cb_mu) : cb_(cb), cb_mu_(cb_mu) {}

  /// Announces a blob before the work starts, so totals include it from the first event.
  void expect(const std::string& id, std::optional<std::uint64_t> size);
  void start(const std::string& id, Direction dir, std::optional<std::uint64_t> size,
             std::uint64_t resumed_from);
  /// The blob's byte count is now `bytes` (absolute, may go down after a restart).
  void progress(const std::string& id, std::uint64_t bytes);
  void finish(const std::string& id, Kind kind, const std::string& message = {});
  void retry(const std::string& id, double delay_s, const std::string& message);

 private:
  struct Rate {
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> samples;
    double add(std::chrono::steady_clock::time_point t, std::uint64_t bytes);
  };
  struct Blob {
    Direction dir = Direction::kDownload;
    std::optional<std::uint64_t> size;
    std::uint64_t bytes = 0;
    std::uint64_t resumed_from = 0;
    Rate rate;
    double last_rate = 0;
    std::chrono::steady_clock::time_point last_emit{};
  };
  void emit(const std::string& id, Blob& b, Kind kind, const std::string& message,
            double retry_delay_s, std::unique_lock<std::mutex>& lock);

  const ProgressCallback& cb_;
  std::mutex& cb_mu_;
  std::mutex mu_;
  std::map<std::string, Blob> blobs_;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t total_size_ = 0;
  Rate total_rate_;
};

}  // namespace cfs::registry::detail
