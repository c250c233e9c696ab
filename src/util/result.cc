// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/result.h"

namespace cfs {
namespace {

class CfsCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "cfs"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kCorruptImage:
        return "corrupt image";
      case Errc::kUnsupportedFeature:
        return "unsupported feature";
      case Errc::kDigestMismatch:
        return "digest mismatch";
      case Errc::kObjectMissing:
        return "object missing";
      case Errc::kInvalidInput:
        return "invalid input";
      case Errc::kConflict:
        return "conflicting options";
    }
    return "unknown cfs error";
  }
};

}  // namespace

const std::error_category& cfs_category() noexcept {
  static const CfsCategory category;
  return category;
}

std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), cfs_category()}; }

std::string Error::message() const {
  std::string msg = code_.message();
  return context_.empty() ? msg : context_ + ": " + msg;
}

}  // namespace cfs
