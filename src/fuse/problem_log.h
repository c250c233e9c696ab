// SPDX-License-Identifier: Apache-2.0
// The FUSE server's log of files it could not serve (vfs::Problem): one line per problem with
// the file's path in the image, the object and the reason, on stderr while the server is in
// the foreground and to syslog (daemon facility, LOG_ERR) once it is daemonized. A token bucket
// keeps a flood (a scan over a damaged store) to a few lines per second; the next line logged
// says how many were left out. No debug option is needed: these are operator messages.
// Thread-safety: log() may be called from every worker thread at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "cfs/vfs/filesystem.h"
#include "cfs/vfs/options.h"

namespace cfs::fuse {

class ProblemLog {
 public:
  /// Lines allowed in a burst, and refilled per second after it.
  static constexpr double kBurst = 20;
  static constexpr double kPerSecond = 5;

  /// The filesystem whose paths the lines name (set once it exists).
  void set_filesystem(const vfs::Filesystem* fs) noexcept { fs_.store(fs); }
  /// From now on to syslog instead of stderr.
  void set_daemonized(bool daemonized);

  void log(const vfs::Problem& p);

 private:
  std::atomic<const vfs::Filesystem*> fs_{nullptr};
  std::mutex mu_;
  bool syslog_ = false;
  double tokens_ = kBurst;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::uint64_t dropped_ = 0;
};

}  // namespace cfs::fuse
