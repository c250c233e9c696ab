// SPDX-License-Identifier: Apache-2.0
#include "tools/pull_progress.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace cfs::tools {
namespace {

std::string mib(std::uint64_t b) {
  return fmt::format("{:.1f} MiB", static_cast<double>(b) / 1048576.0);
}

}  // namespace

std::function<void(const ocirepo::PullEvent&)> PullProgress::callback() {
  return [this](const ocirepo::PullEvent& e) { on_event(e); };
}

void PullProgress::finish() {
  if (line_open_) fmt::print(stderr, "\r\033[K");
  line_open_ = false;
}

void PullProgress::on_event(const ocirepo::PullEvent& e) {
  using K = ocirepo::PullEvent::Kind;
  switch (e.kind) {
    case K::kResolved:
      layers_ = e.layers;
      total_ = e.total;
      start_ = Clock::now();
      return;
    case K::kLayerStart:
    case K::kLayerBytes:
      read_[e.layer] = e.bytes;
      status(false);
      return;
    case K::kLayerDone:
    case K::kLayerSkipped: {
      ++done_;
      if (e.kind == K::kLayerDone) read_[e.layer] = e.bytes;
      // A skipped layer is nothing to read: it leaves the total.
      if (e.kind == K::kLayerSkipped) total_ -= std::min(total_, e.total);
      finish();
      fmt::print(
          stderr, "layer {}/{} {}: {}\n", e.layer + 1, e.layers, e.diff_id.substr(0, 19),
          e.kind == K::kLayerDone ? "imported " + mib(e.bytes) : std::string("already present"));
      status(true);
      return;
    }
    case K::kMerging:
      finish();
      fmt::print(stderr, "\r\033[Kmerging {} layers", e.layers);
      line_open_ = true;
      return;
  }
}

void PullProgress::status(bool force) {
  auto now = Clock::now();
  // A terminal line ten times a second is plenty; the layers read far more often.
  if (!force && now - drawn_ < std::chrono::milliseconds(100)) return;
  drawn_ = now;
  std::uint64_t read = 0;
  for (const auto& [layer, n] : read_) read += n;
  double secs = std::chrono::duration<double>(now - start_).count();
  // A rate as soon as anything was read: a small pull may finish within the first 50 ms.
  std::string rate = read > 0 && secs > 0
                         ? fmt::format("{:.1f} MiB/s", static_cast<double>(read) / 1048576.0 / secs)
                         : "-";
  fmt::print(stderr, "\r\033[Klayers {}/{} done, {} of {} ({}%), {}", done_, layers_, mib(read),
             mib(total_), total_ ? read * 100 / total_ : 100, rate);
  line_open_ = true;
}

}  // namespace cfs::tools
