// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/aligned_buffer.h"

#include <sys/mman.h>

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
  const bool huge = n >= huge_pages::kHugePageBytes;
  const std::size_t align = huge ? huge_pages::kHugePageBytes : kAlign;
  const std::size_t cap = n == 0 ? kAlign : (n + align - 1) / align * align;
  if (cap < n) throw std::bad_alloc();  // overflow
  auto* p = static_cast<std::byte*>(std::aligned_alloc(align, cap));
  if (p == nullptr) throw std::bad_alloc();
  // Advice only: a kernel without transparent huge pages faults 4 KiB pages as before.
  if (huge) (void)::madvise(p, cap, MADV_HUGEPAGE);
  data_.reset(p);  // contents are not kept: callers read into the buffer after get()
  capacity_ = cap;
}

}  // namespace cfs
