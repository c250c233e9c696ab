// SPDX-License-Identifier: Apache-2.0
#include "cfs/overlay/verity_mode.h"

namespace cfs::overlay {

const char* to_string(VerityMode m) noexcept {
  switch (m) {
    case VerityMode::kOff:
      return "off";
    case VerityMode::kOn:
      return "on";
    case VerityMode::kRequire:
      return "require";
  }
  return "?";
}

std::optional<VerityMode> parse_verity_mode(std::string_view s) noexcept {
  if (s == "off") return VerityMode::kOff;
  if (s == "on") return VerityMode::kOn;
  if (s == "require") return VerityMode::kRequire;
  return std::nullopt;
}

}  // namespace cfs::overlay
