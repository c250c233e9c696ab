// SPDX-License-Identifier: Apache-2.0
// How overlayfs (metacopy=on, redirect_dir=on, data-only lower layers) interprets the xattrs of
// a composefs image, as pure functions: which xattr names a user of the kernel mount sees, the
// validation of `trusted.overlay.metacopy`, and what a redirect means. The rules and the kernel
// behaviour they reproduce are in ../shared/reference/overlayfs.md §1, §2.1, §3, §7.
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "cfs/util/result.h"

namespace cfs::vfs {

inline constexpr std::string_view kOverlayPrefix = "trusted.overlay.";
inline constexpr std::string_view kEscapedPrefix = "trusted.overlay.overlay.";
inline constexpr std::string_view kMetacopyXattr = "trusted.overlay.metacopy";
inline constexpr std::string_view kRedirectXattr = "trusted.overlay.redirect";
inline constexpr std::string_view kWhiteoutXattr = "trusted.overlay.whiteout";

/// Name a raw image xattr shows under through the mount, or nullopt when overlayfs hides it:
/// `trusted.overlay.overlay.X` -> `trusted.overlay.X` (one escaping level is removed), any
/// other `trusted.overlay.*` is private and hidden, everything else passes unchanged.
std::optional<std::string> visible_xattr_name(std::string_view raw);

/// The raw image name that a visible name is read from, or nullopt for names that can never be
/// visible (private `trusted.overlay.*` names are reached only through their escaped form).
std::optional<std::string> raw_xattr_name(std::string_view visible);

/// Parsed `trusted.overlay.metacopy` (struct ovl_metacopy).
struct Metacopy {
  std::size_t raw_size = 0;              ///< size of the xattr value
  std::uint8_t digest_algo = 0;          ///< FS_VERITY_HASH_ALG_*: 1 SHA-256, 2 SHA-512, 0 none
  std::span<const std::uint8_t> digest;  ///< points into the value passed to parse
  /// OVL_HAS_DIGEST: the kernel reads and checks the full header only when this is set.
  bool has_digest_flag() const noexcept { return raw_size > 4; }
  bool has_digest() const noexcept { return digest_algo != 0 && !digest.empty(); }
};

/// Lookup-time check (ovl_check_metacopy_xattr): 1..3 bytes is EIO at lookup, anything else
/// is accepted (an empty value means "no digest").
Status check_metacopy_at_lookup(std::string_view value);

/// Open-time validation, done by the kernel only when verity != off and the value is longer
/// than 4 bytes: size > 68 -> ERANGE, version != 0 or len != size -> EIO, algorithm unknown or
/// digest size wrong for it -> EIO; algorithm 0 -> no digest. For shorter values returns a
/// Metacopy without digest.
Result<Metacopy> parse_metacopy(std::string_view value);

/// Path of a data-layer object named by an absolute redirect, relative to each data-layer root
/// (leading slashes removed). A relative or empty redirect of a metacopy file makes the kernel
/// fail the lookup (EIO with metacopy=on): returned as an EIO error.
Result<std::string_view> redirect_object_path(std::string_view redirect);

}  // namespace cfs::vfs
