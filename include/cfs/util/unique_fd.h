// SPDX-License-Identifier: Apache-2.0
// Move-only owner of a file descriptor. Thread-safety: like a plain int; do not share mutably.
#pragma once

#include <unistd.h>

#include <utility>

#include "cfs/util/result.h"

namespace cfs {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  /// Closes and ignores errors: use close() for files that were written.
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  /// Closes and reports the error (EIO from delayed writeback shows up here).
  Status close() {
    int fd = release();
    if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) return fail_errno("close");
    return {};
  }

 private:
  int fd_ = -1;
};

}  // namespace cfs
