// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/options.h"

namespace cfs::vfs {

std::optional<VerityMode> parse_verity_mode(std::string_view s) {
  if (s == "off") return VerityMode::kOff;
  if (s == "on") return VerityMode::kOn;
  if (s == "require") return VerityMode::kRequire;
  return std::nullopt;
}

std::string_view to_string(VerityMode m) {
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

}  // namespace cfs::vfs
