// SPDX-License-Identifier: Apache-2.0
#include "repo/names.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>

#include "cfs/tree/object_name.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"

namespace cfs::repo::names {
namespace {

// Splits on '/', resolving "." and ".." lexically; nullopt if ".." climbs above the start.
std::optional<std::vector<std::string_view>> normalize(std::vector<std::string_view> base,
                                                       std::string_view rel) {
  std::size_t pos = 0;
  while (pos <= rel.size()) {
    std::size_t slash = rel.find('/', pos);
    if (slash == std::string_view::npos) slash = rel.size();
    std::string_view c = rel.substr(pos, slash - pos);
    if (c == "..") {
      if (base.empty()) return std::nullopt;
      base.pop_back();
    } else if (!c.empty() && c != ".") {
      base.push_back(c);
    }
    pos = slash + 1;
  }
  return base;
}

std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > pos) out.push_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return out;
}

std::string unique_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::uint64_t v = (static_cast<std::uint64_t>(ts.tv_nsec) << 20) ^
                    (static_cast<std::uint64_t>(::getpid()) << 8) ^ counter.fetch_add(1) ^
                    static_cast<std::uint64_t>(ts.tv_sec) * 0x9E3779B97F4A7C15ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// "'TEXT' is not a sha256 digest". Built by appending: GCC 12 at -O3 takes the
// `"'" + std::string(...)` form (operator+(const char*, string&&), an insert at position 0) for
// a possibly overlapping memcpy and fails -Werror=restrict (a known GCC 12 false positive).
std::string not_a_digest(std::string_view text, verity::HashAlg alg) {
  std::string msg = "'";
  msg.append(text).append("' is not a ").append(verity::hash_alg_name(alg)).append(" digest");
  return msg;
}

Status walk(int repo_fd, const std::string& rel, const std::string& prefix,
            std::vector<RefLink>& out, int depth) {
  // Refs are a few levels deep at most; a deeper tree is damage (or a loop of bind mounts).
  if (depth > 64) return fail(Errc::kCorruptImage, rel + ": refs nested too deeply");
  auto dir = sys::openat(repo_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT) && depth == 0) return {};
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), rel));
  for (auto& [name, type] : entries) {
    std::string path = rel + "/" + name;
    unsigned char t = type;
    if (t == DT_UNKNOWN) {
      CFS_ASSIGN(auto st, sys::fstatat(dir->get(), name, AT_SYMLINK_NOFOLLOW));
      t = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_REG;
    }
    if (t == DT_DIR) {
      CFS_TRY(walk(repo_fd, path, prefix + name + "/", out, depth + 1));
      continue;
    }
    RefLink l;
    l.name = prefix + name;
    l.path = path;
    l.temp = is_temp(name);
    if (t == DT_LNK) {
      CFS_ASSIGN(l.target, sys::readlinkat(dir->get(), name));
    }
    out.push_back(std::move(l));
  }
  return {};
}

}  // namespace

std::string object_name(const verity::Digest& digest) { return tree::object_path(digest); }

std::optional<verity::Digest> object_digest(std::string_view dir, std::string_view rest,
                                            verity::HashAlg alg) {
  return tree::parse_object_path(std::string(dir) + "/" + std::string(rest), alg);
}

Result<verity::Digest> parse_digest(std::string_view text, verity::HashAlg alg) {
  std::string_view hex = text;
  if (auto colon = text.find(':'); colon != std::string_view::npos) {
    if (text.substr(0, colon) != verity::hash_alg_name(alg))
      return fail(Errc::kInvalidInput, not_a_digest(text, alg));
    hex = text.substr(colon + 1);
  }
  auto d = tree::parse_digest_hex(hex, alg);
  if (!d)
    return fail(Errc::kInvalidInput, not_a_digest(text, alg) + " (" +
                                         std::to_string(2 * verity::digest_size(alg)) +
                                         " hex digits)");
  return *d;
}

bool is_temp(std::string_view name) {
  return name.starts_with(".tmp") || name.starts_with(".symlink-");
}

std::string temp_link_name() { return ".symlink-" + unique_suffix(); }
std::string temp_file_name() { return ".tmp-" + unique_suffix(); }

bool valid_ref(std::string_view name) {
  if (name.empty() || name.size() > 4096 || name.find('\0') != std::string_view::npos) return false;
  std::size_t pos = 0;
  while (pos <= name.size()) {
    std::size_t slash = name.find('/', pos);
    if (slash == std::string_view::npos) slash = name.size();
    std::string_view c = name.substr(pos, slash - pos);
    if (c.empty() || c == "." || c == ".." || c.size() > 255 || is_temp(c)) return false;
    pos = slash + 1;
  }
  return true;
}

bool valid_entry(std::string_view name) {
  return !name.empty() && name.size() <= 255 && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos && name != "." && name != ".." &&
         name != "refs" && !is_temp(name);
}

std::optional<std::string> ref_target_entry(std::string_view link_path, std::string_view target,
                                            std::string_view top) {
  if (target.empty() || target.front() == '/') return std::nullopt;
  auto base = components(link_path);
  if (base.empty()) return std::nullopt;
  base.pop_back();  // relative to the directory holding the link
  auto resolved = normalize(std::move(base), target);
  if (!resolved || resolved->size() != 2 || (*resolved)[0] != top || !valid_entry((*resolved)[1]))
    return std::nullopt;
  return std::string((*resolved)[1]);
}

std::optional<verity::Digest> entry_target_object(std::string_view target, verity::HashAlg alg) {
  if (target.empty() || target.front() == '/') return std::nullopt;
  // Entries live one level down (images/<hex>, streams/<id>).
  auto resolved = normalize({"top"}, target);
  if (!resolved || resolved->size() != 3 || (*resolved)[0] != "objects") return std::nullopt;
  return object_digest((*resolved)[1], (*resolved)[2], alg);
}

Status replace_symlink(int repo_fd, const std::string& dir, const std::string& name,
                       const std::string& target) {
  CFS_TRY(sys::mkdirat_p(repo_fd, dir, 0755));
  CFS_ASSIGN(auto dfd, sys::openat(repo_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  auto made = sys::symlinkat(target, dfd.get(), name);
  if (made) return {};
  if (!made.error().is_errno(EEXIST)) return made;
  if (auto have = sys::readlinkat(dfd.get(), name); have && *have == target) return {};
  std::string tmp = temp_link_name();
  CFS_TRY(sys::symlinkat(target, dfd.get(), tmp));
  if (auto st = sys::renameat(dfd.get(), tmp, dfd.get(), name); !st) {
    (void)sys::unlinkat(dfd.get(), tmp, 0);
    return st;
  }
  return {};
}

Result<std::vector<RefLink>> walk_refs(int repo_fd, std::string_view top) {
  std::vector<RefLink> out;
  CFS_TRY(walk(repo_fd, std::string(top) + "/refs", "", out, 0));
  return out;
}

}  // namespace cfs::repo::names
