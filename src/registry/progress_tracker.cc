// SPDX-License-Identifier: Apache-2.0
#include "registry/progress_tracker.h"

namespace cfs::registry::detail {
namespace {

using Clock = std::chrono::steady_clock;
// Rates are measured over this window: long enough to smooth bursts, short enough to follow
// a throttled or stalled connection.
constexpr auto kRateWindow = std::chrono::seconds(3);
constexpr auto kEmitInterval = std::chrono::milliseconds(100);

}  // namespace

double ProgressTracker::Rate::add(Clock::time_point t, std::uint64_t bytes) {
  if (!samples.empty() && bytes < samples.back().second) samples.clear();  // restarted
  samples.emplace_back(t, bytes);
  while (samples.size() > 2 && t - samples[1].first >= kRateWindow) samples.pop_front();
  auto [t0, b0] = samples.front();
  double secs = std::chrono::duration<double>(t - t0).count();
  return secs > 0.05 ? static_cast<double>(bytes - b0) / secs : 0.0;
}

void ProgressTracker::expect(const std::string& id, std::optional<std::uint64_t> size) {
  if (!cb_) return;
  std::lock_guard g(mu_);
  auto [it, inserted] = blobs_.try_emplace(id);
  if (inserted && size) {
    it->second.size = size;
    total_size_ += *size;
  }
}

void ProgressTracker::start(const std::string& id, Direction dir, std::optional<std::uint64_t> size,
                            std::uint64_t resumed_from) {
  if (!cb_) return;
  std::unique_lock lock(mu_);
  auto [it, inserted] = blobs_.try_emplace(id);
  Blob& b = it->second;
  if (!b.size && size) {
    b.size = size;
    total_size_ += *size;
  }
  b.dir = dir;
  total_bytes_ += resumed_from - std::min(resumed_from, b.bytes);
  b.bytes = std::max(b.bytes, resumed_from);
  b.resumed_from = resumed_from;
  emit(id, b, Kind::kStart, {}, 0, lock);
}

void ProgressTracker::progress(const std::string& id, std::uint64_t bytes) {
  if (!cb_) return;
  std::unique_lock lock(mu_);
  Blob& b = blobs_[id];
  total_bytes_ = total_bytes_ - b.bytes + bytes;
  b.bytes = bytes;
  auto now = Clock::now();
  b.last_rate = b.rate.add(now, bytes);
  if (now - b.last_emit < kEmitInterval) return;
  b.last_emit = now;
  emit(id, b, Kind::kProgress, {}, 0, lock);
}

void ProgressTracker::finish(const std::string& id, Kind kind, const std::string& message) {
  if (!cb_) return;
  std::unique_lock lock(mu_);
  Blob& b = blobs_[id];
  if (kind == Kind::kSkipped && b.size) {
    // A skipped blob counts as done, so the total still reaches 100 %.
    total_bytes_ += *b.size - std::min(*b.size, b.bytes);
    b.bytes = *b.size;
  }
  emit(id, b, kind, message, 0, lock);
}

void ProgressTracker::retry(const std::string& id, double delay_s, const std::string& message) {
  if (!cb_) return;
  std::unique_lock lock(mu_);
  emit(id, blobs_[id], Kind::kRetry, message, delay_s, lock);
}

void ProgressTracker::emit(const std::string& id, Blob& b, Kind kind, const std::string& message,
                           double retry_delay_s, std::unique_lock<std::mutex>& lock) {
  TransferEvent ev;
  ev.kind = kind;
  ev.direction = b.dir;
  ev.digest = id;
  ev.bytes = b.bytes;
  ev.size = b.size;
  ev.resumed_from = b.resumed_from;
  ev.rate = b.last_rate;
  if (b.size && b.last_rate > 0 && *b.size >= b.bytes)
    ev.eta_s = static_cast<double>(*b.size - b.bytes) / b.last_rate;
  ev.retry_delay_s = retry_delay_s;
  ev.message = message;
  ev.total_bytes = total_bytes_;
  ev.total_size = total_size_;
  ev.total_rate = total_rate_.add(Clock::now(), total_bytes_);
  if (ev.total_rate > 0 && total_size_ >= total_bytes_)
    ev.total_eta_s = static_cast<double>(total_size_ - total_bytes_) / ev.total_rate;
  // The user's callback runs outside our lock (it may be slow) but inside the client-wide one,
  // so events never interleave.
  std::lock_guard cb_lock(cb_mu_);
  lock.unlock();
  cb_(ev);
}

}  // namespace cfs::registry::detail
