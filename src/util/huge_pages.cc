// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/huge_pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

namespace cfs::huge_pages {
namespace {

struct Kept {
  void* p;
  std::size_t size;  ///< a multiple of kHugePageBytes
};

// Freed mappings, for the next buffers: most of a lazy mount's decoded objects are freed once
// their open has stored them, and the next fetch's fit in their pages, already faulted in.
struct Cache {
  std::mutex mu;
  std::vector<Kept> kept;
  std::size_t bytes = 0;
  /// Mappings handed out and not given back, and their rounded sizes' sum: past kLiveBytes,
  /// requests fall back to operator new (whose blocks deallocate tells apart by this list).
  std::vector<Kept> live;
  std::size_t live_bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: buffers may be freed during exit
  return *c;
}

std::size_t rounded(std::size_t n) { return (n + kHugePageBytes - 1) & ~(kHugePageBytes - 1); }

}  // namespace

void* allocate(std::size_t n) {
  const std::size_t size = rounded(n);
  if (size < n) throw std::bad_alloc();
  Cache& c = cache();
  std::lock_guard lock(c.mu);
  // Rounding up wastes up to 2 MiB per buffer: many small buffers alive at once would hold
  // that many huge pages. Beyond the cap they are ordinary blocks.
  if (c.live_bytes + size > kLiveBytes) return ::operator new(n);
  c.live.reserve(c.live.size() + 1);  // before anything is mapped: push_back cannot throw below
  {
    // The smallest kept mapping that is large enough, and not more than twice the size (a
    // large one is left for a large buffer).
    auto best = c.kept.end();
    for (auto it = c.kept.begin(); it != c.kept.end(); ++it)
      if (it->size >= size && it->size <= 2 * size &&
          (best == c.kept.end() || it->size < best->size))
        best = it;
    if (best != c.kept.end()) {
      const Kept k = *best;
      c.bytes -= k.size;
      c.kept.erase(best);
      c.live.push_back(k);
      c.live_bytes += k.size;
      return k.p;
    }
  }
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
  c.live.push_back({reinterpret_cast<void*>(start), size});
  c.live_bytes += size;
  return reinterpret_cast<void*>(start);
}

void deallocate(void* p, [[maybe_unused]] std::size_t n) noexcept {
  if (!p) return;
  Cache& c = cache();
  std::size_t size = 0;
  {
    std::lock_guard lock(c.mu);
    auto it = std::find_if(c.live.begin(), c.live.end(), [&](const Kept& k) { return k.p == p; });
    if (it == c.live.end()) return ::operator delete(p);  // allocated past the cap
    size = it->size;
    c.live_bytes -= size;
    *it = c.live.back();
    c.live.pop_back();
    if (c.bytes + size <= kKeepBytes) {
      try {
        c.kept.push_back({p, size});
        c.bytes += size;
        return;
      } catch (...) {  // std::bad_alloc: unmapped below instead
      }
    }
  }
  (void)::munmap(p, size);
}

std::size_t kept_bytes() noexcept {
  Cache& c = cache();
  std::lock_guard lock(c.mu);
  return c.bytes;
}

}  // namespace cfs::huge_pages
