// SPDX-License-Identifier: Apache-2.0
// Walking, classifying and verifying an object store: the code `cfs fsck` uses, written so the
// repository's gc and fsck can use it too. Nothing here opens an entry for reading before it
// is known to be a regular file, and objects are opened only through ObjectDirs, the mounts'
// resolver, so a verdict of "good" means "the mount serves it".
// Thread-safety: the functions are stateless; verify_object() may run on many threads at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/store/object_dirs.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::store {

/// Temp files of interrupted adds (and of other writers that name their temps this way) start
/// with this prefix: ".tmp" + 6 random characters.
inline constexpr std::string_view kTempPrefix = ".tmp";

enum class EntryKind : std::uint8_t {
  kObject,  ///< a regular file with an object name in its fan-out directory
  kTemp,    ///< a regular file named kTempPrefix…: an add in progress, or a killed one's leftover
  kStray,   ///< anything else (why says what)
};

struct Entry {
  std::string rel;  ///< path below the store ("ab/cdef…", ".tmpXYZ")
  EntryKind kind = EntryKind::kStray;
  std::string why;  ///< for kStray: what is wrong with it
};

/// Lists the store open at `store_fd` (`display` names it in errors), sorted by path, with
/// fstatat only: the top level should hold only fan-out directories (two lowercase hex digits;
/// a symlink is not one), the fan-out directories only objects whose name fits the directory.
Result<std::vector<Entry>> walk(int store_fd, const std::string& display);

/// What is wrong with an object, when something is.
struct ObjectProblem {
  std::string kind;  ///< "missing", "refused" (exists, but the mounts will not serve it), "corrupt"
  std::string detail;  ///< the reason, naming the object and what was found
};

/// The kind of problem an ObjectDirs error is ("missing" or "refused"), or nullopt when it is
/// an operational error (EIO, EACCES, ...) rather than a finding about the store. An invalid
/// redirect (EINVAL from ObjectDirs::open_backing) is "refused".
std::optional<std::string> problem_kind(const Error& e);

struct VerifyOptions {
  std::optional<verity::Digest> digest;  ///< the object must have this fs-verity digest
  std::optional<std::uint64_t> size;     ///< the object must have this size (checked first)
  unsigned threads = 1;                  ///< for computing one digest
};

/// The size and digest checks of verify_object() on an object already open at `fd` (found
/// through ObjectDirs); `what` names it in messages.
Result<std::optional<ObjectProblem>> verify_fd(int fd, const std::string& what,
                                               const VerifyOptions& opts);

/// Checks the object `rel` as the mounts would read it: found through `dirs` (a missing or
/// refused object is a problem), then its size, then its fs-verity digest (the kernel's
/// measurement when it has one, else computed). An error is an operational failure.
Result<std::optional<ObjectProblem>> verify_object(const ObjectDirs& dirs, std::string_view rel,
                                                   const VerifyOptions& opts);

}  // namespace cfs::store
