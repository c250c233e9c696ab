// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the unit tests (header-only, any module may include them): a temporary
// directory removed with everything in it, deterministic random bytes.
#pragma once

#include <stdlib.h>
#include <sys/vfs.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>

namespace cfs::testutil {

/// A fresh directory (mkdtemp) under `parent` (default: $TMPDIR or /tmp), removed recursively
/// on destruction. path() is empty when it could not be created (check ok()).
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "cfs-test-", const std::string& parent = {}) {
    std::string tmpl =
        (parent.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(parent)) /
        (std::string(prefix) + "XXXXXX");
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string operator/(std::string_view rel) const { return path_ + "/" + std::string(rel); }

  /// Writes `data` to a file (parent directories created); returns its path.
  std::string write(std::string_view rel, std::string_view data) const {
    const std::string p = *this / rel;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p, std::ios::binary)
        .write(data.data(), static_cast<std::streamsize>(data.size()));
    return p;
  }
  /// Creates a directory and its parents; returns its path.
  std::string mkdirs(std::string_view rel) const {
    const std::string p = *this / rel;
    std::filesystem::create_directories(p);
    return p;
  }

 private:
  std::string path_;
};

/// The same `n` bytes for the same seed on every run (std::mt19937, low byte of each draw).
inline std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

/// True when `path` is on tmpfs (which keeps xattrs of any size; ext4 keeps one block).
inline bool on_tmpfs(const std::string& path) {
  struct statfs s {};
  return ::statfs(path.c_str(), &s) == 0 && s.f_type == 0x01021994;  // TMPFS_MAGIC
}

}  // namespace cfs::testutil
