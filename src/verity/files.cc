// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/files.h"

#include <fcntl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <thread>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"

namespace cfs::verity {
namespace {

struct Pending {
  FileDigest result;
  bool deferred = false;                  // big file: digested later with all threads
  std::optional<std::size_t> small_size;  // read whole into its slot, waiting for its batch
};

// One file. With `small` (room for a block and a byte), a file of at most one block is only
// read into it: the outcome then has `small_size` set and the caller digests it in a batch.
Pending digest_one(const std::string& path, const Params& p, bool kernel_first, bool defer_big,
                   unsigned threads, std::span<std::byte> small = {}) {
  Pending r;
  auto fd = sys::open(path, O_RDONLY | O_CLOEXEC);
  if (!fd) {
    r.result.error = std::move(fd).error();
    return r;
  }
  if (kernel_first) {
    auto m = kernel_measurement(fd->get(), path, std::nullopt);
    if (!m) {
      r.result.error = std::move(m).error();
      return r;
    }
    if (*m) {
      r.result.digest = **m;
      r.result.from_kernel = true;
      return r;
    }
  }
  if (!small.empty()) {
    auto n = read_one_block(fd->get(), p, small, path);
    if (n && *n) {
      r.small_size = **n;
      return r;
    }
    if (!n && !n.error().is_errno(ESPIPE)) {
      r.result.error = std::move(n).error();
      return r;
    }
  }
  const std::uint64_t limit = defer_big ? kBigFile - 1 : std::numeric_limits<std::uint64_t>::max();
  auto d = digest_fd_up_to(fd->get(), p, limit, path, threads);
  if (!d)
    r.result.error = std::move(d).error();
  else if (*d)
    r.result.digest = **d;
  else
    r.deferred = true;
  return r;
}

}  // namespace

std::vector<FileDigest> digest_files(std::span<const std::string> paths, const Params& p,
                                     bool kernel_first, unsigned threads) {
  if (threads == 0) threads = sys::available_cpus();
  const std::size_t n = paths.size();
  std::vector<Pending> out(n);
  constexpr std::size_t kRun = kSmallBatchMax;
  // A block and one byte more (to see EOF), each slot starting on a page boundary.
  const std::size_t slot_size = (p.block_size + 1 + AlignedBuffer::kAlign - 1) /
                                AlignedBuffer::kAlign * AlignedBuffer::kAlign;
  std::atomic<std::size_t> next{0};
  const bool parallel = threads > 1 && n > 1;
  auto worker = [&] {
    AlignedBuffer slots(kRun * slot_size);
    std::array<std::span<const std::byte>, kRun> in;
    std::array<Digest, kRun> digests;
    std::array<std::size_t, kRun> which;
    for (std::size_t b; (b = next.fetch_add(kRun, std::memory_order_relaxed)) < n;) {
      std::size_t pending = 0;
      for (std::size_t i = b; i < std::min(n, b + kRun); ++i) {
        const std::span<std::byte> slot =
            slots.get(kRun * slot_size).subspan(pending * slot_size, p.block_size + 1);
        out[i] = digest_one(paths[i], p, kernel_first, parallel, parallel ? 1 : threads, slot);
        if (out[i].small_size) {
          in[pending] = slot.first(*out[i].small_size);
          which[pending++] = i;
        }
      }
      digest_small_many(std::span(in.data(), pending), p, std::span(digests.data(), pending));
      for (std::size_t k = 0; k < pending; ++k) out[which[k]].result.digest = digests[k];
    }
  };
  {
    std::vector<std::jthread> pool;
    if (parallel)
      for (unsigned t = 1; t < std::min<std::size_t>(threads, (n + kRun - 1) / kRun); ++t)
        pool.emplace_back(worker);
    worker();
  }
  std::vector<FileDigest> results(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (out[i].deferred) out[i] = digest_one(paths[i], p, kernel_first, false, threads);
    results[i] = std::move(out[i].result);
  }
  return results;
}

Result<bool> build_trees(std::span<const std::string> paths, const Params& p, unsigned threads,
                         std::vector<FileDigest>& out,
                         const std::function<Status(std::size_t, const MerkleTree&)>& sink) {
  out.assign(paths.size(), FileDigest{});
  bool all_ok = true;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    auto fd = sys::open(paths[i], O_RDONLY | O_CLOEXEC);
    if (!fd) {
      out[i].error = std::move(fd).error();
      all_ok = false;
      continue;
    }
    auto t = build_merkle_tree(fd->get(), p, paths[i], threads);
    if (!t) {
      out[i].error = std::move(t).error();
      all_ok = false;
      continue;
    }
    out[i].digest = t->digest;
    if (all_ok) CFS_TRY(sink(i, *t));
  }
  return all_ok;
}

}  // namespace cfs::verity
