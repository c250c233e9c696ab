// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "verity/leaves_internal.h"

namespace cfs::verity::detail {
namespace {

// 192 KiB reads keep the buffer in L2 while it is hashed (the measured optimum was 64 KiB to
// 256 KiB; mmap was 30-50 % slower because of page faults) and hold 48 blocks of 4 KiB, a
// multiple of every interleave width, so no lane runs idle at the end of a chunk. Work is
// claimed in units of 8 chunks so a thread slowed by other load does not hold up the rest.
constexpr std::size_t kReadChunk = 192 * 1024;
constexpr std::uint64_t kClaim = 8 * kReadChunk;

}  // namespace

unsigned resolve_threads(unsigned threads) {
  return threads == 0 ? sys::available_cpus() : threads;
}

const BlockHasher& cached_hasher(const Params& p) {
  struct Entry {
    Params params;
    Engine engine = Engine::kAuto;
    std::optional<BlockHasher> hasher;
  };
  thread_local Entry e;
  const Engine eng = active_engine();
  if (!e.hasher || e.engine != eng || e.params.alg != p.alg ||
      e.params.block_size != p.block_size || e.params.salt != p.salt) {
    e.params = p;
    e.engine = eng;
    e.hasher.emplace(p);
  }
  return *e.hasher;
}

Status hash_leaves(const BlockHasher& h, int fd, std::uint64_t offset, std::uint64_t len,
                   std::uint8_t* out, unsigned threads, const std::string& what) {
  const std::uint64_t bs = h.block_size();
  const std::size_t ds = h.digest_size();
  const std::uint64_t claim = std::max<std::uint64_t>(kClaim, bs);
  const std::size_t chunk = static_cast<std::size_t>(std::max<std::uint64_t>(kReadChunk, bs));
  const std::uint64_t units = (len + claim - 1) / claim;
  threads = static_cast<unsigned>(std::min<std::uint64_t>(resolve_threads(threads), units));

  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex err_mu;
  std::optional<Error> err;

  auto worker = [&] {
    // Page-aligned: the kernel's copy out of the page cache is ~3x slower into a buffer
    // 16 bytes past a page boundary, which is where a std::vector of this size lands.
    thread_local AlignedBuffer mem;
    const std::span<std::uint8_t> buf = mem.get_u8(chunk);
    for (std::uint64_t u; !failed.load(std::memory_order_relaxed) &&
                          (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const std::uint64_t begin = u * claim;
      const std::uint64_t end = std::min(len, begin + claim);
      for (std::uint64_t pos = begin; pos < end;) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, end - pos));
        auto got =
            sys::pread_full(fd, std::as_writable_bytes(std::span(buf.data(), n)), offset + pos);
        if (!got || *got != n) {
          std::lock_guard lock(err_mu);
          if (!err)
            err = got ? Error(Errc::kInvalidInput, what + ": file shrank while being read")
                      : std::move(got).error().with_context(what);
          failed = true;
          return;
        }
        const std::size_t full = n / bs;
        std::uint8_t* o = out + (pos / bs) * ds;
        h.hash_blocks(buf.data(), full, o);
        if (const std::size_t rest = n - full * bs; rest != 0)
          h.hash_tail(buf.data() + full * bs, rest, o + full * ds);
        pos += n;
      }
    }
  };
  if (threads <= 1) {
    worker();
  } else {
    std::vector<std::jthread> pool;
    pool.reserve(threads - 1);
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
  }
  if (err) return fail(std::move(*err));
  return {};
}

void hash_leaves_mem(const BlockHasher& h, const std::uint8_t* data, std::size_t len,
                     std::uint8_t* out, unsigned threads) {
  const std::size_t bs = h.block_size();
  const std::size_t ds = h.digest_size();
  const std::size_t claim = std::max<std::size_t>(kClaim, bs);
  const std::size_t units = (len + claim - 1) / claim;
  threads = static_cast<unsigned>(std::min<std::size_t>(resolve_threads(threads), units));
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const std::size_t begin = u * claim;
      const std::size_t n = std::min(len, begin + claim) - begin;
      const std::size_t full = n / bs;
      std::uint8_t* o = out + (begin / bs) * ds;
      h.hash_blocks(data + begin, full, o);
      if (const std::size_t rest = n - full * bs; rest != 0)
        h.hash_tail(data + begin + full * bs, rest, o + full * ds);
    }
  };
  if (threads <= 1) {
    worker();
    return;
  }
  std::vector<std::jthread> pool;
  pool.reserve(threads - 1);
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
}

}  // namespace cfs::verity::detail
