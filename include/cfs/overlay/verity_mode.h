// SPDX-License-Identifier: Apache-2.0
// overlayfs' verity= mount option (Linux 6.6), the one enum both mounts use: the kernel mount
// passes it to overlayfs, the FUSE mount enforces it in userspace with the same meaning.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace cfs::overlay {

/// off: digests are ignored; on: a digest present in a metacopy file must match the object's
/// fs-verity digest; require: additionally every metacopy file must carry a digest (EIO at
/// open otherwise). Files stored inline in the image are never affected.
enum class VerityMode : std::uint8_t { kOff, kOn, kRequire };

/// "off", "on", "require".
const char* to_string(VerityMode m) noexcept;
/// The inverse of to_string(); nullopt for anything else.
std::optional<VerityMode> parse_verity_mode(std::string_view s) noexcept;

}  // namespace cfs::overlay
