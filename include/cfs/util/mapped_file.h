// SPDX-License-Identifier: Apache-2.0
// Read-only memory mapping of a whole file. Readers work on bytes(), so a bounds check is a
// span check. Thread-safety: immutable after construction; concurrent readers are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "cfs/util/result.h"

namespace cfs {

/// True when bulk reads of file data should go through a mapping rather than a copy out of the
/// page cache (pread) on this host. CFS_READ_MODE=map|pread decides; otherwise the CPU vendor,
/// as measured on one host of each (docs/design.md, "Mapped reads"): Intel yes (host B: mapping
/// cost half the copy), others no (AMD host A: touching mapped pages cost 3-4x the copy).
/// Decided once per process.
bool mapped_reads_preferred() noexcept;

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  /// Maps the file at path (errors name it). An empty file gives an empty span.
  static Result<MappedFile> open(const std::string& path);
  /// Maps an open fd (the mapping outlives the fd).
  static Result<MappedFile> map_fd(int fd, const std::string& what);
  /// Maps len bytes of an open fd from offset, which must be a multiple of the page size (else
  /// kInvalidInput). Pages past the end of the file fault when touched (SIGBUS in user space,
  /// EFAULT for a system call reading them).
  static Result<MappedFile> map_range(int fd, std::uint64_t offset, std::size_t len,
                                      const std::string& what);

  std::span<const std::byte> bytes() const noexcept {
    return {static_cast<const std::byte*>(data_), size_};
  }
  std::size_t size() const noexcept { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace cfs
