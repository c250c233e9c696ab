// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/lazy.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cfs/util/atomic_file.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"

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
                                                  std::string_view part, std::uint64_t max) {
  std::string rel = part_path(image, part);
  auto fd = sys::openat(repo.fd(), rel, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().is_errno(ENOENT)) return std::optional<std::string>();
    return fail(std::move(fd).error());
  }
  if (max != UINT64_MAX) {
    CFS_ASSIGN(auto st, sys::fstat(fd->get(), repo.path() + "/" + rel));
    if (static_cast<std::uint64_t>(st.st_size) > max)
      return fail(Errc::kInvalidInput, fmt::format("{}/{}: {} bytes, more than the {} allowed",
                                                   repo.path(), rel, st.st_size, max));
  }
  CFS_ASSIGN(std::string bytes, sys::read_fd(fd->get(), repo.path() + "/" + rel));
  return std::optional<std::string>(std::move(bytes));
}

Status remove_lazy_part(Repository& repo, const verity::Digest& image, std::string_view part) {
  auto st = sys::unlinkat(repo.fd(), part_path(image, part), 0);
  if (!st && !st.error().is_errno(ENOENT)) return st;
  CFS_ASSIGN(UniqueFd dir, sys::openat(repo.fd(), std::string(kLazyDir),
                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  return sys::fsync(dir.get(), repo.path() + "/" + std::string(kLazyDir));
}

FetchLock::~FetchLock() {
  if (file_.get() >= 0) (void)sys::unlinkat(dir_.get(), name_, 0);  // then close() unlocks
}

Result<FetchLock> lock_object_fetch(Repository& repo, const verity::Digest& object) {
  const std::string dir_path = repo.path() + "/" + std::string(kLazyDir);
  CFS_TRY(sys::mkdirat_p(repo.fd(), std::string(kLazyDir), 0700));
  CFS_ASSIGN(UniqueFd dir, sys::openat(repo.fd(), std::string(kLazyDir),
                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  const std::string name = object.hex() + ".fetch";
  for (;;) {
    CFS_ASSIGN(UniqueFd fd,
               sys::openat(dir.get(), name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    CFS_TRY(sys::flock(fd.get(), LOCK_EX, dir_path + "/" + name).map([](bool) {}));
    // Its last holder may have removed it meanwhile (and another process created a new one):
    // the lock counts only on the file the name still points at.
    CFS_ASSIGN(struct stat held, sys::fstat(fd.get(), name));
    auto now = sys::fstatat(dir.get(), name, AT_SYMLINK_NOFOLLOW);
    if (now && now->st_ino == held.st_ino && now->st_dev == held.st_dev)
      return FetchLock(std::move(dir), std::move(fd), name);
  }
}

bool has_lazy_part(const Repository& repo, const verity::Digest& image, std::string_view part) {
  return sys::fstatat(repo.fd(), part_path(image, part), AT_SYMLINK_NOFOLLOW).has_value();
}

bool is_lazy(const Repository& repo, const verity::Digest& image) {
  return has_lazy_part(repo, image, kLazySourcePart);
}

Result<std::uint64_t> prune_lazy_parts(Repository& repo) {
  auto dir = sys::openat(repo.fd(), std::string(kLazyDir), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return std::uint64_t{0};
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), repo.path() + "/" + std::string(kLazyDir)));
  std::uint64_t removed = 0;
  for (const auto& [name, type] : entries) {
    std::string hex = name.substr(0, name.find('.'));
    bool keep = !AtomicFile::is_temp_name(name) && !hex.empty() &&
                sys::fstatat(repo.fd(), std::string(kImagesDir) + "/" + hex, AT_SYMLINK_NOFOLLOW)
                    .has_value();
    if (keep) continue;
    CFS_TRY(sys::unlinkat(dir->get(), name, 0));
    ++removed;
  }
  return removed;
}

}  // namespace cfs::repo
