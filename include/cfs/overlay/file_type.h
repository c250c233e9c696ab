// SPDX-License-Identifier: Apache-2.0
// File types: the S_IFMT bits of a mode and the kernel's file-type numbers (fs_ftype, which
// EROFS stores in directory entries as EROFS_FT_*). The types composefs accepts are exactly
// the ones with a number here. Thread-safety: constexpr functions.
#pragma once

#include <sys/stat.h>

#include <cstdint>

namespace cfs::overlay {

enum class FileType : std::uint8_t {
  kUnknown = 0,
  kRegular = 1,
  kDirectory = 2,
  kCharDevice = 3,
  kBlockDevice = 4,
  kFifo = 5,
  kSocket = 6,
  kSymlink = 7,
};

/// The file type of a mode's S_IFMT bits; kUnknown for any other value.
constexpr FileType file_type(std::uint32_t mode) noexcept {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return FileType::kRegular;
    case S_IFDIR:
      return FileType::kDirectory;
    case S_IFCHR:
      return FileType::kCharDevice;
    case S_IFBLK:
      return FileType::kBlockDevice;
    case S_IFIFO:
      return FileType::kFifo;
    case S_IFSOCK:
      return FileType::kSocket;
    case S_IFLNK:
      return FileType::kSymlink;
    default:
      return FileType::kUnknown;
  }
}

/// The S_IFMT bits of a file type; 0 for kUnknown and out-of-range values.
constexpr std::uint32_t mode_type(FileType t) noexcept {
  switch (t) {
    case FileType::kRegular:
      return S_IFREG;
    case FileType::kDirectory:
      return S_IFDIR;
    case FileType::kCharDevice:
      return S_IFCHR;
    case FileType::kBlockDevice:
      return S_IFBLK;
    case FileType::kFifo:
      return S_IFIFO;
    case FileType::kSocket:
      return S_IFSOCK;
    case FileType::kSymlink:
      return S_IFLNK;
    case FileType::kUnknown:
      break;
  }
  return 0;
}

/// True if the mode's type is one composefs can store.
constexpr bool is_known_type(std::uint32_t mode) noexcept {
  return file_type(mode) != FileType::kUnknown;
}

}  // namespace cfs::overlay
