// SPDX-License-Identifier: Apache-2.0
// Consistency check of a repository (docs/repository.md "fsck"):
//   meta.json   version, features, algorithm; security mode (fs-verity on meta.json);
//   objects     every name in objects/: a regular file named by its fs-verity digest (the
//               kernel's measurement where the file has fs-verity, else computed), with
//               fs-verity in a secure repository; anything else is named as a problem;
//   streams     every streams/ entry links to an object that parses as a splitstream whose
//               objects and referenced streams exist; streams/refs/ names an entry;
//   images      every images/ entry links to its own object, a valid composefs image whose
//               files' objects all exist (a lazily registered image's missing objects are
//               a note: repo/lazy.h); images/refs/ names an entry;
//   leftovers   temporary files and links of interrupted writers, stale mount leases.
//
// Problems have stable kebab-case kinds (object-digest-mismatch, object-verity-missing,
// object-not-regular, object-bad-name, broken-link, bad-link, image-corrupt, stream-corrupt,
// missing-object, temp-file, stale-lease). With repair (which needs the repository locked
// exclusively) what can be removed safely is removed: temporary files, corrupt or misnamed
// objects, links that point at nothing, stale leases; what a removed object leaves missing
// is named, and re-running the build (or import) that made it writes it again.
//
// Thread-safety: one call at a time per repository; objects are checked on `threads` threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "cfs/repo/repository.h"
#include "cfs/util/result.h"

namespace cfs::repo {

struct FsckOptions {
  bool repair = false;
  unsigned threads = 0;  ///< 0 = all CPUs
};

struct FsckCounters {
  std::atomic<std::uint64_t> objects_total{0};  ///< known once the walk has listed them
  std::atomic<std::uint64_t> objects_checked{0};
  std::atomic<std::uint64_t> bytes_checked{0};
};

struct FsckProblem {
  std::string kind;    ///< see above
  std::string path;    ///< relative to the repository
  std::string detail;  ///< what is wrong
  bool repaired = false;
};

struct FsckReport {
  bool has_metadata = false;  ///< false: an old repository without meta.json
  bool secure = false;
  std::uint64_t objects_checked = 0;
  std::uint64_t bytes_checked = 0;
  std::uint64_t objects_corrupt = 0;
  std::uint64_t streams_checked = 0;
  std::uint64_t streams_corrupt = 0;
  std::uint64_t images_checked = 0;
  std::uint64_t images_corrupt = 0;
  std::uint64_t broken_links = 0;
  std::uint64_t missing_objects = 0;
  std::uint64_t temp_files = 0;
  std::vector<FsckProblem> problems;
  /// Findings that are not problems (temporary files while another process has the
  /// repository open: probably a writer at work).
  std::vector<std::string> notes;
  /// No problem left unrepaired.
  bool ok() const noexcept;
};

Result<FsckReport> fsck(Repository& repo, const FsckOptions& options,
                        FsckCounters* counters = nullptr);

}  // namespace cfs::repo
