// SPDX-License-Identifier: Apache-2.0
#include "repo/objects.h"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"
#include "repo/names.h"

namespace cfs::repo::objects {

Result<Listing> list(const Repository& repo, unsigned threads) {
  Listing out;
  std::string top(kObjectsDir);
  auto dir = sys::openat(repo.fd(), top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return out;
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), repo.path() + "/" + top));
  std::vector<std::string> fanouts;
  for (auto& [name, type] : entries) {
    bool fanout = name.size() == 2 && (type == DT_DIR || type == DT_UNKNOWN) &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                  });
    if (fanout) {
      fanouts.push_back(name);
    } else if (names::is_temp(name)) {
      out.temps.push_back({name, type});
    } else {
      out.strays.push_back({name, type});
    }
  }
  std::mutex mu;
  std::optional<Error> error;
  parallel_for(fanouts.size(), threads ? threads : sys::available_cpus(), [&](std::size_t i) {
    const std::string& fan = fanouts[i];
    auto fd = sys::openat(dir->get(), fan, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    auto names_in =
        fd ? sys::list_dir(fd->get(), repo.path() + "/objects/" + fan)
           : Result<std::vector<std::pair<std::string, unsigned char>>>(tl::unexpected(fd.error()));
    std::lock_guard lock(mu);
    if (!names_in) {
      // A fan-out name that is not a directory is a stray, not a failure.
      if (!fd && (fd.error().is_errno(ENOTDIR) || fd.error().is_errno(ELOOP))) {
        out.strays.push_back({fan, DT_UNKNOWN});
      } else if (!error) {
        error = std::move(names_in).error();
      }
      return;
    }
    for (auto& [name, type] : *names_in) {
      Entry e{fan + "/" + name, type};
      if (names::is_temp(name)) {
        out.temps.push_back(std::move(e));
      } else if (names::object_digest(fan, name, repo.algorithm())) {
        out.objects.push_back(std::move(e));
      } else {
        out.strays.push_back(std::move(e));
      }
    }
  });
  if (error) return fail(std::move(*error));
  auto by_name = [](const Entry& a, const Entry& b) { return a.name < b.name; };
  std::sort(out.objects.begin(), out.objects.end(), by_name);
  std::sort(out.temps.begin(), out.temps.end(), by_name);
  std::sort(out.strays.begin(), out.strays.end(), by_name);
  return out;
}

}  // namespace cfs::repo::objects
