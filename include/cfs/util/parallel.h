// SPDX-License-Identifier: Apache-2.0
// Minimal work distribution: run fn(i) for i in [0, n) on `threads` threads (the caller's
// thread is one of them), items handed out in order through an atomic counter.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "cfs/util/result.h"

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

/// parallel_for of fallible work: fn(i) returns a Status. After a failure no new item starts,
/// and the error returned is that of the lowest failing index, so which error a user sees does
/// not depend on scheduling.
template <typename Fn>
Status parallel_try_for(std::size_t n, unsigned threads, Fn&& fn) {
  std::mutex mu;
  std::optional<std::pair<std::size_t, Error>> first;
  std::atomic<bool> failed{false};
  parallel_for(n, threads, [&](std::size_t i) {
    if (failed.load(std::memory_order_relaxed)) return;
    Status st = fn(i);
    if (st) return;
    failed.store(true, std::memory_order_relaxed);
    std::lock_guard lock(mu);
    if (!first || i < first->first) first.emplace(i, std::move(st).error());
  });
  if (first) return fail(std::move(first->second));
  return {};
}

}  // namespace cfs
