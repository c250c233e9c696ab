// SPDX-License-Identifier: Apache-2.0
// A strict, streaming reader of an HTTP `multipart/byteranges` body (RFC 9110 14.6, the answer
// to a Range request of several ranges): each part's bytes go to the sink of the range it says
// it is, as they arrive. Strict because the bytes are a registry's: every part's Content-Range
// must be exactly one of the ranges asked for, not yet received; lines are bounded, as are the
// header lines of a part and the parts; nothing but line breaks may stand outside the parts.
// The bytes themselves are not checked here (the caller verifies them against their digests).
// Thread-safety: one object per response.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"

namespace cfs::registry::detail {

/// The boundary parameter of a `multipart/byteranges` Content-Type, or nullopt when the type is
/// another or the boundary is missing or not a valid one (RFC 2046: 1-70 characters).
std::optional<std::string> byteranges_boundary(std::string_view content_type);

/// "bytes FIRST-LAST/LENGTH" (LENGTH may be "*"): FIRST and LAST, or nullopt when malformed.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_content_range(std::string_view v);

class ByterangesReader {
 public:
  struct Range {
    std::uint64_t offset = 0, length = 0;  // length > 0
  };
  /// The part's bytes, in order (`index` into the ranges asked). An error stops the reader and
  /// is returned by feed() unchanged.
  using Deliver = std::function<Status(std::size_t index, std::span<const std::byte> bytes)>;

  /// `what` names the blob in errors.
  ByterangesReader(std::string what, std::string boundary, std::vector<Range> ranges,
                   Deliver deliver);

  /// The next bytes of the body.
  Status feed(std::span<const std::byte> data);
  /// The body ended: an error unless the closing boundary was seen.
  Status finish() const;
  /// Bytes of range i received so far.
  std::uint64_t received(std::size_t i) const { return got_[i]; }

  static constexpr std::size_t kMaxLine = 1024;
  static constexpr std::size_t kMaxHeaders = 16;

 private:
  enum class State { kPreamble, kHeaders, kBody, kAfterBody, kDelimiter, kEnd };
  Status line(std::string_view l);
  Status bad(const std::string& why) const;

  std::string what_, boundary_;
  std::vector<Range> ranges_;
  Deliver deliver_;
  std::vector<std::uint64_t> got_;
  std::vector<bool> seen_;
  State state_ = State::kPreamble;
  std::string line_;
  std::size_t headers_ = 0;
  std::optional<std::size_t> part_;  // the range of the part whose headers are being read
  std::size_t parts_ = 0;
  std::uint64_t left_ = 0;    // body bytes of the current part still to come
  std::uint64_t offset_ = 0;  // of the body, for errors
};

}  // namespace cfs::registry::detail
