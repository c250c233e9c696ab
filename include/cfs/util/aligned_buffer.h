// SPDX-License-Identifier: Apache-2.0
// Page-aligned memory for reading file data. Every path that reads file contents into memory
// (digests, the directory scan, the store copy, the FUSE read path, tar and decompression
// streams) reads into one of these, for two reasons:
// * the kernel copies out of the page cache into a misaligned buffer about three times more
//   slowly: glibc returns large malloc blocks 16 bytes past a page boundary (its chunk header),
//   so a std::vector read buffer is misaligned, and pread of 1 GiB into a 192 KiB buffer ran at
//   2.1 GB/s there against 6.5 GB/s page-aligned (bench/README.md);
// * O_DIRECT needs aligned memory.
// From one huge page (2 MiB) on, a buffer is whole huge pages, aligned to them and advised for
// transparent huge pages, so its first fill faults once per 2 MiB instead of once per 4 KiB
// (a 4 KiB fault cost ~12 µs idle on host C, a PVM guest; src/util/aligned_buffer.cc): a
// mapping of its own (huge_pages::map), so the advice goes with it.
// Reuse: get(n) grows the buffer and never shrinks it; keep one per thread
// (`thread_local AlignedBuffer buf;`) so a hot path allocates once.
// Thread-safety: one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

namespace cfs {

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlign = 4096;

  AlignedBuffer() noexcept = default;
  explicit AlignedBuffer(std::size_t n) { reserve(n); }

  /// n bytes at a kAlign-aligned address. The contents are whatever was there (never exposed
  /// by callers beyond what a read wrote). Growing reallocates, invalidating earlier spans.
  std::span<std::byte> get(std::size_t n) {
    reserve(n);
    return {data_.get(), n};
  }
  /// The same memory as unsigned bytes (for the hashing code).
  std::span<std::uint8_t> get_u8(std::size_t n) {
    reserve(n);
    return {reinterpret_cast<std::uint8_t*>(data_.get()), n};
  }

  /// The start of the memory (nullptr before the first reserve()).
  std::byte* data() noexcept { return data_.get(); }
  const std::byte* data() const noexcept { return data_.get(); }

  std::size_t capacity() const noexcept { return capacity_; }

  /// At least n bytes of capacity (rounded up to kAlign); throws std::bad_alloc.
  void reserve(std::size_t n);

 private:
  struct Free {
    // No default member initialiser (GCC then finds the nested type not default-constructible
    // inside the enclosing class): unique_ptr value-initialises it, to 0.
    std::size_t mapped;  ///< bytes of a mapping of its own (huge_pages::map); 0: malloc's
    void operator()(std::byte* p) const noexcept;
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t capacity_ = 0;
};

}  // namespace cfs
