// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/aligned_buffer.h"

#include <new>

#include "cfs/util/huge_pages.h"

namespace cfs {

void AlignedBuffer::reserve(std::size_t n) {
  if (n <= capacity_ && data_) return;
  // aligned_alloc wants a multiple of the alignment; an empty request still gets a page so
  // data() is never null. From one huge page on, the buffer is whole huge pages, aligned to
  // them and advised for transparent huge pages: its first fill then faults once per 2 MiB
  // instead of once per 4 KiB, which is what a fresh buffer costs most on a guest whose kernel
  // shadows its page tables (host C: 6-50 µs per 4 KiB fault, so the 20 MiB read ring of an
  // import or pull paid ~5,000 faults on its reading thread; bench/README.md, session 17).
  // The huge ones are mappings of their own, not aligned_alloc's blocks advised: glibc serves a
  // block from its heap once a larger one was freed (its dynamic mmap threshold), and the advice
  // would outlive the buffer there, giving huge pages to whatever glibc put at those addresses
  // next (a 2 MiB clearing at its first touch, and resident memory).
  const bool huge = n >= huge_pages::kHugePageBytes;
  const std::size_t align = huge ? huge_pages::kHugePageBytes : kAlign;
  const std::size_t cap = n == 0 ? kAlign : (n + align - 1) / align * align;
  if (cap < n) throw std::bad_alloc();  // overflow
  auto* p = static_cast<std::byte*>(huge ? huge_pages::map(cap) : std::aligned_alloc(align, cap));
  if (p == nullptr) throw std::bad_alloc();
  // Contents are not kept: callers read into the buffer after get().
  data_ = std::unique_ptr<std::byte, Free>(p, Free{huge ? cap : 0});
  capacity_ = cap;
}

void AlignedBuffer::Free::operator()(std::byte* p) const noexcept {
  if (mapped)
    huge_pages::unmap(p, mapped);
  else
    std::free(p);
}

}  // namespace cfs
