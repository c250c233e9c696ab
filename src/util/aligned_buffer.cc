// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/aligned_buffer.h"

#include <new>

namespace cfs {

void AlignedBuffer::reserve(std::size_t n) {
  if (n <= capacity_ && data_) return;
  // aligned_alloc wants a multiple of the alignment; an empty request still gets a page so
  // data() is never null.
  const std::size_t cap = n == 0 ? kAlign : (n + kAlign - 1) / kAlign * kAlign;
  if (cap < n) throw std::bad_alloc();  // overflow
  auto* p = static_cast<std::byte*>(std::aligned_alloc(kAlign, cap));
  if (p == nullptr) throw std::bad_alloc();
  data_.reset(p);  // contents are not kept: callers read into the buffer after get()
  capacity_ = cap;
}

}  // namespace cfs
