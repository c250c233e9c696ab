// SPDX-License-Identifier: Apache-2.0
// An output file that appears under its final name only when complete, replacing whatever
// regular file was there in one rename. Data goes to an unnamed O_TMPFILE file in the target's
// directory, so a run killed at any moment leaves nothing behind; commit() fsyncs (when
// durable) and links it in: directly under the final name when that is free, else under a temp
// name that is then renamed over the old file. Filesystems without O_TMPFILE get a named temp
// from the start. Temp names are "<dir>/.<name>.cfs-tmp-XXXXXX", locked by their writer while
// they exist (cfs/util/temp_file.h), so `cfs fsck --repair` can remove a killed run's leftover.
// Destruction without commit() removes the temp. Upstream mkcomposefs truncates the target
// before it starts, so a failed run leaves a truncated output; this never does.
// What to do with a path that is a symlink, a device or a FIFO is the caller's business
// (cfs/util/output.h applies the rule); AtomicFile always replaces the directory entry.
// Thread-safety: one owner.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs {

class AtomicFile {
 public:
  /// Prepares `path` (its directory must exist). `mode` is subject to the umask.
  static Result<AtomicFile> create(const std::string& path, mode_t mode = 0644);

  AtomicFile(AtomicFile&& o) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  int fd() const noexcept { return fd_.get(); }
  const std::string& path() const noexcept { return path_; }

  /// fsync (when durable), then publish under path() and close.
  Status commit(bool durable = true);

  /// True if `name` (a directory entry) has the form of an AtomicFile temp name.
  static bool is_temp_name(std::string_view name) noexcept;

 private:
  AtomicFile(UniqueFd dir, UniqueFd fd, std::string path, std::string base, std::string temp);
  Status publish_unnamed();
  std::string temp_prefix() const;

  UniqueFd dir_;       ///< the target's directory (O_PATH)
  UniqueFd fd_;        ///< the data
  std::string path_;   ///< as given, for messages
  std::string base_;   ///< final name inside dir_
  std::string temp_;   ///< current temp name inside dir_, empty while the file is unnamed
  bool done_ = false;  ///< committed (or moved from)
};

}  // namespace cfs
