// SPDX-License-Identifier: Apache-2.0
// An output file that appears under its final name only when complete: data goes to a temp
// file in the same directory, commit() fsyncs and renames it into place, and destruction
// without commit() removes the temp file. A failed run therefore never leaves a truncated
// output (upstream mkcomposefs truncates the target before it starts).
#pragma once

#include <sys/types.h>

#include <string>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs {

class AtomicFile {
 public:
  /// Creates "<dir>/.<name>.XXXXXX" with the given final mode.
  static Result<AtomicFile> create(const std::string& path, mode_t mode = 0644);

  AtomicFile(AtomicFile&& o) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  int fd() const noexcept { return fd_.get(); }
  const std::string& path() const noexcept { return path_; }
  const std::string& temp_path() const noexcept { return temp_path_; }

  /// fsync (when durable), close, rename over path.
  Status commit(bool durable = true);

 private:
  AtomicFile(UniqueFd fd, std::string path, std::string temp_path);
  UniqueFd fd_;
  std::string path_;
  std::string temp_path_;
  bool committed_ = false;
};

}  // namespace cfs
