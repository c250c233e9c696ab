// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/background_sync.h"

#include <fcntl.h>

#include <utility>

#include "cfs/util/sys.h"

namespace cfs {

BackgroundSync::BackgroundSync(std::function<Status()> sync, std::uint64_t every_bytes)
    : sync_(std::move(sync)), every_(every_bytes == 0 ? 1 : every_bytes) {}

BackgroundSync::~BackgroundSync() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void BackgroundSync::added(std::uint64_t bytes) {
  {
    std::lock_guard lock(mu_);
    pending_bytes_ += bytes;
    if (pending_bytes_ < every_ || stop_) return;
    pending_bytes_ = 0;
    requested_ = true;
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }
  cv_.notify_one();
}

void BackgroundSync::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return requested_ || stop_; });
    if (stop_) return;
    requested_ = false;
    lock.unlock();
    Status st = sync_();
    lock.lock();
    ++runs_;
    if (!st && !error_) error_ = std::move(st).error();
  }
}

std::uint64_t BackgroundSync::runs() const {
  std::lock_guard lock(mu_);
  return runs_;
}

Status BackgroundSync::status() const {
  std::lock_guard lock(mu_);
  if (error_) return fail(*error_);
  return {};
}

Result<std::unique_ptr<BackgroundSync>> syncfs_every(int dirfd, const std::string& what,
                                                     std::uint64_t every_bytes) {
  // A new open file description: syncfs reports a writeback error once per open file, and the
  // caller's final syncfs on its own descriptor must still see it.
  CFS_ASSIGN(UniqueFd own, sys::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto fd = std::make_shared<UniqueFd>(std::move(own));
  return std::make_unique<BackgroundSync>(
      [fd, what]() -> Status { return sys::syncfs(fd->get(), what); }, every_bytes);
}

}  // namespace cfs
