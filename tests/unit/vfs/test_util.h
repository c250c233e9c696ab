// SPDX-License-Identifier: Apache-2.0
// Helpers of the vfs unit tests: the shared temporary directory, asset paths.
#pragma once

#include <string>

#include "testutil/temp_dir.h"

namespace cfs::vfs::testing {

using testutil::TempDir;

inline std::string reference_image(const std::string& name) {
  return std::string(CFS_SHARED_DIR) + "/compat/composefs-assets/reference-outputs/" + name;
}

}  // namespace cfs::vfs::testing
