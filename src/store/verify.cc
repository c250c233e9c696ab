// SPDX-License-Identifier: Apache-2.0
#include "cfs/store/verify.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>

#include "cfs/tree/object_name.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/verity/measure.h"

namespace cfs::store {
namespace {

bool is_fanout_name(std::string_view n) {
  return n.size() == 2 && std::all_of(n.begin(), n.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The names in the directory open at dirfd, sorted; getdents on an O_DIRECTORY fd.
Result<std::vector<std::string>> list_names(int dirfd, const std::string& what) {
  CFS_ASSIGN(UniqueFd fd, sys::openat(dirfd, ".", O_RDONLY | O_DIRECTORY));
  std::vector<std::string> names;
  alignas(8) std::array<std::byte, 32768> buf;
  for (;;) {
    CFS_ASSIGN(std::size_t n, sys::getdents(fd.get(), buf, what));
    if (n == 0) break;
    sys::DirentCursor cur(std::span<const std::byte>(buf.data(), n));
    std::string_view name;
    unsigned char type = 0;
    std::uint64_t ino = 0;
    while (cur.next(name, type, ino))
      if (name != "." && name != "..") names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Entry classify(const std::string& rel, std::string_view name, const struct stat& st,
               bool in_fanout) {
  if (name.starts_with(kTempPrefix) && S_ISREG(st.st_mode)) return {rel, EntryKind::kTemp, ""};
  if (!in_fanout)
    return {
        rel, EntryKind::kStray,
        std::string("not an object fan-out directory (") + sys::file_type_name(st.st_mode) + ")"};
  if (!tree::is_object_path(rel)) return {rel, EntryKind::kStray, "not an object name"};
  if (!S_ISREG(st.st_mode))
    return {rel, EntryKind::kStray,
            std::string("not a regular file (") + sys::file_type_name(st.st_mode) + ")"};
  return {rel, EntryKind::kObject, ""};
}

}  // namespace

Result<std::vector<Entry>> walk(int store_fd, const std::string& display) {
  std::vector<Entry> out;
  CFS_ASSIGN(auto top, list_names(store_fd, display));
  for (const auto& name : top) {
    CFS_ASSIGN(struct stat st, sys::fstatat(store_fd, name, AT_SYMLINK_NOFOLLOW));
    if (!is_fanout_name(name) || !S_ISDIR(st.st_mode)) {
      out.push_back(classify(name, name, st, false));
      continue;
    }
    CFS_ASSIGN(UniqueFd sub, sys::openat(store_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    CFS_ASSIGN(auto kids, list_names(sub.get(), display + "/" + name));
    for (const auto& k : kids) {
      CFS_ASSIGN(struct stat kst, sys::fstatat(sub.get(), k, AT_SYMLINK_NOFOLLOW));
      out.push_back(classify(name + "/" + k, k, kst, true));
    }
  }
  return out;
}

std::optional<std::string> problem_kind(const Error& e) {
  // EXDEV: the path leaves the object directory; EINVAL: a redirect overlayfs calls invalid
  // (overlay::redirect_object_path).
  if (e.is_errno(EXDEV) || e.is_errno(EINVAL)) return "refused";
  if (!e.is_errno(ENOENT)) return std::nullopt;
  // ObjectDirs says "missing" when nothing is there, and names what it found otherwise.
  return e.message().find(": missing") != std::string::npos ? "missing" : "refused";
}

Result<std::optional<ObjectProblem>> verify_object(const ObjectDirs& dirs, std::string_view rel,
                                                   const VerifyOptions& opts) {
  auto fd = dirs.open_object(rel);
  if (!fd) {
    if (auto kind = problem_kind(fd.error()))
      return ObjectProblem{std::move(*kind), fd.error().message()};
    return fail(std::move(fd).error());
  }
  return verify_fd(fd->get(), "object " + std::string(rel), opts);
}

Result<std::optional<ObjectProblem>> verify_fd(int fd, const std::string& what,
                                               const VerifyOptions& opts) {
  CFS_ASSIGN(struct stat st, sys::fstat(fd, what));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (opts.size && size != *opts.size)
    return ObjectProblem{"corrupt", fmt::format("size {}, expected {}", size, *opts.size)};
  if (!opts.digest) return std::nullopt;
  verity::Params params;
  params.alg = opts.digest->alg;
  CFS_ASSIGN(verity::Measurement m, verity::measure_or_compute(fd, params, what, opts.threads));
  if (m.digest != *opts.digest)
    return ObjectProblem{"corrupt",
                         fmt::format("fs-verity digest {}{}, expected {}", m.digest.hex(),
                                     m.from_kernel ? " (kernel)" : "", opts.digest->hex())};
  return std::nullopt;
}

}  // namespace cfs::store
