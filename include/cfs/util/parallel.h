// SPDX-License-Identifier: Apache-2.0
// Minimal work distribution: run fn(i) for i in [0, n) on `threads` threads (the caller's
// thread is one of them), items handed out in order through an atomic counter.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace cfs {

/// fn must be thread-safe across distinct indices. threads == 0 means 1.
template <typename Fn>
void parallel_for(std::size_t n, unsigned threads, Fn&& fn) {
  if (threads <= 1 || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  };
  std::vector<std::jthread> pool;
  unsigned extra = static_cast<unsigned>(std::min<std::size_t>(threads, n)) - 1;
  pool.reserve(extra);
  for (unsigned t = 0; t < extra; ++t) pool.emplace_back(worker);
  worker();
}

}  // namespace cfs
