// SPDX-License-Identifier: Apache-2.0
// Garbage collection of a repository (docs/repository.md "Garbage collection").
//
// Roots: every name under images/refs/ and streams/refs/, the names given as extra roots,
// and the image of every live mount lease (repo/lease.h) — a mounted image keeps its objects
// whether or not a name still points at it. Live: each root image's object and every object
// its files redirect to; each root stream's object, its external objects and, recursively,
// the streams and images it references (an EROFS named by a stream is walked too). Everything
// else in objects/ goes, then the names left pointing at nothing (images/, streams/, refs/),
// leftover temporary files and links, and stale leases.
//
// gc() needs the repository opened with LockMode::kExclusive (no other process has it open,
// so no build is half-way through adding objects it has not named yet); a dry run needs only
// the shared lock and changes nothing. If a root cannot be read completely (a missing or
// damaged image or stream), nothing is deleted: the error names it (run `cfs repo fsck`).
//
// Thread-safety: one call at a time per repository.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "cfs/repo/lease.h"
#include "cfs/repo/repository.h"
#include "cfs/util/result.h"

namespace cfs::repo {

struct GcOptions {
  bool dry_run = false;
  /// Extra roots: image names (refs/NAME, NAME, digest) or stream names (content id, refs/NAME).
  std::vector<std::string> roots;
  unsigned threads = 0;  ///< 0 = all CPUs (the sweep of objects/)
};

/// Live progress (for a progress line).
struct GcCounters {
  std::atomic<std::uint64_t> roots_walked{0};
  std::atomic<std::uint64_t> objects_scanned{0};
  std::atomic<std::uint64_t> objects_removed{0};
};

struct GcReport {
  bool dry_run = false;
  std::vector<std::string> root_images;   ///< image hex digests kept as roots (sorted, unique)
  std::vector<std::string> root_streams;  ///< stream content ids kept as roots
  std::vector<Lease> live_leases;         ///< mounts keeping their image
  std::vector<std::pair<Lease, std::string>> stale_leases;  ///< removed (or would be), why
  std::uint64_t objects_scanned = 0;
  std::uint64_t objects_live = 0;  ///< found in objects/ and kept
  std::uint64_t objects_removed = 0;
  std::uint64_t bytes_removed = 0;  ///< st_size of the removed objects
  std::uint64_t images_pruned = 0;  ///< images/ and images/refs/ links left dangling
  std::uint64_t streams_pruned = 0;
  std::uint64_t temp_removed = 0;   ///< leftover temporary files and links
  std::vector<std::string> strays;  ///< names in objects/ that are neither objects nor temps
};

Result<GcReport> gc(Repository& repo, const GcOptions& options, GcCounters* counters = nullptr);

}  // namespace cfs::repo
