// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>
#include <utility>

#include "cfs/util/cpu.h"
#include "cfs/util/sys.h"

namespace cfs {

bool mapped_reads_preferred() noexcept {
  static const bool yes = [] {
    const char* v = std::getenv("CFS_READ_MODE");
    const std::string_view s = v != nullptr ? v : "";
    if (s == "map") return true;
    if (s == "pread") return false;
    return cpu_is_intel();
  }();
  return yes;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

Result<MappedFile> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: a FIFO at the path is refused below instead of blocking the open.
  CFS_ASSIGN(UniqueFd fd, sys::open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  return map_fd(fd.get(), path);
}

Result<MappedFile> MappedFile::map_fd(int fd, const std::string& what) {
  CFS_ASSIGN(struct stat st, sys::fstat(fd, what));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return fail(Errc::kInvalidInput,
                what + ": not a regular file (" + sys::file_type_name(st.st_mode) + ")");
  MappedFile m;
  if (st.st_size == 0) return m;
  auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return fail_errno("mmap " + what);
  m.data_ = p;
  m.size_ = size;
  return m;
}

Result<MappedFile> MappedFile::map_range(int fd, std::uint64_t offset, std::size_t len,
                                         const std::string& what) {
  static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset % page != 0)
    return fail(Errc::kInvalidInput, what + ": mapping offset not page-aligned");
  MappedFile m;
  if (len == 0) return m;
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return fail_errno("mmap " + what);
  m.data_ = p;
  m.size_ = len;
  return m;
}

}  // namespace cfs
