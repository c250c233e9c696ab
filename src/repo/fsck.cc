// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/fsck.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <set>

#include "cfs/repo/lazy.h"
#include "cfs/repo/lease.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"
#include "cfs/verity/kernel.h"
#include "repo/names.h"
#include "repo/objects.h"
#include "repo/reach.h"

namespace cfs::repo {
namespace {

// Objects larger than this are digested on all threads one at a time; smaller ones one per
// thread, many at once.
constexpr std::uint64_t kLargeObject = 8u << 20;

class Checker {
 public:
  Checker(Repository& repo, const FsckOptions& o, FsckCounters* c)
      : repo_(repo), opts_(o), counters_(c) {}

  Result<FsckReport> run();

 private:
  void problem(std::string kind, std::string path, std::string detail, bool fixable) {
    bool repaired = false;
    if (fixable && opts_.repair) repaired = remove(path);
    std::lock_guard lock(mu_);
    report_.problems.push_back({std::move(kind), std::move(path), std::move(detail), repaired});
  }
  bool remove(const std::string& path) {
    auto st = sys::fstatat(repo_.fd(), path, AT_SYMLINK_NOFOLLOW);
    if (!st) return st.error().is_errno(ENOENT);
    return sys::unlinkat(repo_.fd(), path, S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0).has_value();
  }
  unsigned threads() const { return opts_.threads ? opts_.threads : sys::available_cpus(); }

  Status check_objects(const objects::Listing& listing);
  void check_object(const std::string& name, unsigned digest_threads);
  Status check_entries(Kind kind);
  void check_image(const std::string& entry, const verity::Digest& d);
  void check_stream(const std::string& entry, const verity::Digest& d);
  Status check_refs(Kind kind);
  void check_leftovers(const objects::Listing& listing);

  Repository& repo_;
  const FsckOptions& opts_;
  FsckCounters* counters_;
  std::mutex mu_;
  FsckReport report_;
  std::set<std::string> removed_objects_;  // object names removed by repair
  std::set<std::string> bad_entries_[2];   // images/, streams/ entries found broken
};

Status Checker::check_objects(const objects::Listing& listing) {
  if (counters_) counters_->objects_total = listing.objects.size();
  // Large objects first, each on all threads; the rest in parallel, one per thread.
  std::vector<std::string> small;
  for (const auto& e : listing.objects) {
    std::string rel = std::string(kObjectsDir) + "/" + e.name;
    auto st = sys::fstatat(repo_.fd(), rel, AT_SYMLINK_NOFOLLOW);
    if (st && S_ISREG(st->st_mode) && static_cast<std::uint64_t>(st->st_size) > kLargeObject)
      check_object(e.name, threads());
    else
      small.push_back(e.name);
  }
  parallel_for(small.size(), threads(), [&](std::size_t i) { check_object(small[i], 1); });
  for (const auto& s : listing.strays)
    problem("object-bad-name", std::string(kObjectsDir) + "/" + s.name,
            "not an object name of this repository (" + algorithm_name(repo_.algorithm()) + ")",
            true);
  return {};
}

void Checker::check_object(const std::string& name, unsigned digest_threads) {
  std::string rel = std::string(kObjectsDir) + "/" + name;
  auto want = names::object_digest(name.substr(0, 2), name.substr(3), repo_.algorithm());
  auto fd =
      sys::openat2(repo_.fd(), rel, O_RDONLY | O_NONBLOCK | O_NOFOLLOW,
                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
  auto bad = [&](std::string kind, std::string detail) {
    {
      std::lock_guard lock(mu_);
      ++report_.objects_corrupt;
      if (opts_.repair) removed_objects_.insert(name);
    }
    problem(std::move(kind), rel, std::move(detail), true);
  };
  if (!fd) {
    bad("object-not-regular", fd.error().message());
    return;
  }
  auto st = sys::fstat(fd->get(), rel);
  if (!st || !S_ISREG(st->st_mode)) {
    bad("object-not-regular", st ? "not a regular file" : st.error().message());
    return;
  }
  verity::Params p;
  p.alg = repo_.algorithm();
  std::optional<verity::Digest> got;
  auto measured = verity::measure_verity(fd->get(), rel);
  if (measured && measured->alg == p.alg) got = *measured;
  if (!got) {
    if (!measured && !verity::is_verity_unavailable(measured.error())) {
      problem("object-unreadable", rel, measured.error().message(), false);
      return;
    }
    auto computed = verity::digest_fd(fd->get(), p, rel, digest_threads);
    if (!computed) {
      problem("object-unreadable", rel, computed.error().message(), false);
      return;
    }
    got = *computed;
    if (repo_.secure() && *got == *want)
      problem("object-verity-missing", rel, "no fs-verity in a secure repository", false);
  }
  if (counters_) {
    counters_->objects_checked.fetch_add(1, std::memory_order_relaxed);
    counters_->bytes_checked.fetch_add(static_cast<std::uint64_t>(st->st_size),
                                       std::memory_order_relaxed);
  }
  {
    std::lock_guard lock(mu_);
    ++report_.objects_checked;
    report_.bytes_checked += static_cast<std::uint64_t>(st->st_size);
  }
  if (!(*got == *want)) bad("object-digest-mismatch", "fs-verity digest " + got->hex());
}

Status Checker::check_entries(Kind kind) {
  std::string top(kind == Kind::kImage ? kImagesDir : kStreamsDir);
  auto dir = sys::openat(repo_.fd(), top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return {};
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), repo_.path() + "/" + top));
  std::sort(entries.begin(), entries.end());
  auto& bad = bad_entries_[kind == Kind::kImage ? 0 : 1];
  for (const auto& [name, type] : entries) {
    std::string rel = top + "/" + name;
    if (name == kRefsDir) continue;
    if (names::is_temp(name)) continue;  // leftovers: check_leftovers
    auto target = sys::readlinkat(dir->get(), name);
    std::optional<verity::Digest> object =
        target ? names::entry_target_object(*target, repo_.algorithm()) : std::nullopt;
    if (!object) {
      bad.insert(name);
      ++report_.broken_links;
      problem("bad-link", rel,
              target ? "points at '" + *target + "', not at an object" : "not a symlink", true);
      continue;
    }
    if (kind == Kind::kImage && object->hex() != name) {
      bad.insert(name);
      ++report_.broken_links;
      problem("bad-link", rel, "points at object " + object->hex() + ", not at its own digest",
              true);
      continue;
    }
    std::string oname = names::object_name(*object);
    if (removed_objects_.count(oname) || !repo_.has_object(*object)) {
      bad.insert(name);
      ++report_.broken_links;
      problem("broken-link", rel, "its object " + oname + " is missing", true);
      continue;
    }
    if (kind == Kind::kImage)
      check_image(rel, *object);
    else
      check_stream(rel, *object);
  }
  return {};
}

void Checker::check_image(const std::string& rel, const verity::Digest& d) {
  ++report_.images_checked;
  std::vector<std::string> foreign;
  auto objects = reach::image_objects(repo_, d, true, &foreign);
  if (!objects) {
    ++report_.images_corrupt;
    problem("image-corrupt", rel, objects.error().message(), false);
    return;
  }
  for (const auto& f : foreign)
    problem("image-corrupt", rel, "redirect '" + f + "' is not an object of this repository",
            false);
  std::set<std::string> missing;
  for (const auto& o : *objects) {
    if (missing.count(o)) continue;
    bool gone = removed_objects_.count(o) > 0 ||
                !sys::fstatat(repo_.fd(), std::string(kObjectsDir) + "/" + o, AT_SYMLINK_NOFOLLOW);
    if (gone) missing.insert(o);
  }
  if (!missing.empty() && is_lazy(repo_, d)) {
    // Registered by a lazy mount: its objects arrive when files are read (repo/lazy.h).
    report_.notes.push_back(rel + ": " + std::to_string(missing.size()) +
                            " objects not fetched yet (a lazily mounted image; `cfs oci pull` "
                            "or the mount's fill completes it)");
    return;
  }
  for (const auto& o : missing) {
    ++report_.missing_objects;
    problem("missing-object", rel, "object " + o + " is missing (re-import the image to heal)",
            false);
  }
}

void Checker::check_stream(const std::string& rel, const verity::Digest& d) {
  ++report_.streams_checked;
  auto refs = reach::stream_refs(repo_, d);
  if (!refs) {
    ++report_.streams_corrupt;
    problem("stream-corrupt", rel, refs.error().message(), false);
    return;
  }
  auto check = [&](const verity::Digest& o, const char* what) {
    std::string name = names::object_name(o);
    if (removed_objects_.count(name) || !repo_.has_object(o)) {
      ++report_.missing_objects;
      problem("missing-object", rel,
              std::string(what) + " " + name + " is missing (re-import to heal)", false);
    }
  };
  for (const auto& o : refs->objects) check(o, "object");
  for (const auto& s : refs->streams) check(s, "referenced stream");
}

Status Checker::check_refs(Kind kind) {
  std::string_view top = kind == Kind::kImage ? kImagesDir : kStreamsDir;
  const auto& bad = bad_entries_[kind == Kind::kImage ? 0 : 1];
  CFS_ASSIGN(auto links, names::walk_refs(repo_.fd(), top));
  for (const auto& l : links) {
    if (l.temp) continue;  // leftovers: check_leftovers
    if (!l.target) {
      ++report_.broken_links;
      problem("bad-link", l.path, "not a symlink", true);
      continue;
    }
    auto entry = names::ref_target_entry(l.path, *l.target, top);
    if (!entry) {
      ++report_.broken_links;
      problem("bad-link", l.path, "points at '" + *l.target + "', outside " + std::string(top),
              true);
    } else if (bad.count(*entry) ||
               !sys::fstatat(repo_.fd(), std::string(top) + "/" + *entry, AT_SYMLINK_NOFOLLOW)) {
      ++report_.broken_links;
      problem("broken-link", l.path, "names " + *entry + ", which is missing or broken", true);
    }
  }
  return {};
}

void Checker::check_leftovers(const objects::Listing& listing) {
  std::vector<std::string> temps;
  for (const auto& t : listing.temps) temps.push_back(std::string(kObjectsDir) + "/" + t.name);
  for (Kind k : {Kind::kImage, Kind::kStream}) {
    std::string top(k == Kind::kImage ? kImagesDir : kStreamsDir);
    if (auto dir = sys::openat(repo_.fd(), top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW); dir)
      if (auto all = sys::list_dir(dir->get(), top); all)
        for (const auto& [name, type] : *all)
          if (names::is_temp(name)) temps.push_back(top + "/" + name);
    if (auto links = names::walk_refs(repo_.fd(), top); links)
      for (const auto& l : *links)
        if (l.temp) temps.push_back(l.path);
  }
  if (auto dir = sys::openat(repo_.fd(), std::string(kMountsDir), O_RDONLY | O_DIRECTORY); dir)
    if (auto all = sys::list_dir(dir->get(), std::string(kMountsDir)); all)
      for (const auto& [name, type] : *all)
        if (names::is_temp(name)) temps.push_back(std::string(kMountsDir) + "/" + name);
  report_.temp_files = temps.size();

  if (auto leases = list_leases(repo_); leases) {
    for (const auto& l : *leases) {
      std::string why;
      if (lease_live(l, &why)) continue;
      // Stale leases are harmless (gc removes them); repair removes them too.
      std::string rel = std::string(kMountsDir) + "/" + l.id;
      if (opts_.repair && remove(rel)) continue;
      report_.notes.push_back("stale mount lease " + rel + ": " + why);
    }
  }
  if (temps.empty()) return;
  // Under the exclusive lock (repair) nobody else has the repository open: temporary files are
  // leftovers. Otherwise they are leftovers only if nobody has it open now; this is the last
  // thing done under the lock, since a failed conversion may drop the shared lock.
  bool alone = repo_.lock_mode() == LockMode::kExclusive || repo_.try_exclusive_last();
  for (const auto& t : temps) {
    if (alone)
      problem("temp-file", t, "left by an interrupted write", true);
    else
      report_.notes.push_back(t +
                              ": temporary file (another process has the repository open; "
                              "a write may be in progress)");
  }
}

Result<FsckReport> Checker::run() {
  if (opts_.repair && repo_.lock_mode() != LockMode::kExclusive)
    return fail(Errc::kInvalidInput,
                repo_.path() + ": fsck --repair needs the repository locked exclusively");
  report_.has_metadata = !repo_.legacy();
  report_.secure = repo_.secure();
  CFS_ASSIGN(auto listing, objects::list(repo_, threads()));
  CFS_TRY(check_objects(listing));
  CFS_TRY(check_entries(Kind::kStream));
  CFS_TRY(check_entries(Kind::kImage));
  CFS_TRY(check_refs(Kind::kStream));
  CFS_TRY(check_refs(Kind::kImage));
  check_leftovers(listing);
  return std::move(report_);
}

}  // namespace

bool FsckReport::ok() const noexcept {
  return std::all_of(problems.begin(), problems.end(),
                     [](const FsckProblem& p) { return p.repaired; });
}

Result<FsckReport> fsck(Repository& repo, const FsckOptions& options, FsckCounters* counters) {
  Checker c(repo, options, counters);
  return c.run();
}

}  // namespace cfs::repo
