// SPDX-License-Identifier: Apache-2.0
// Writeback of many small files in batches: a thread that runs syncfs(2) on a filesystem in the
// background whenever writers have added `every_bytes` since the last run.
//
// Why not sync_file_range per file: on a virtio disk each call submits that file's pages as
// their own request, and every submission is a doorbell write that exits to the hypervisor
// (a fifth of the samples of a store fill, docs/design.md). The kernel's own flusher plugs
// many inodes into one submission and merges adjacent blocks, but left alone it starts only
// at the dirty limits (gigabytes) and then throttles the writers; a periodic syncfs keeps the
// dirty data bounded and the disk busy, from one thread, while the writers never wait.
//
// Durability is unchanged: this only starts writeback earlier. The caller's own final syncfs
// is still what makes data durable, and it still reports every writeback error: the thread
// syncs through its own open file description (syncfs reports an error once per open file),
// and the first error it sees is kept for status().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cfs/util/result.h"

namespace cfs {

class BackgroundSync {
 public:
  /// Runs `sync` in the background (syncfs_every() gives the usual one). The thread starts
  /// with the first run.
  BackgroundSync(std::function<Status()> sync, std::uint64_t every_bytes);

  BackgroundSync(const BackgroundSync&) = delete;
  BackgroundSync& operator=(const BackgroundSync&) = delete;
  /// Waits for a run in progress; starts no new one.
  ~BackgroundSync();

  /// Writers report bytes written; crossing the next multiple of every_bytes requests a run.
  /// Never blocks on the sync: requests made while one runs are folded into one more run.
  void added(std::uint64_t bytes);

  /// Runs completed so far.
  std::uint64_t runs() const;

  /// The first error of a background run, if any.
  Status status() const;

 private:
  void loop();

  std::function<Status()> sync_;
  std::uint64_t every_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t pending_bytes_ = 0;  // since the last request
  bool requested_ = false;
  bool stop_ = false;
  std::uint64_t runs_ = 0;
  std::optional<Error> error_;
  std::thread thread_;
};

/// The object stores' batch: large enough that a run submits many small files at once, small
/// enough to keep the disk busy from the start (usr-subset, 1.4 GB in 62k files: ~20 runs).
inline constexpr std::uint64_t kSyncEveryDefault = 64 << 20;

/// A BackgroundSync that runs syncfs(2) on the filesystem of the directory `dirfd`, through a
/// descriptor of its own (the directory reopened, see above); `what` names it in errors.
Result<std::unique_ptr<BackgroundSync>> syncfs_every(int dirfd, const std::string& what,
                                                     std::uint64_t every_bytes = kSyncEveryDefault);

}  // namespace cfs
