// SPDX-License-Identifier: Apache-2.0
// The value of `trusted.overlay.metacopy` (the kernel's struct ovl_metacopy): encoding and
// decoding side by side, for both digest algorithms.
//
//   byte 0  version   0
//   byte 1  len       size of the whole value: 36 (SHA-256) or 68 (SHA-512)
//   byte 2  flags     0
//   byte 3  algo      FS_VERITY_HASH_ALG_*: 1 SHA-256, 2 SHA-512
//   4..     digest    32 or 64 bytes: the fs-verity digest of the backing object
//
// An empty value marks a metacopy file without a digest (what composefs writes when it knows
// none). composefs 1.0.8 only writes the 36-byte form; the 68-byte form is what the kernel
// (since 6.6) and composefs-rs use for SHA-512 repositories.
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::overlay {

inline constexpr std::size_t kMetacopyMinSize = 4;   ///< OVL_METACOPY_MIN_SIZE: the header
inline constexpr std::size_t kMetacopyMaxSize = 68;  ///< OVL_METACOPY_MAX_SIZE
inline constexpr std::uint8_t kMetacopyVersion = 0;

/// An encoded value (no allocation; view() is the xattr value).
struct MetacopyBytes {
  std::array<char, kMetacopyMaxSize> bytes{};
  std::size_t size = 0;
  std::string_view view() const noexcept { return {bytes.data(), size}; }
};

struct Metacopy {
  /// nullopt: the value names no digest (empty, header only, or algorithm 0).
  std::optional<verity::Digest> digest;
  bool has_digest() const noexcept { return digest.has_value(); }

  /// The value recording `digest` (36 bytes for SHA-256, 68 for SHA-512).
  static MetacopyBytes encode(const verity::Digest& digest) noexcept;

  /// The kernel's open-time validation (ovl_validate_verity / ovl_get_verity_digest), done only
  /// when verity is enabled and the value is longer than the header: size > 68 -> ERANGE,
  /// version != 0 or len != size -> EIO, an unknown algorithm or a digest size that does not
  /// belong to it -> EIO; algorithm 0 -> no digest. Values of 0 and 4 bytes carry no digest;
  /// 1..3 bytes fail as in check_at_lookup(). Errors are errno errors (EIO, ERANGE).
  static Result<Metacopy> decode(std::string_view value);

  /// The lookup-time check (ovl_check_metacopy_xattr): 1..3 bytes is EIO; anything else
  /// passes (the header is read only when the file is opened with verity).
  static Status check_at_lookup(std::string_view value);

  /// The digest a composefs reader records for a file (composefs-info, dumps): composefs 1.0.8
  /// takes bytes 4..36 of any 36-byte value without looking at the header; cfs does the same
  /// and also takes a 68-byte value whose header is valid for SHA-512. Anything else: none.
  static std::optional<verity::Digest> read_digest(std::string_view value) noexcept;
};

}  // namespace cfs::overlay
