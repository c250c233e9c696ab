// SPDX-License-Identifier: Apache-2.0
#include "tools/build_image.h"

#include <fmt/core.h>
#include <malloc.h>

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

// A build's peak memory is the tree plus the writer's plan (docs/design.md). Two glibc
// defaults add ~10 MB to it on a /usr-sized tree: a second scan thread gets a malloc arena of
// its own, whose freed records malloc_trim() cannot hand back (they merge into that arena's
// top, which only the main arena trims), and the mmap threshold rises to the largest block
// ever freed (32 MB), so the writer's multi-MB vectors come from the heap and stay resident
// after they are freed. One arena (the scan threads rarely allocate at the same time; each
// has its tcache) and a fixed 256 KiB threshold: 157 -> 149 MB, CPU unchanged. This is
// process-wide policy, so it is set here, by the program that runs the build, before any
// thread starts, and not inside the compose library.
void tune_allocator_for_build() {
  ::mallopt(M_ARENA_MAX, 1);
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
}

double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

Result<BuildReport> build_image(const BuildConfig& cfg) {
  tune_allocator_for_build();
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
