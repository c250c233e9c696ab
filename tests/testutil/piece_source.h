// SPDX-License-Identifier: Apache-2.0
// A ByteSource of memory handed out a few bytes per read, as a download arrives: for tests of
// readers that must not care where the reads split their input.
#pragma once

#include <algorithm>
#include <cstring>
#include <span>
#include <string>

#include "cfs/oci/byte_source.h"

namespace cfs::testutil {

class PieceSource final : public oci::ByteSource {
 public:
  /// At most `piece` bytes per read (0: all that is asked for).
  PieceSource(std::string data, std::size_t piece) : data_(std::move(data)), piece_(piece) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    std::size_t n = std::min(buf.size(), data_.size() - pos_);
    if (piece_ != 0) n = std::min(n, piece_);
    std::memcpy(buf.data(), data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string data_;
  std::size_t piece_;
  std::size_t pos_ = 0;
};

}  // namespace cfs::testutil
