// SPDX-License-Identifier: Apache-2.0
// Output side of the writer: a buffered sink that hashes everything it writes, and emit().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"
#include "erofs/plan_internal.h"

namespace cfs::erofs::detail {

/// Buffers writes in 1 MiB pieces, feeds them to the fs-verity hasher and, when fd >= 0,
/// writes them to fd. The first write error is kept and returned by finish().
class Sink {
 public:
  /// `p`: the parameters of the image digest.
  Sink(int fd, const verity::Params& p);
  void put(const void* data, std::size_t n);
  void zeros(std::size_t n);
  void align(std::uint64_t alignment);
  std::uint64_t written() const noexcept { return written_; }
  Result<verity::Digest> finish();

 private:
  static constexpr std::size_t kBufferSize = std::size_t{1} << 20;
  void flush_buffer();

  int fd_;
  std::vector<std::byte> buf_;
  std::uint64_t written_ = 0;
  verity::Hasher hasher_;
  Status status_;
};

Result<verity::Digest> emit(const Plan& plan, Sink& out);

}  // namespace cfs::erofs::detail
