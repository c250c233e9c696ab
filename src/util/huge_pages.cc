// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/huge_pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>

namespace cfs::huge_pages {
namespace {

struct Kept {
  void* p;
  std::size_t size;  ///< a multiple of kHugePageBytes
};

/// A mapping buffers are carved from: one buffer of 2 MiB or more, or several smaller ones
/// packed one after the other (a huge page is cleared whole when first touched, so a 200 KB
/// buffer alone in one would cost the clearing of 2 MiB).
struct Slab {
  std::uintptr_t start;
  std::size_t size;   ///< a multiple of kHugePageBytes
  std::size_t used;   ///< bytes carved so far (from the start)
  std::size_t users;  ///< buffers in it not given back
};

// Freed mappings, for the next buffers: most of a lazy mount's decoded objects are freed once
// their open has stored them, and the next fetch's fit in their pages, already faulted in.
struct Cache {
  std::mutex mu;
  std::vector<Kept> kept;
  std::size_t bytes = 0;
  /// Slabs with buffers handed out (or still open for more), and their sizes' sum: past
  /// kLiveBytes, requests fall back to operator new (whose blocks deallocate tells apart by
  /// this list).
  std::vector<Slab> slabs;
  std::size_t live_bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: buffers may be freed during exit
  return *c;
}

std::size_t rounded(std::size_t n) { return (n + kHugePageBytes - 1) & ~(kHugePageBytes - 1); }

/// A mapping of `size` bytes (a multiple of kHugePageBytes): a kept one of at most twice the
/// size, else a new one (map()). Called with c.mu held.
void* take_mapping(Cache& c, std::size_t& size) {
  // The smallest kept mapping that is large enough, and not more than twice the size (a
  // large one is left for a large buffer); of equal ones, the one freed last (its pages are the
  // likeliest still to be huge ones in memory).
  auto best = c.kept.end();
  for (auto it = c.kept.begin(); it != c.kept.end(); ++it)
    if (it->size >= size && it->size <= 2 * size &&
        (best == c.kept.end() || it->size <= best->size))
      best = it;
  if (best != c.kept.end()) {
    const Kept k = *best;
    c.bytes -= k.size;
    c.kept.erase(best);
    size = k.size;
    return k.p;
  }
  return map(size);
}

}  // namespace

void* map(std::size_t size) {
  if (size + kHugePageBytes < size) throw std::bad_alloc();
  // Mapped one huge page larger, then trimmed to a 2 MiB-aligned start: the kernel backs only
  // aligned 2 MiB stretches with huge pages.
  void* m = ::mmap(nullptr, size + kHugePageBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  const auto at = reinterpret_cast<std::uintptr_t>(m);
  const std::uintptr_t start = (at + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  if (start > at) (void)::munmap(m, start - at);
  if (const std::size_t tail = kHugePageBytes - (start - at); tail > 0)
    (void)::munmap(reinterpret_cast<void*>(start + size), tail);
  // Best effort: without transparent huge pages (or with them off) the pages fault in 4 KiB at
  // a time, as any mapping's.
  (void)::madvise(reinterpret_cast<void*>(start), size, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(start);
}

void unmap(void* p, std::size_t size) noexcept {
  if (p) (void)::munmap(p, size);
}

void* allocate(std::size_t n) {
  // Buffers start on a page (the kernel copies to and from page-aligned memory faster).
  constexpr std::size_t kPage = 4096;
  const std::size_t need = (n + kPage - 1) & ~(kPage - 1);
  std::size_t size = rounded(n);
  if (size < n || need < n) throw std::bad_alloc();
  Cache& c = cache();
  std::lock_guard lock(c.mu);
  if (need < kHugePageBytes) {
    // Packed after the buffers of the newest slab with room for it.
    for (auto it = c.slabs.rbegin(); it != c.slabs.rend(); ++it) {
      if (it->size - it->used < need) continue;
      void* p = reinterpret_cast<void*>(it->start + it->used);
      it->used += need;
      ++it->users;
      return p;
    }
  }
  // Rounding up wastes up to 2 MiB per slab: many slabs alive at once would hold that many
  // huge pages. Beyond the cap, buffers are ordinary blocks.
  if (c.live_bytes + size > kLiveBytes) return ::operator new(n);
  c.slabs.reserve(c.slabs.size() + 1);  // before anything is mapped: push_back cannot throw below
  void* p = take_mapping(c, size);
  c.slabs.push_back({reinterpret_cast<std::uintptr_t>(p), size, need, 1});
  c.live_bytes += size;
  return p;
}

void deallocate(void* p, [[maybe_unused]] std::size_t n) noexcept {
  if (!p) return;
  Cache& c = cache();
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  // Unmapped after the lock is released: the freed mapping itself, or the oldest kept ones
  // it replaces (at most kKeepBytes / kHugePageBytes of them).
  std::array<Kept, kKeepBytes / kHugePageBytes + 1> unmap{};
  std::size_t unmaps = 0;
  {
    std::lock_guard lock(c.mu);
    auto it = std::find_if(c.slabs.begin(), c.slabs.end(),
                           [&](const Slab& s) { return at >= s.start && at < s.start + s.size; });
    if (it == c.slabs.end()) return ::operator delete(p);  // allocated past the cap
    if (--it->users > 0) return;
    // Its last buffer: the whole mapping is free again.
    const Kept freed{reinterpret_cast<void*>(it->start), it->size};
    c.live_bytes -= it->size;
    c.slabs.erase(it);
    unmap[unmaps++] = freed;
    if (freed.size <= kKeepBytes) {
      try {
        c.kept.push_back(freed);
        c.bytes += freed.size;
        unmaps = 0;
        // Room made by unmapping the mappings freed longest ago, not by refusing this one: the
        // pool follows the sizes buffers have now (a pool full of mappings no later request
        // fits would never change), and this one's pages were touched last.
        while (c.bytes > kKeepBytes) {
          unmap[unmaps++] = c.kept.front();
          c.bytes -= c.kept.front().size;
          c.kept.erase(c.kept.begin());
        }
      } catch (...) {  // std::bad_alloc: unmapped below instead
      }
    }
  }
  for (std::size_t i = 0; i < unmaps; ++i) (void)::munmap(unmap[i].p, unmap[i].size);
}

void release_kept() noexcept {
  Cache& c = cache();
  std::vector<Kept> kept;
  {
    std::lock_guard lock(c.mu);
    kept.swap(c.kept);
    c.bytes = 0;
  }
  for (const Kept& k : kept) (void)::munmap(k.p, k.size);
}

std::size_t kept_bytes() noexcept {
  Cache& c = cache();
  std::lock_guard lock(c.mu);
  return c.bytes;
}

}  // namespace cfs::huge_pages
