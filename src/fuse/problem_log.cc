// SPDX-License-Identifier: Apache-2.0
#include "fuse/problem_log.h"

#include <fmt/core.h>
#include <syslog.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace cfs::fuse {

void ProblemLog::set_daemonized(bool daemonized) {
  std::lock_guard lock(mu_);
  if (daemonized && !syslog_) ::openlog("cfs-fuse", LOG_PID, LOG_DAEMON);
  syslog_ = daemonized;
}

void ProblemLog::log(const vfs::Problem& p) {
  std::uint64_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    tokens_ =
        std::min(kBurst, tokens_ + kPerSecond * std::chrono::duration<double>(now - last_).count());
    last_ = now;
    if (tokens_ < 1) {
      ++dropped_;
      return;
    }
    tokens_ -= 1;
    dropped = dropped_;
    dropped_ = 0;
  }
  // The path is looked up outside the lock: it walks the image.
  std::string path = "inode " + std::to_string(p.ino);
  if (const vfs::Filesystem* fs = fs_.load()) {
    if (auto found = fs->path_of(p.ino)) path = *found;
  }
  std::string line = path + ": " + p.reason;
  if (!p.object.empty() && p.reason.find(p.object) == std::string::npos)
    line += " (object " + p.object + ")";
  if (dropped) line += fmt::format(" [{} more problems not logged before this one]", dropped);
  std::lock_guard lock(mu_);
  if (syslog_)
    ::syslog(LOG_ERR, "%s", line.c_str());
  else
    fmt::print(stderr, "cfs: {}\n", line);
}

}  // namespace cfs::fuse
