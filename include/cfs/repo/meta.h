// SPDX-License-Identifier: Apache-2.0
// meta.json, the description of a composefs-rs repository (docs/repository.md "meta.json"):
//
//   {
//     "version": 1,
//     "algorithm": "fsverity-sha512-12",
//     "features": {
//       "compatible": [],
//       "read-only-compatible": [
//         "v1_erofs"
//       ],
//       "incompatible": []
//     },
//     "erofs_formats": {
//       "default": 1
//     }
//   }
//
// The bytes are exactly those composefs-rs writes (serde_json's pretty printer, two-space
// indent, empty arrays as "[]", a trailing newline), so a repository initialised by either
// tool has the same meta.json. Feature flags follow ext4's rules: an unknown "compatible" flag
// is ignored, an unknown "read-only-compatible" flag allows reading only, an unknown
// "incompatible" flag (or a newer version) refuses the repository.
//
// Thread-safety: value types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::repo {

/// The repository format version cfs reads and writes.
inline constexpr std::uint32_t kFormatVersion = 1;
/// The one feature flag cfs knows (read-only-compatible): images are EROFS format version 1.
inline constexpr std::string_view kFeatureV1Erofs = "v1_erofs";
/// Highest EROFS format version meta.json may name (2 is composefs-rs' extended-inode format,
/// which cfs reads but does not write).
inline constexpr std::uint32_t kMaxErofsVersion = 2;

struct Features {
  std::vector<std::string> compatible;
  std::vector<std::string> read_only_compatible;
  std::vector<std::string> incompatible;
  friend bool operator==(const Features&, const Features&) = default;
};

/// The EROFS format versions images of this repository are written in: `default` first, then
/// `extra` (sorted, unique; composefs-rs omits the key when empty).
struct ErofsFormats {
  std::uint32_t default_version = 1;
  std::vector<std::uint32_t> extra;
  friend bool operator==(const ErofsFormats&, const ErofsFormats&) = default;
};

struct Meta {
  std::uint32_t version = kFormatVersion;
  verity::HashAlg algorithm = verity::HashAlg::kSha512;
  Features features;
  /// As stored; absent in old meta.json files (see erofs_version()).
  ErofsFormats erofs_formats{2, {}};

  /// What `init` writes: the current version, the algorithm, `v1_erofs` when the format is 1.
  static Meta make(verity::HashAlg algorithm, std::uint32_t erofs_version);

  /// Parses meta.json (any valid JSON with the fields above; unknown keys are ignored, as
  /// serde does). Errors (kCorruptImage) name `what` and the field. Does not judge version or
  /// features: see check().
  static Result<Meta> parse(std::string_view json, const std::string& what);

  /// The exact bytes composefs-rs writes for this metadata.
  std::string to_json() const;

  /// The EROFS version new images get. composefs-rs' rule: erofs_formats as stored unless it
  /// is the legacy default {"default": 2} (which is also what an absent key means), in which
  /// case the v1_erofs flag selects 1.
  std::uint32_t erofs_version() const;

  friend bool operator==(const Meta&, const Meta&) = default;
};

/// What a tool that knows this version may do with a repository.
struct Access {
  bool writable = true;
  /// Unknown read-only-compatible features (the reason it is not writable).
  std::vector<std::string> unknown_ro_compat;
};

/// ext4-style compatibility check: a newer version or an unknown incompatible feature is an
/// error (kUnsupportedFeature naming them); unknown read-only-compatible features make the
/// repository read-only; unknown compatible features are ignored.
Result<Access> check(const Meta& meta);

/// "fsverity-sha256-12" / "fsverity-sha512-12".
std::string algorithm_name(verity::HashAlg alg);
/// Parses "fsverity-<sha256|sha512>-12" (kUnsupportedFeature for another hash or block size,
/// kInvalidInput for anything else).
Result<verity::HashAlg> parse_algorithm(std::string_view name);

}  // namespace cfs::repo
