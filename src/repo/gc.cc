// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/gc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <set>

#include "cfs/repo/lazy.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"
#include "repo/names.h"
#include "repo/objects.h"
#include "repo/reach.h"

namespace cfs::repo {
namespace {

// Adds an extra root given by name: an image if it names one, else a stream.
Status add_root(const Repository& repo, const std::string& name, std::set<std::string>& images,
                std::set<std::string>& streams) {
  auto image = repo.resolve_image(name);
  if (image) {
    images.insert(image->hex());
    return {};
  }
  auto stream = repo.resolve_stream(name);
  if (stream) {
    streams.insert(stream->second);
    return {};
  }
  return fail(Errc::kInvalidInput,
              "--root " + name + ": no image or stream of that name in " + repo.path());
}

// Removes (or counts) the links of images/ or streams/ that point at nothing now, then the
// refs pointing at entries that are gone, and leftover temporary links.
Result<std::uint64_t> prune(Repository& repo, Kind kind, const reach::Marker& marker, bool dry_run,
                            std::uint64_t& temps) {
  std::string top(kind == Kind::kImage ? kImagesDir : kStreamsDir);
  std::uint64_t pruned = 0;
  std::set<std::string> gone;
  auto dir = sys::openat(repo.fd(), top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return pruned;
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), repo.path() + "/" + top));
  for (const auto& [name, type] : entries) {
    if (name == kRefsDir) continue;
    if (names::is_temp(name)) {
      ++temps;
      if (!dry_run) (void)sys::unlinkat(dir->get(), name, 0);
      continue;
    }
    auto target = sys::readlinkat(dir->get(), name);
    auto object = target ? names::entry_target_object(*target, repo.algorithm()) : std::nullopt;
    bool keep = object && (dry_run ? marker.live().count(names::object_name(*object)) > 0
                                   : repo.has_object(*object));
    if (keep) continue;
    gone.insert(name);
    ++pruned;
    if (!dry_run) CFS_TRY(sys::unlinkat(dir->get(), name, 0));
  }
  CFS_ASSIGN(auto refs, names::walk_refs(repo.fd(), top));
  for (const auto& l : refs) {
    bool temp = l.temp;
    std::optional<std::string> entry =
        l.target ? names::ref_target_entry(l.path, *l.target, top) : std::nullopt;
    bool dangling = !entry || gone.count(*entry) ||
                    !sys::fstatat(repo.fd(), top + "/" + *entry, AT_SYMLINK_NOFOLLOW);
    if (!temp && !dangling) continue;
    temp ? ++temps : ++pruned;
    if (!dry_run) CFS_TRY(sys::unlinkat(repo.fd(), l.path, 0));
  }
  return pruned;
}

}  // namespace

Result<GcReport> gc(Repository& repo, const GcOptions& options, GcCounters* counters) {
  if (!options.dry_run && repo.lock_mode() != LockMode::kExclusive)
    return fail(Errc::kInvalidInput, repo.path() + ": gc needs the repository locked exclusively");
  GcReport report;
  report.dry_run = options.dry_run;

  // Roots: names, extra roots, and the image of every live mount.
  std::set<std::string> images, streams;
  CFS_ASSIGN(auto image_refs, repo.list_refs(Kind::kImage));
  CFS_ASSIGN(auto stream_refs, repo.list_refs(Kind::kStream));
  for (const auto& r : image_refs)
    if (!r.target.empty()) images.insert(r.target);
  for (const auto& r : stream_refs)
    if (!r.target.empty()) streams.insert(r.target);
  for (const auto& name : options.roots) CFS_TRY(add_root(repo, name, images, streams));
  CFS_ASSIGN(auto leases, list_leases(repo));
  for (auto& l : leases) {
    std::string why;
    if (lease_live(l, &why)) {
      images.insert(l.image);
      report.live_leases.push_back(l);
    } else {
      report.stale_leases.emplace_back(l, why);
    }
  }

  // Mark. Any root that cannot be read stops the collection before anything is deleted.
  reach::Marker marker(repo);
  for (const auto& hex : images) {
    CFS_ASSIGN(auto d, repo.parse_digest(hex));
    if (auto st = marker.image(d); !st)
      return fail(std::move(st).error().with_context("gc: root image " + hex +
                                                     " cannot be read; nothing was removed "
                                                     "(run `cfs repo fsck`)"));
    if (counters) counters->roots_walked.fetch_add(1, std::memory_order_relaxed);
  }
  for (const auto& id : streams) {
    auto s = repo.resolve_stream(id);
    auto st = s ? marker.stream(s->first) : Status(tl::unexpected(s.error()));
    if (!st)
      return fail(std::move(st).error().with_context("gc: root stream " + id +
                                                     " cannot be read; nothing was removed "
                                                     "(run `cfs repo fsck`)"));
    if (counters) counters->roots_walked.fetch_add(1, std::memory_order_relaxed);
  }
  report.root_images.assign(images.begin(), images.end());
  report.root_streams.assign(streams.begin(), streams.end());

  // Sweep objects/. Under the exclusive lock no writer is at work: temporary files are
  // leftovers of interrupted ones.
  CFS_ASSIGN(auto listing, objects::list(repo, options.threads));
  UniqueFd objects_dir;
  if (!listing.objects.empty() || !listing.temps.empty()) {
    CFS_ASSIGN(objects_dir, sys::openat(repo.fd(), std::string(kObjectsDir),
                                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  }
  report.objects_scanned = listing.objects.size();
  std::mutex mu;
  std::optional<Error> error;
  parallel_for(listing.objects.size(), options.threads ? options.threads : sys::available_cpus(),
               [&](std::size_t i) {
                 const auto& e = listing.objects[i];
                 if (counters) counters->objects_scanned.fetch_add(1, std::memory_order_relaxed);
                 if (marker.live().count(e.name)) return;
                 auto st = sys::fstatat(objects_dir.get(), e.name, AT_SYMLINK_NOFOLLOW);
                 Status removed =
                     options.dry_run ? Status{} : sys::unlinkat(objects_dir.get(), e.name, 0);
                 std::lock_guard lock(mu);
                 if (!removed) {
                   if (!error) error = std::move(removed).error();
                   return;
                 }
                 ++report.objects_removed;
                 if (st) report.bytes_removed += static_cast<std::uint64_t>(st->st_size);
                 if (counters) counters->objects_removed.fetch_add(1, std::memory_order_relaxed);
               });
  if (error) return fail(std::move(*error));
  report.objects_live = report.objects_scanned - report.objects_removed;
  for (const auto& t : listing.temps) {
    ++report.temp_removed;
    if (!options.dry_run) (void)sys::unlinkat(objects_dir.get(), t.name, 0);
  }
  for (const auto& s : listing.strays)
    report.strays.push_back(std::string(kObjectsDir) + "/" + s.name);

  CFS_ASSIGN(report.images_pruned,
             prune(repo, Kind::kImage, marker, options.dry_run, report.temp_removed));
  CFS_ASSIGN(report.streams_pruned,
             prune(repo, Kind::kStream, marker, options.dry_run, report.temp_removed));
  if (!options.dry_run) {
    for (const auto& [l, why] : report.stale_leases) CFS_TRY(drop_lease(repo, l));
    CFS_TRY(prune_lazy_parts(repo));
  }
  return report;
}

}  // namespace cfs::repo
