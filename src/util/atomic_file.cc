// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "cfs/util/sys.h"

namespace cfs {

AtomicFile::AtomicFile(UniqueFd fd, std::string path, std::string temp_path)
    : fd_(std::move(fd)), path_(std::move(path)), temp_path_(std::move(temp_path)) {}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : fd_(std::move(o.fd_)),
      path_(std::move(o.path_)),
      temp_path_(std::move(o.temp_path_)),
      committed_(std::exchange(o.committed_, true)) {}

AtomicFile::~AtomicFile() {
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Result<AtomicFile> AtomicFile::create(const std::string& path, mode_t mode) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmpl = dir + "." + base + ".XXXXXX";
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) return fail_errno("create temporary file for " + path);
  UniqueFd owned(fd);
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(fd, mode & ~mask) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return fail_errno("chmod " + tmpl, err);
  }
  return AtomicFile(std::move(owned), path, std::move(tmpl));
}

Status AtomicFile::commit(bool durable) {
  if (durable) CFS_TRY(sys::fsync(fd_.get(), temp_path_));
  CFS_TRY(fd_.close());
  CFS_TRY(sys::renameat(AT_FDCWD, temp_path_, AT_FDCWD, path_));
  committed_ = true;
  return {};
}

}  // namespace cfs
