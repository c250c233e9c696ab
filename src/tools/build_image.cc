// SPDX-License-Identifier: Apache-2.0
#include "tools/build_image.h"

#include <fmt/core.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>

namespace cfs::tools {
namespace {

// Redraws one status line on stderr every 200 ms while the build runs.
class ProgressLine {
 public:
  ProgressLine(bool enabled, std::function<std::string()> render)
      : enabled_(enabled), render_(std::move(render)) {
    if (enabled_) thread_ = std::jthread([this](std::stop_token st) { loop(st); });
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine() {
    if (!enabled_) return;
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    fmt::print(stderr, "\r{}\x1b[K\n", render_());
  }

 private:
  void loop(const std::stop_token&) {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return done_; })) {
      fmt::print(stderr, "\r{}\x1b[K", render_());
      std::fflush(stderr);
    }
  }

  bool enabled_;
  std::function<std::string()> render_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::jthread thread_;
};

double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

Result<BuildReport> build_image(const BuildConfig& cfg) {
  compose::BuildProgress live;
  // Directory sources only: a dump names its objects without copying them.
  ProgressLine line(cfg.progress && !cfg.from_file, [&] {
    std::string s =
        fmt::format("{}: scanned {} entries, digested {} files ({:.0f} MiB)", cfg.program,
                    live.scan.entries.load(), live.scan.files_digested.load(),
                    mib(live.scan.bytes_digested.load()));
    if (live.uses_store.load())
      s += fmt::format("; objects: {} copied ({:.0f} MiB), {} already present",
                       live.store.added.load(), mib(live.store.bytes_added.load()),
                       live.store.existed.load());
    return s;
  });
  return compose::build_image(cfg, &live);
}

}  // namespace cfs::tools
