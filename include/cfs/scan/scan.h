// SPDX-License-Identifier: Apache-2.0
// Directory-scan source: builds the shared Tree from a directory exactly as mkcomposefs 1.0.8
// does (composefs-tools.md §1.1), in parallel.
//
// What each entry becomes: mode (with type), uid, gid, rdev, mtime (sec + nsec, or 0 with
// use_epoch) from lstat; symlink targets from readlink; xattrs of the entry itself (never of a
// symlink's target); regular files of 1..64 bytes are inlined (content, no digest, no payload);
// larger ones get their fs-verity digest (SHA-256, or SHA-512 with ScanOptions::hash) and the
// payload "ab/cdef…" (its object name); empty files get nothing. Xattrs count against
// composefs' per-inode budget (overlay::XattrBudget), as in a dump. Non-directories have nlink
// 1 unless `hardlinks` is set (see ScanOptions).
//
// Parallelism: directories are scanned by a pool of `threads` workers (getdents64 with a
// large buffer, fstatat/readlinkat/openat relative to the directory fd, listxattrat); small
// files are digested by the worker that found them while their directory fd is open, large
// files are queued and digested by whichever worker is free. The tree is then assembled in
// sorted order on one thread, so the result does not depend on thread count or readdir order.
//
// Thread-safety: scan_directory() is reentrant; ScanCounters may be read from another thread
// while a scan runs (relaxed atomics, for progress display only).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cfs/overlay/limits.h"
#include "cfs/tree/tree.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::scan {

/// Files up to this size are stored inline in the image (overlay::kInlineThreshold).
inline constexpr std::uint64_t kInlineMax = overlay::kInlineThreshold;

/// Live progress of a scan, for a progress line on a terminal.
struct ScanCounters {
  std::atomic<std::uint64_t> entries{0};  ///< directory entries stat'ed
  std::atomic<std::uint64_t> files_digested{0};
  std::atomic<std::uint64_t> bytes_digested{0};
};

/// Receives every digested regular file during the scan, e.g. to copy it into an object store
/// while its bytes are still in the CPU caches instead of reading the tree a second time.
/// Called from the scan's worker threads, concurrently; an error aborts the scan.
class FileSink {
 public:
  virtual ~FileSink() = default;
  /// `content` is the whole file when the scan read it into memory (files under 1 MiB), else
  /// empty: read it from `fd` (open read-only, file offset 0). `display` names the file.
  virtual Status file_digested(const verity::Digest& digest, int fd,
                               std::span<const std::byte> content, const std::string& display) = 0;
};

struct ScanOptions {
  bool use_epoch = false;     ///< all mtimes 0 (root included)
  bool skip_devices = false;  ///< drop block and char devices (whiteouts too, like upstream)
  bool skip_xattrs = false;   ///< read no xattrs
  bool user_xattrs = false;   ///< only "user.*" (conflicts with skip_xattrs: kInvalidInput)
  /// Keep hardlinks (composefs-rs behaviour, upstream PR composefs#446): non-directories with
  /// the same (st_dev, st_ino) become one node; the first path in sorted depth-first order owns
  /// it and the others are Entry::hardlink entries. The node's nlink is the number of names it
  /// has inside the scanned tree (what composefs-rs writes, so image digests agree; links
  /// outside the tree are not counted). Whiteouts (char 0/0) are never merged: a hardlinked
  /// whiteout is invalid for overlayfs. Without this option every non-directory has nlink 1.
  bool hardlinks = false;
  /// fs-verity algorithm of the file digests (and so of the object names).
  verity::HashAlg hash = verity::HashAlg::kSha256;
  unsigned threads = 0;              ///< 0 = all available CPUs
  ScanCounters* counters = nullptr;  ///< optional live progress
  FileSink* sink = nullptr;          ///< optional consumer of each digested file
};

/// A regular file whose content lives in the object store: the node and its size. No path: a
/// string per file would be a fifth of the tree's memory on /usr, and the store is filled
/// during the scan (ScanOptions::sink); Tree lookups give names when needed.
struct SourceFile {
  NodeId node = kNoNode;
  std::uint64_t size = 0;
};

struct ScanResult {
  Tree tree;
  /// Every regular file with a payload (size > kInlineMax), in sorted depth-first order, one
  /// per node (hardlink entries are not repeated).
  std::vector<SourceFile> external_files;
  std::uint64_t entries = 0;  ///< entries in the tree, root included
};

/// Scans the directory at `path`. Errors name the entry ("path/to/entry: ...") relative to
/// `path` joined onto it; the first failing entry aborts the scan.
Result<ScanResult> scan_directory(const std::string& path, const ScanOptions& opts = {});

}  // namespace cfs::scan
