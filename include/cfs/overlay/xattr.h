// SPDX-License-Identifier: Apache-2.0
// Overlay xattr names and the escaping rules composefs images rely on (overlayfs with
// metacopy=on, redirect_dir=on and data-only lower layers). The writer adds these names, the
// reader removes them, the userspace mount interprets them as the kernel does; all take them
// from here. The rules are in docs/format.md (xattrs) and docs/metacopy.md.
// Thread-safety: pure functions and constants.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cfs/util/result.h"

namespace cfs::overlay {

/// Private namespace of overlayfs in a lower layer.
inline constexpr std::string_view kPrefix = "trusted.overlay.";
/// One escaping level: the image stores a user's `trusted.overlay.X` as
/// `trusted.overlay.overlay.X`, and overlayfs shows it as `trusted.overlay.X` again.
inline constexpr std::string_view kEscapedPrefix = "trusted.overlay.overlay.";
/// The "user.overlay." names mirror the trusted ones for unprivileged (userxattr) mounts.
inline constexpr std::string_view kUserPrefix = "user.overlay.";

/// Regular file whose data lives elsewhere; value: see metacopy.h.
inline constexpr std::string_view kMetacopy = "trusted.overlay.metacopy";
/// Where the data is: "/" + object name, looked up in the data-only layers.
inline constexpr std::string_view kRedirect = "trusted.overlay.redirect";
/// Root directory marker, value kRootOpaqueValue: hides the lower layers below the image.
inline constexpr std::string_view kOpaque = "trusted.overlay.opaque";
inline constexpr std::string_view kRootOpaqueValue = "y";
/// A file that is itself a whiteout (for a mount of the image as a lower layer).
inline constexpr std::string_view kWhiteout = "trusted.overlay.whiteout";

/// What the writer turns a user whiteout (chardev 0/0) into: a regular file with these two
/// markers, and its directory gets the "whiteouts" pair (and, from format version 1, the
/// opaque pair with kWhiteoutsOpaqueValue), escaped so the image can be stacked as a lower
/// layer of another overlay (overlayfs "whiteouts in lower layers").
inline constexpr std::string_view kEscapedWhiteout = "trusted.overlay.overlay.whiteout";
inline constexpr std::string_view kEscapedWhiteouts = "trusted.overlay.overlay.whiteouts";
inline constexpr std::string_view kEscapedOpaque = "trusted.overlay.overlay.opaque";
inline constexpr std::string_view kUserWhiteout = "user.overlay.whiteout";
inline constexpr std::string_view kUserWhiteouts = "user.overlay.whiteouts";
inline constexpr std::string_view kUserOpaque = "user.overlay.opaque";
inline constexpr std::string_view kWhiteoutsOpaqueValue = "x";

/// Other xattrs composefs treats specially: the root stubs copy the root's SELinux label; an
/// ACL anywhere sets the image's HAS_ACL flag.
inline constexpr std::string_view kSelinux = "security.selinux";
inline constexpr std::string_view kAclAccess = "system.posix_acl_access";
inline constexpr std::string_view kAclDefault = "system.posix_acl_default";

/// A chardev with device number 0 (0/0): overlayfs' whiteout. composefs keeps rdev in 32 bits,
/// so the writer tests the truncated value; pass what the source holds.
constexpr bool is_whiteout(std::uint32_t mode, std::uint64_t rdev) noexcept {
  return (mode & 0170000) == 0020000 && static_cast<std::uint32_t>(rdev) == 0;
}

/// True for a name the image must store escaped (any `trusted.overlay.*` of the user).
constexpr bool needs_escape(std::string_view key) noexcept { return key.starts_with(kPrefix); }

/// The name a user xattr is stored under in the image: `trusted.overlay.X` becomes
/// `trusted.overlay.overlay.X`, everything else is unchanged.
std::string escaped_name(std::string_view key);

/// Name a raw image xattr shows under through the mount, or nullopt when overlayfs hides it:
/// `trusted.overlay.overlay.X` -> `trusted.overlay.X` (one escaping level is removed), any
/// other `trusted.overlay.*` is private and hidden, everything else passes unchanged.
std::optional<std::string> visible_name(std::string_view raw);

/// The raw image name a visible name is read from (the inverse of visible_name()).
std::string raw_name(std::string_view visible);

/// Path of a data-layer object named by an absolute redirect, relative to each data-layer root
/// (leading slashes removed). A relative or empty redirect of a metacopy file makes the kernel
/// fail the lookup (EIO with metacopy=on): returned as an EIO error.
Result<std::string_view> redirect_object_path(std::string_view redirect);

/// The backing-object name a composefs reader takes from a redirect value: the value without
/// one leading '/' (exact length; composefs 1.0.8 over-reads by up to two bytes here).
std::string_view redirect_payload(std::string_view redirect) noexcept;

}  // namespace cfs::overlay
