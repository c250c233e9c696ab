// SPDX-License-Identifier: Apache-2.0
// Helpers of the vfs unit tests: temporary directories, asset paths.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace cfs::vfs::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cfs-vfs-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline std::string reference_image(const std::string& name) {
  return std::string(CFS_SHARED_DIR) + "/compat/composefs-assets/reference-outputs/" + name;
}

}  // namespace cfs::vfs::testing
