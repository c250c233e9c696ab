// SPDX-License-Identifier: Apache-2.0
// `cfs repo SUBCOMMAND`: repositories compatible with composefs-rs (docs/repository.md).
//   init [PATH] [--algorithm A] [--insecure] [--erofs-version 0|1]
//   images [--all] [--no-trunc] [--json]
//   tag IMAGE NAME | untag NAME
//   cat STREAM
//   gc [--dry-run] [--root NAME]... [--json]
//   fsck [--repair] [--json]
// Every subcommand takes --repo PATH (default: $CFS_REPO, else /sysroot/composefs for root,
// ~/.var/lib/composefs otherwise). Exit status: 0 ok, 1 failure (fsck: problems found),
// 2 usage, 3 (fsck) operational error.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

// g++ 12 -O2 reports a false "potential null pointer dereference" inside CLI11's
// detail::split (inlined std::string relocation); it is not in our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/repo/fsck.h"
#include "cfs/repo/gc.h"
#include "cfs/repo/lease.h"
#include "cfs/repo/repository.h"
#include "cfs/repo/streams.h"
#ifdef CFS_WITH_REGISTRY
#include "cfs/registry/pull.h"
#endif
#include "tools/command.h"
#include "tools/repo_common.h"

namespace cfs::tools {
namespace {

int run_init(int argc, char** argv) {
  CLI::App app{"Create a repository (or check that an existing one has these settings).",
               "cfs repo init"};
  std::string repo_path, positional, algorithm;
  unsigned erofs_version = 1;
  bool insecure = false;
  add_repo_option(app, repo_path);
  app.add_option("PATH", positional, "the repository directory (same as --repo)");
  app.add_option("--algorithm", algorithm,
                 "fsverity-sha512-12 (default) or fsverity-sha256-12: the digest naming objects");
  app.add_flag("--insecure", insecure,
               "no fs-verity on meta.json: objects and mounts are not required to have it "
               "(for filesystems without fs-verity)");
  app.add_option("--erofs-version", erofs_version, "EROFS format of images (default 1)")
      ->check(CLI::Range(0U, 1U));
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  if (!positional.empty() && !repo_path.empty() && positional != repo_path) {
    fmt::print(stderr, "cfs: error: PATH and --repo name different directories\n");
    return kExitUsage;
  }
  repo::InitOptions o;
  o.insecure = insecure;
  o.erofs_version = erofs_version;
  if (!algorithm.empty()) {
    auto alg = repo::parse_algorithm(algorithm);
    if (!alg) {
      fmt::print(stderr, "cfs: error: --algorithm: {}\n", alg.error().message());
      return kExitUsage;
    }
    o.algorithm = *alg;
  }
  std::string path = !positional.empty() ? positional : repo_path_or_default(repo_path);
  auto r = repo::Repository::init(path, o);
  if (!r) return report(r.error());
  return kExitOk;
}

int run_images(int argc, char** argv) {
  CLI::App app{"List the named images of a repository.", "cfs repo images"};
  std::string repo_path;
  bool json = false, all = false, no_trunc = false;
  add_repo_option(app, repo_path);
  app.add_flag("--all", all, "also list images without a name");
  app.add_flag("--no-trunc", no_trunc, "print whole image digests");
  app.add_flag("--json", json, "print JSON");
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto refs = r->list_refs(repo::Kind::kImage);
  if (!refs) return report(refs.error());
  auto entries = r->list_entries(repo::Kind::kImage);
  if (!entries) return report(entries.error());
  auto leases = repo::list_leases(*r);
  if (!leases) return report(leases.error());
  std::map<std::string, unsigned> mounts;
  for (const auto& l : *leases)
    if (repo::lease_live(l)) ++mounts[l.image];

  struct Row {
    std::string name;  // empty: unnamed
    std::string id;
  };
  std::vector<Row> rows;
  std::map<std::string, bool> named;
  for (const auto& ref : *refs) {
    rows.push_back({ref.name, ref.target});
    named[ref.target] = true;
  }
  if (all)
    for (const auto& e : *entries)
      if (!named.count(e)) rows.push_back({"", e});

  if (json) {
    std::string out =
        "{\"algorithm\": " + json::string(repo::algorithm_name(r->algorithm())) + ", \"images\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      out += fmt::format("{}{{\"name\": {}, \"id\": {}, \"mounts\": {}}}", i ? ", " : "",
                         rows[i].name.empty() ? "null" : json::string(rows[i].name),
                         json::string(rows[i].id), mounts[rows[i].id]);
    }
    fmt::print("{}]}}\n", out);
    return kExitOk;
  }
  std::size_t width = 4;
  for (const auto& row : rows) width = std::max(width, row.name.size());
  fmt::print("{:<{}}  {}  {}\n", "NAME", width, no_trunc ? "IMAGE" : "IMAGE       ", "MOUNTS");
  for (const auto& row : rows) {
    std::string id = no_trunc || row.id.size() < 12 ? row.id : row.id.substr(0, 12);
    fmt::print("{:<{}}  {}  {}\n", row.name.empty() ? "-" : row.name, width,
               id.empty() ? "(broken)" : id, mounts[row.id]);
  }
  return kExitOk;
}

int run_tag(int argc, char** argv) {
  CLI::App app{"Name an image (replacing what the name pointed at).", "cfs repo tag"};
  std::string repo_path, image, name;
  add_repo_option(app, repo_path);
  app.add_option("IMAGE", image, "image digest or existing name")->required();
  app.add_option("NAME", name, "new name ('/' separates levels)")->required();
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  repo::OpenOptions oo;
  oo.write = true;
  auto r = open_repo(repo_path, oo);
  if (!r) return report(r.error());
  auto digest = r->resolve_image(image);
  if (!digest) return report(digest.error());
  if (name.starts_with("refs/")) name = name.substr(5);
  if (auto st = r->set_ref(repo::Kind::kImage, name, digest->hex()); !st) return report(st.error());
  return kExitOk;
}

int run_untag(int argc, char** argv) {
  CLI::App app{
      "Remove an image name (the image goes at the next gc unless another name, a "
      "mount or --root keeps it).",
      "cfs repo untag"};
  std::string repo_path, name;
  add_repo_option(app, repo_path);
  app.add_option("NAME", name, "the name")->required();
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  repo::OpenOptions oo;
  oo.write = true;
  auto r = open_repo(repo_path, oo);
  if (!r) return report(r.error());
  if (name.starts_with("refs/")) name = name.substr(5);
  if (auto st = r->remove_ref(repo::Kind::kImage, name); !st) return report(st.error());
  return kExitOk;
}

std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json::string(items[i]);
  return out + "]";
}

int run_gc(int argc, char** argv) {
  CLI::App app{"Remove the objects no name, mount or --root keeps alive.", "cfs repo gc"};
  std::string repo_path;
  repo::GcOptions o;
  bool json = false;
  add_repo_option(app, repo_path);
  app.add_flag("-n,--dry-run", o.dry_run, "report what would be removed, remove nothing");
  app.add_option("-r,--root", o.roots, "also keep this image or stream (may be repeated)");
  app.add_flag("--json", json, "print JSON");
#ifdef CFS_WITH_REGISTRY
  unsigned download_grace = 24 * 3600;
  app.add_option("--download-grace", download_grace,
                 "keep partial registry downloads (REPO/cfs-downloads) younger than this many "
                 "seconds, for a pull to resume (default: 86400)");
#endif
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  repo::OpenOptions oo;
  oo.write = !o.dry_run;
  // Exclusive: no other process has the repository open, so no build is half-way through
  // adding objects it has not named yet.
  oo.lock = o.dry_run ? repo::LockMode::kShared : repo::LockMode::kExclusive;
  auto r = open_repo(repo_path, oo);
  if (!r) return report(r.error());
  auto rep = repo::gc(*r, o);
  if (!rep) return report(rep.error());
  struct {
    std::size_t removed = 0, kept_recent = 0, kept_locked = 0;
    std::uint64_t bytes = 0;
  } downloads;
#ifdef CFS_WITH_REGISTRY
  {
    auto swept = registry::sweep_downloads(*r, std::chrono::seconds(download_grace), o.dry_run);
    if (!swept) return report(swept.error());
    downloads = {swept->removed, swept->kept_recent, swept->kept_locked, swept->bytes};
  }
#endif
  if (json) {
    std::string mounts, stale;
    for (const auto& l : rep->live_leases)
      mounts += fmt::format("{}{{\"image\": \"{}\", \"mountpoint\": {}, \"kind\": \"{}\"}}",
                            mounts.empty() ? "" : ", ", l.image, json::string(l.mountpoint),
                            l.kind == repo::MountKind::kFuse ? "fuse" : "kernel");
    for (const auto& [l, why] : rep->stale_leases)
      stale += fmt::format("{}{{\"image\": \"{}\", \"mountpoint\": {}, \"reason\": {}}}",
                           stale.empty() ? "" : ", ", l.image, json::string(l.mountpoint),
                           json::string(why));
    fmt::print(
        "{{\"dry_run\": {}, \"objects_scanned\": {}, \"objects_kept\": {}, "
        "\"objects_removed\": {}, \"bytes_removed\": {}, \"images_pruned\": {}, "
        "\"streams_pruned\": {}, \"temp_removed\": {}, \"root_images\": {}, "
        "\"root_streams\": {}, \"mounts\": [{}], \"stale_mounts\": [{}], \"strays\": {}, "
        "\"downloads_removed\": {}, \"download_bytes_removed\": {}, \"downloads_kept\": {}}}\n",
        rep->dry_run ? "true" : "false", rep->objects_scanned, rep->objects_live,
        rep->objects_removed, rep->bytes_removed, rep->images_pruned, rep->streams_pruned,
        rep->temp_removed, json_list(rep->root_images), json_list(rep->root_streams), mounts, stale,
        json_list(rep->strays), downloads.removed, downloads.bytes,
        downloads.kept_recent + downloads.kept_locked);
    return kExitOk;
  }
  const char* verb = rep->dry_run ? "would remove" : "removed";
  if (rep->dry_run) fmt::print("dry run: nothing removed\n");
  fmt::print("roots: {} images ({} mounted), {} streams\n", rep->root_images.size(),
             rep->live_leases.size(), rep->root_streams.size());
  for (const auto& l : rep->live_leases)
    fmt::print("  mounted: {} on {} ({})\n", l.image, l.mountpoint,
               l.kind == repo::MountKind::kFuse ? "fuse" : "kernel");
  fmt::print("objects: {} {} ({}), {} kept\n", verb, rep->objects_removed,
             human_bytes(rep->bytes_removed), rep->objects_live);
  if (rep->images_pruned || rep->streams_pruned)
    fmt::print("links: {} {} image and {} stream names left pointing at nothing\n", verb,
               rep->images_pruned, rep->streams_pruned);
  if (rep->temp_removed) fmt::print("temporary files: {} {}\n", verb, rep->temp_removed);
  for (const auto& [l, why] : rep->stale_leases)
    fmt::print("stale mount lease: {} on {}: {} ({})\n", l.image.empty() ? l.id : l.image,
               l.mountpoint, why, rep->dry_run ? "kept" : "removed");
  for (const auto& s : rep->strays) fmt::print("stray (left alone): {}\n", s);
  if (downloads.removed || downloads.kept_recent || downloads.kept_locked)
    fmt::print("partial downloads: {} {} ({}), {} kept (recent or in use)\n", verb,
               downloads.removed, human_bytes(downloads.bytes),
               downloads.kept_recent + downloads.kept_locked);
  return kExitOk;
}

int run_fsck(int argc, char** argv) {
  CLI::App app{
      "Check a repository: meta.json, every object's digest, streams, images, names, "
      "leftovers.",
      "cfs repo fsck"};
  std::string repo_path;
  repo::FsckOptions o;
  bool json = false;
  add_repo_option(app, repo_path);
  app.add_flag("--repair", o.repair,
               "remove what can be removed safely: temporary files, corrupt objects, links to "
               "nothing, stale leases (a re-import then heals)");
  app.add_option("--threads", o.threads, "worker threads (default: all CPUs)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print JSON");
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  constexpr int kExitProblems = 1, kExitError = 3;
  repo::OpenOptions oo;
  oo.write = o.repair;
  oo.lock = o.repair ? repo::LockMode::kExclusive : repo::LockMode::kShared;
  auto r = open_repo(repo_path, oo);
  if (!r) {
    fmt::print(stderr, "cfs: error: {}\n", r.error().message());
    return kExitError;
  }
  auto rep = repo::fsck(*r, o);
  if (!rep) {
    fmt::print(stderr, "cfs: error: {}\n", rep.error().message());
    return kExitError;
  }
  if (json) {
    std::string problems;
    for (const auto& p : rep->problems)
      problems +=
          fmt::format("{}{{\"kind\": \"{}\", \"path\": {}, \"detail\": {}, \"repaired\": {}}}",
                      problems.empty() ? "" : ", ", p.kind, json::string(p.path),
                      json::string(p.detail), p.repaired ? "true" : "false");
    fmt::print(
        "{{\"ok\": {}, \"has_metadata\": {}, \"secure\": {}, \"algorithm\": \"{}\", "
        "\"objects_checked\": {}, \"bytes_checked\": {}, \"objects_corrupted\": {}, "
        "\"streams_checked\": {}, \"streams_corrupted\": {}, \"images_checked\": {}, "
        "\"images_corrupted\": {}, \"broken_links\": {}, \"missing_objects\": {}, "
        "\"temp_files\": {}, \"problems\": [{}], \"notes\": {}}}\n",
        rep->ok() ? "true" : "false", rep->has_metadata ? "true" : "false",
        rep->secure ? "true" : "false", repo::algorithm_name(r->algorithm()), rep->objects_checked,
        rep->bytes_checked, rep->objects_corrupt, rep->streams_checked, rep->streams_corrupt,
        rep->images_checked, rep->images_corrupt, rep->broken_links, rep->missing_objects,
        rep->temp_files, problems, json_list(rep->notes));
  } else {
    fmt::print(
        "meta.json: {}\n",
        rep->has_metadata
            ? fmt::format("ok ({}, EROFS format {}, {})", repo::algorithm_name(r->algorithm()),
                          r->meta().erofs_version(), rep->secure ? "secure" : "insecure")
            : "absent (old repository; `cfs repo init` adds it)");
    fmt::print("objects: {} checked ({}), {} corrupt\n", rep->objects_checked,
               human_bytes(rep->bytes_checked), rep->objects_corrupt);
    fmt::print("streams: {} checked, {} corrupt\n", rep->streams_checked, rep->streams_corrupt);
    fmt::print("images: {} checked, {} corrupt\n", rep->images_checked, rep->images_corrupt);
    for (const auto& p : rep->problems)
      fmt::print("{}: {}: {}{}\n", p.kind, p.path, p.detail, p.repaired ? " (repaired)" : "");
    for (const auto& n : rep->notes) fmt::print("note: {}\n", n);
    std::size_t left = static_cast<std::size_t>(std::count_if(
        rep->problems.begin(), rep->problems.end(), [](const auto& p) { return !p.repaired; }));
    if (left)
      fmt::print("status: {} problem{}\n", left, left == 1 ? "" : "s");
    else
      fmt::print("status: ok{}\n", rep->problems.empty() ? "" : " (repaired)");
  }
  return rep->ok() ? kExitOk : kExitProblems;
}

int run_cat(int argc, char** argv) {
  CLI::App app{"Write the byte stream a splitstream stores (e.g. a tar layer) to stdout.",
               "cfs repo cat"};
  std::string repo_path, name;
  add_repo_option(app, repo_path);
  app.add_option("STREAM", name, "content id (streams/ID) or refs/NAME")->required();
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  if (::isatty(STDOUT_FILENO)) {
    fmt::print(stderr, "cfs: error: stdout is a terminal; redirect it to a file or a pipe\n");
    return kExitUsage;
  }
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto n = repo::cat_stream(*r, name, STDOUT_FILENO);
  if (!n) return report(n.error());
  return kExitOk;
}

const Subcommand kSubs[] = {
    {"init", "create a repository", run_init},
    {"images", "list named images", run_images},
    {"tag", "name an image", run_tag},
    {"untag", "remove an image name", run_untag},
    {"cat", "write the byte stream a splitstream stores", run_cat},
    {"gc", "remove unreferenced objects (keeps mounted images)", run_gc},
    {"fsck", "check the repository (and --repair it)", run_fsck},
};

int run_repo(int argc, char** argv) {
  return run_subcommand("repo",
                        "composefs-rs compatible repositories: named images over one object "
                        "store.\n--repo PATH defaults to $CFS_REPO, else /sysroot/composefs "
                        "(root) or\n~/.var/lib/composefs (other users).",
                        kSubs, argc, argv);
}

}  // namespace

CFS_REGISTER_COMMAND("repo", "manage a repository of named images (composefs-rs format)", run_repo);

}  // namespace cfs::tools
