// SPDX-License-Identifier: Apache-2.0
// Memory for large buffers that are filled once, whole, and soon freed (a lazy mount's decoded
// objects): carved from mappings of whole 2 MiB stretches that the kernel may back with
// transparent huge pages (buffers under 2 MiB packed together, page-aligned, larger ones a
// mapping each), and the mappings kept for the next buffers once all theirs are freed (the ones
// freed last, up to a cap).
// Why: the first touch of a fresh 4 KiB page is a page fault, and on a PVM guest (host C, whose
// guest kernel runs de-privileged and shadows its page tables through the hypervisor) it costs
// 6-50 µs instead of 1-4 µs, even after madvise(MADV_POPULATE_WRITE), while a 2 MiB huge page
// costs one fault and its clearing, and a mapping kept from earlier buffers costs nothing
// (bench/README.md, "Host C, session 17"). glibc maps each large block anew and unmaps it on
// free, so every buffer paid its pages again.
// Buffers under kHugeMinBytes come from operator new as usual (glibc's arenas reuse them).
// `construct` default-initialises: a vector resized with this allocator is not zero-filled first
// (its bytes are written by the caller: decoding into it is the first touch).
// Thread-safety: allocate/deallocate may be called from any thread.
#pragma once

#include <cstddef>
#include <new>
#include <utility>
#include <vector>

namespace cfs {

namespace huge_pages {

/// Smallest request served from huge-page mappings; smaller ones use operator new. The mmap
/// threshold the FUSE server gives glibc (fuse/server.cc tune_malloc): below it glibc serves
/// from its arenas, whose memory is reused, above it each block is a fresh mapping.
inline constexpr std::size_t kHugeMinBytes = 128u << 10;
/// Most bytes of freed mappings kept for reuse: the ones freed last (older ones are unmapped to
/// make room for a newly freed one; one larger than this is unmapped).
inline constexpr std::size_t kKeepBytes = 16u << 20;
/// Most bytes of mappings with buffers in them at once; further requests get operator new.
inline constexpr std::size_t kLiveBytes = 64u << 20;
/// The huge page size the mappings are aligned and rounded to.
inline constexpr std::size_t kHugePageBytes = 2u << 20;

/// `n` bytes (n >= kHugeMinBytes), page-aligned: packed after other buffers under 2 MiB in a
/// huge-page mapping with room, else at the start of a kept mapping of at least round-up(n)
/// bytes or a new one (2 MiB-aligned, advised MADV_HUGEPAGE); past kLiveBytes of mappings with
/// buffers in them, operator new's. Throws std::bad_alloc.
void* allocate(std::size_t n);
/// Gives back what allocate(n) returned (the same n).
void deallocate(void* p, std::size_t n) noexcept;
/// Bytes of freed mappings kept now (for tests).
std::size_t kept_bytes() noexcept;
/// Unmaps every kept mapping (for tests that need to know what the pool holds: which buffer
/// takes which mapping depends on it, and it outlives each test in a process).
void release_kept() noexcept;

/// A fresh mapping of `size` bytes (a multiple of kHugePageBytes), 2 MiB-aligned and advised
/// MADV_HUGEPAGE, owned by the caller (AlignedBuffer's huge buffers; allocate() carves its slabs
/// from these): the advice is the mapping's and ends with it. Advice given to a block of glibc's
/// heap instead (which it serves large blocks from once a larger one was freed: its dynamic mmap
/// threshold) stays on those addresses after the block is freed, for whatever glibc places there
/// next. Throws std::bad_alloc.
void* map(std::size_t size);
/// Unmaps what map(size) returned.
void unmap(void* p, std::size_t size) noexcept;

}  // namespace huge_pages

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() noexcept = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t bytes = n * sizeof(T);
    if (bytes < huge_pages::kHugeMinBytes) return static_cast<T*>(::operator new(bytes));
    return static_cast<T*>(huge_pages::allocate(bytes));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < huge_pages::kHugeMinBytes) return ::operator delete(p);
    huge_pages::deallocate(p, bytes);
  }
  /// Default-initialisation: no zero fill before the caller writes the bytes.
  template <class U>
  void construct(U* p) noexcept(noexcept(::new (static_cast<void*>(p)) U)) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

/// A byte buffer on HugePageAllocator (a lazy fetch's decoded object, kept for its open).
using HugeBytes = std::vector<std::byte, HugePageAllocator<std::byte>>;

}  // namespace cfs
