// SPDX-License-Identifier: Apache-2.0
// Renders `cfs oci pull` progress (ocirepo::PullEvent) on a terminal: a status line with the
// blob bytes read across all layers, their total and the rate, and one line per finished layer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>

#include "cfs/ocirepo/pull.h"

namespace cfs::tools {

class PullProgress {
 public:
  /// The callback for PullOptions::progress (this object must outlive the pull). Events come
  /// serialised, so no locking here.
  std::function<void(const ocirepo::PullEvent&)> callback();
  /// Ends the status line.
  void finish();

 private:
  void on_event(const ocirepo::PullEvent& e);
  void status(bool force);

  using Clock = std::chrono::steady_clock;
  Clock::time_point start_ = Clock::now(), drawn_{};
  std::map<std::size_t, std::uint64_t> read_;  ///< blob bytes read, by layer
  std::uint64_t total_ = 0;                    ///< blob bytes of the layers to import
  std::size_t layers_ = 0, done_ = 0;
  bool line_open_ = false;
};

}  // namespace cfs::tools
