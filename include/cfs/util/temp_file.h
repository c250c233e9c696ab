// SPDX-License-Identifier: Apache-2.0
// Temporary files behind outputs that must appear whole or not at all (AtomicFile, object
// stores). Preferred: an unnamed O_TMPFILE file (sys::open_unnamed), so an interrupted run leaves
// nothing behind. Where the filesystem has none, a named temp created here: O_EXCL, and locked
// (flock LOCK_SH) by its writer for as long as the name exists, so remove_if_stale() can tell the
// leftover of a killed writer (unlocked: the kernel dropped the lock with the process) from the
// temp of a writer still at work. `cfs fsck --repair` removes leftovers with it.
// Thread-safety: the functions are thread-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::temp {

/// `prefix` followed by 6 random characters from [A-Za-z0-9].
std::string random_name(std::string_view prefix);

/// Creates a new named temp `prefix` + 6 random characters in dirfd (O_CREAT | O_EXCL | flags,
/// `mode` before the umask) and locks it shared. `name` receives the name; `where` names the
/// directory in errors.
Result<UniqueFd> create_named(int dirfd, std::string_view prefix, int flags, mode_t mode,
                              std::string& name, const std::string& where);

/// Removes the temp dirfd/name unless a live writer holds its lock (a regular file only; never
/// follows a symlink). Returns true when removed, false when it is in use or no longer there.
Result<bool> remove_if_stale(int dirfd, const std::string& name);

}  // namespace cfs::temp
