// SPDX-License-Identifier: Apache-2.0
// The loader's files of an ELF object, resolved in a merged image (see loader.h).
#include "registry/loader.h"

#include <algorithm>
#include <string>

namespace cfs::registry::detail {

Result<std::optional<verity::Digest>> object_of(const erofs::Image& image, std::uint64_t nid) {
  CFS_ASSIGN(auto info, image.inode(nid));
  if (!info.is_reg() || info.xattr_size == 0) return std::optional<verity::Digest>();
  CFS_ASSIGN(auto xs, image.xattrs(info));
  return erofs::backing_from_xattrs(xs).digest;
}

Result<std::optional<std::uint64_t>> follow_path(const erofs::Image& image, std::string_view path) {
  constexpr int kMaxLinks = 40;  // the kernel's MAXSYMLINKS
  std::vector<std::uint64_t> dirs{image.root_nid()};
  std::vector<std::string> todo;  // components left, last first
  auto push = [&](std::string_view p) {
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (pos <= p.size()) {
      std::size_t end = std::min(p.find('/', pos), p.size());
      if (end > pos) parts.emplace_back(p.substr(pos, end - pos));
      pos = end + 1;
    }
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  push(path);
  int links = 0;
  std::optional<std::uint64_t> last;
  while (!todo.empty()) {
    std::string name = std::move(todo.back());
    todo.pop_back();
    if (last) {  // the previous component must be a directory to go on
      dirs.push_back(*last);
      last.reset();
    }
    if (name == ".") continue;
    if (name == "..") {
      if (dirs.size() > 1) dirs.pop_back();
      continue;
    }
    CFS_ASSIGN(auto child, image.lookup(dirs.back(), name));
    if (!child) return std::optional<std::uint64_t>();
    CFS_ASSIGN(auto info, image.inode(*child));
    if (info.is_symlink()) {
      if (++links > kMaxLinks) return std::optional<std::uint64_t>();
      CFS_ASSIGN(std::string target, image.readlink(*child));
      if (target.starts_with('/')) dirs.resize(1);
      push(target);
      continue;
    }
    if (!todo.empty() && !info.is_dir()) return std::optional<std::uint64_t>();
    last = *child;
  }
  return last ? last : std::make_optional(dirs.back());
}

std::vector<verity::Digest> loader_objects(const erofs::Image& image, const ElfLoadInfo& info) {
  std::vector<std::string> dirs;
  for (const auto& d : info.runpath)
    if (d.starts_with('/')) dirs.push_back(d);
  if (std::string t = multiarch_triplet(info); !t.empty())
    dirs.insert(dirs.end(), {"/lib/" + t, "/usr/lib/" + t});
  dirs.insert(dirs.end(), {"/lib", "/usr/lib"});
  if (info.elf64) dirs.insert(dirs.end(), {"/lib64", "/usr/lib64"});
  std::vector<verity::Digest> out;
  std::size_t lookups = 0;
  // Whether `path` names an object (added); false also once the lookup budget is spent.
  auto add = [&](const std::string& path) {
    if (lookups == kMaxLoaderLookups) return false;
    ++lookups;
    auto nid = follow_path(image, path);
    if (!nid || !*nid) return false;
    auto d = object_of(image, **nid);
    if (!d || !*d) return false;
    out.push_back(**d);
    return true;
  };
  if (info.interp.starts_with('/')) add(info.interp);
  // glibc's loader opens /etc/ld.so.cache next, before any library it does not find through
  // RUNPATH: not ELF, so nothing would hint it, and a program's start waited for it (session 10
  // trace: 21-34 ms of `dpkg --version` and `apt-get --version`). It is fetched, not read.
  if (!info.interp.empty() && info.interp.find("musl") == std::string::npos)
    add("/etc/ld.so.cache");
  for (const auto& name : info.needed) {
    if (lookups == kMaxLoaderLookups) break;
    if (name.find('/') != std::string::npos) {
      if (name.starts_with('/')) add(name);
      continue;
    }
    for (const auto& d : dirs)
      if (add(d + "/" + name) || lookups == kMaxLoaderLookups) break;
  }
  return out;
}

}  // namespace cfs::registry::detail
