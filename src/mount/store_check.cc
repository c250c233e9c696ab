// SPDX-License-Identifier: Apache-2.0
// The up-front store check both mounts make (see mount.h).
#include <string>
#include <vector>

#include "cfs/mount/mount.h"
#include "cfs/overlay/xattr.h"

namespace cfs::mount {
namespace {

// Directories entered before the sample gives up: bounds the cost on a huge image whose first
// files are all inline (the check is a convenience, not a proof).
constexpr std::size_t kMaxDirs = 4096;

// The object names of the first `n` regular files with a redirect, depth-first in name order.
Result<std::vector<std::string>> sample_objects(const erofs::Image& image, std::size_t n) {
  std::vector<std::string> names;
  std::vector<std::uint64_t> dirs{image.root_nid()};
  std::size_t entered = 0;
  while (!dirs.empty() && names.size() < n && entered++ < kMaxDirs) {
    const std::uint64_t dir = dirs.back();
    dirs.pop_back();
    std::vector<std::uint64_t> subdirs;
    Status inner;
    CFS_TRY(image.iterate_dir(dir, 0, [&](const erofs::DirentView& d) {
      if (d.name == "." || d.name == "..") return true;
      if (d.file_type == erofs::FileType::kDirectory) {
        subdirs.push_back(d.nid);
      } else if (d.file_type == erofs::FileType::kRegular) {
        auto xs = image.xattrs(d.nid);
        if (!xs) {
          inner = fail(std::move(xs).error());
          return false;
        }
        for (const auto& x : *xs) {
          if (x.name != overlay::kRedirect) continue;
          auto rel = overlay::redirect_object_path(x.value);
          if (rel && !rel->empty()) names.emplace_back(*rel);
        }
      }
      return names.size() < n;
    }));
    CFS_TRY(inner);
    // Reversed, so the first subdirectory in name order is entered first.
    dirs.insert(dirs.end(), subdirs.rbegin(), subdirs.rend());
  }
  return names;
}

}  // namespace

Status check_objects_present(const erofs::Image& image, const store::ObjectDirs& dirs,
                             std::size_t sample) {
  CFS_ASSIGN(std::vector<std::string> names, sample_objects(image, sample));
  if (names.empty()) return {};
  for (const auto& name : names) {
    auto fd = dirs.open_object(name);
    if (fd) return {};
    // Anything but "not there" (EXDEV, EIO) is for the file's own open to report.
    if (!fd.error().is_errno(ENOENT)) return {};
  }
  std::string where;
  for (const auto& d : dirs.names()) where += (where.empty() ? "" : ":") + d;
  return fail(Errc::kObjectMissing, "basedir=" + where + " holds none of the image's first " +
                                        std::to_string(names.size()) + " objects (e.g. " +
                                        names.front() +
                                        "): wrong basedir, or the objects were never added");
}

}  // namespace cfs::mount
