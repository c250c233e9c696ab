// SPDX-License-Identifier: Apache-2.0
// Where a command's output file goes: one rule for every output (images, dumps, --out-* files),
// documented in docs/design.md "Publishing outputs" and the man pages:
//
//   "-"                        standard output, written as the data comes;
//   absent or a regular file   a new file published atomically by commit() (AtomicFile): a
//                              failed or killed run leaves the old file, or nothing;
//   a symlink                  resolved (every level, relative targets against the link's own
//                              directory) and the rule applied to where it points; a link into
//                              /proc (/dev/stdout, /dev/fd/N) is written through as it stands,
//                              since what it names is an open file of this process;
//   a character device, FIFO   opened and written as the data comes (/dev/null stays a device);
//   anything else              refused: a directory, a block device or a socket.
//
// Streaming outputs are not atomic: a failure can leave part of the data written.
// Thread-safety: one owner.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "cfs/util/atomic_file.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs {

class Output {
 public:
  /// Applies the rule to `path`; errors name the path. Opening a FIFO waits for a reader.
  static Result<Output> open(const std::string& path, mode_t mode = 0644);

  int fd() const noexcept { return fd_; }
  /// True when writes go straight to the destination (stdout, a device, a FIFO, /proc).
  bool streaming() const noexcept { return !atomic_.has_value(); }
  /// True for "-".
  bool is_stdout() const noexcept { return is_stdout_; }

  /// Atomic outputs: fsync (when durable) and publish. Streaming outputs: close (stdout stays).
  Status commit(bool durable = true);

 private:
  Output() = default;
  std::optional<AtomicFile> atomic_;
  UniqueFd stream_;
  int fd_ = -1;
  bool is_stdout_ = false;
  std::string what_;
};

}  // namespace cfs
