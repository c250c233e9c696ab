// SPDX-License-Identifier: Apache-2.0
// The work behind `mkcomposefs` and `cfs create`: source -> objects -> sync -> image -> commit.
// Read a source (directory scan or dump file), fill the object store while the scan digests
// each file, make the objects durable (one syncfs) before anything names them, write the image
// and publish it by the output rule (cfs/util/output.h). Both front ends only parse their
// options into a BuildConfig and print the BuildReport; a progress line reads BuildProgress.
// Thread-safety: build_image() may run while another thread reads its BuildProgress.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "cfs/scan/scan.h"
#include "cfs/store/object_store.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::compose {

struct BuildConfig {
  std::string source;                ///< directory, or dump file with from_file ("-" = stdin)
  std::optional<std::string> image;  ///< output path, "-" = stdout, nullopt = no image
  int image_fd = -1;  ///< instead of `image`: write the image to this open file (a repository)
  std::optional<std::string> digest_store;
  /// Existing objects: compare the full digest where the kernel has no measurement.
  bool verify_existing = false;
  bool from_file = false;
  bool strict = false;  ///< dump strict mode (CFS_PARSE_STRICT)
  bool use_epoch = false;
  bool skip_devices = false;
  bool skip_xattrs = false;
  bool user_xattrs = false;
  bool hardlinks = false;
  /// fs-verity algorithm of the files' digests (directory sources: object names, metacopy
  /// values) and of the image digest.
  verity::HashAlg hash = verity::HashAlg::kSha256;
  std::uint32_t min_version = 0;
  std::uint32_t max_version = 1;
  unsigned threads = 0;  ///< 0 = all CPUs
};

/// Live counters of a running build, for a progress display on another thread.
struct BuildProgress {
  scan::ScanCounters scan;
  store::StoreCounters store;
  std::atomic<bool> uses_store{false};  ///< set once the store is open
};

struct BuildReport {
  std::string digest_hex;
  std::uint64_t image_size = 0;
  std::uint32_t version = 0;
  std::uint64_t nodes = 0;           ///< inodes in the tree (before the writer's root stubs)
  std::uint64_t external_files = 0;  ///< regular files backed by objects
  std::uint64_t objects_added = 0;
  std::uint64_t objects_existed = 0;
  std::uint64_t objects_replaced = 0;  ///< damaged existing objects replaced
  std::uint64_t bytes_added = 0;
};

/// Runs the whole build. The image appears under its final name only on success.
Result<BuildReport> build_image(const BuildConfig& cfg, BuildProgress* progress = nullptr);

}  // namespace cfs::compose
