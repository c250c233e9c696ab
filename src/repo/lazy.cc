// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/lazy.h"

#include <fcntl.h>

#include "cfs/util/atomic_file.h"
#include "cfs/util/sys.h"

namespace cfs::repo {
namespace {

std::string part_path(const verity::Digest& image, std::string_view part) {
  return std::string(kLazyDir) + "/" + image.hex() + "." + std::string(part);
}

}  // namespace

Status write_lazy_part(Repository& repo, const verity::Digest& image, std::string_view part,
                       std::string_view bytes) {
  CFS_TRY(sys::mkdirat_p(repo.fd(), std::string(kLazyDir), 0700));
  CFS_ASSIGN(AtomicFile f, AtomicFile::create(repo.path() + "/" + part_path(image, part), 0600));
  CFS_TRY(sys::write_all(f.fd(), std::as_bytes(std::span(bytes.data(), bytes.size()))));
  return f.commit();
}

Result<std::optional<std::string>> read_lazy_part(const Repository& repo,
                                                  const verity::Digest& image,
                                                  std::string_view part) {
  std::string rel = part_path(image, part);
  auto fd = sys::openat(repo.fd(), rel, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().is_errno(ENOENT)) return std::optional<std::string>();
    return fail(std::move(fd).error());
  }
  CFS_ASSIGN(std::string bytes, sys::read_fd(fd->get(), repo.path() + "/" + rel));
  return std::optional<std::string>(std::move(bytes));
}

bool is_lazy(const Repository& repo, const verity::Digest& image) {
  return sys::fstatat(repo.fd(), part_path(image, kLazySourcePart), AT_SYMLINK_NOFOLLOW)
      .has_value();
}

}  // namespace cfs::repo
