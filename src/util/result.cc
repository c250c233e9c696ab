// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/result.h"

#include <cerrno>

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
        return "fs-verity digest mismatch";
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

int Error::to_errno() const noexcept {
  if (code_.category() == std::generic_category() || code_.category() == std::system_category())
    return code_.value();
  if (code_.category() == cfs_category()) {
    switch (static_cast<Errc>(code_.value())) {
      case Errc::kCorruptImage:
        return EUCLEAN;
      case Errc::kUnsupportedFeature:
        return EOPNOTSUPP;
      case Errc::kObjectMissing:
        return ENOENT;
      case Errc::kInvalidInput:
        return EINVAL;
      default:
        return EIO;
    }
  }
  return EIO;
}

std::string Error::message() const {
  std::string msg = code_.message();
  return context_.empty() ? msg : context_ + ": " + msg;
}

}  // namespace cfs
