// SPDX-License-Identifier: Apache-2.0
// fs-verity digests of many files at once (`cfs digest`, `cfs measure`): the scheduling that
// makes a command line of thousands of small files or of a few huge ones use every core.
// * Small files are spread over the threads in runs of kSmallBatchMax; the files of at most one
//   block in a run are read first and then digested together, interleaved
//   (digest_small_many), since one small input alone leaves the SHA units mostly idle.
// * Files of kBigFile bytes or more are set aside and digested afterwards one at a time, each
//   split over all threads (a big file in a worker's run would otherwise stall it).
// Thread-safety: each call uses its own threads and buffers; concurrent calls are fine.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"
#include "cfs/verity/merkle.h"

namespace cfs::verity {

/// Files at least this large are digested one at a time with every thread, after the rest.
inline constexpr std::uint64_t kBigFile = 8ull << 20;

/// What became of one file: its digest, or the error that stopped it (naming the file).
struct FileDigest {
  std::optional<Digest> digest;
  std::optional<Error> error;
  bool from_kernel = false;  ///< with kernel_first: the kernel's fs-verity measurement
};

/// Digests of `paths`, one result per path in the same order; a file that fails does not stop
/// the others. With `kernel_first` a file that has fs-verity reports the kernel's measurement
/// (whatever its algorithm), the others are computed with `p`. `threads` 0 = all CPUs.
std::vector<FileDigest> digest_files(std::span<const std::string> paths, const Params& p,
                                     bool kernel_first, unsigned threads = 0);

/// Whole Merkle trees of `paths`, one file at a time, each on `threads` threads, for callers
/// that write the trees or descriptors out. sink(i, tree) is called in path order for each
/// file as long as no file before it failed (so outputs never hold a later file without an
/// earlier one); an error from sink stops everything and is returned. Per-file errors are in
/// out[i].error; the result is true when every file succeeded.
Result<bool> build_trees(std::span<const std::string> paths, const Params& p, unsigned threads,
                         std::vector<FileDigest>& out,
                         const std::function<Status(std::size_t, const MerkleTree&)>& sink);

}  // namespace cfs::verity
