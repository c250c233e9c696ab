// SPDX-License-Identifier: Apache-2.0
// `cfs fsck`: argument parsing and printing; the checks are cfs/fsck/fsck.h.
// `cfs fsck IMAGE... [--basedir DIR]...`: structure, then every object the image's metacopy
// files name, as the mounts read them. `cfs fsck --store DIR [--repair] [IMAGE...]`: the store.
//
// Exit status: 0 clean, 1 problems found (each one printed), 2 usage error, 3 operational error
// (image or store unreadable, I/O error while checking: the check is incomplete).
#include <fmt/core.h>
#include <unistd.h>

// g++ 12 reports a false -Wnull-dereference inside CLI11's inlined std::string code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "cfs/fsck/fsck.h"
#include "cfs/util/json.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

constexpr int kExitProblems = 1;
constexpr int kExitError = 3;

/// "\r" progress line on stderr, only on a terminal, at most every 100 ms.
class Progress {
 public:
  Progress() : tty_(::isatty(2) == 1) {}
  void tick(std::uint64_t done, std::uint64_t total) {
    if (!tty_) return;
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock) return;
    auto now = std::chrono::steady_clock::now();
    if (done != total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    fmt::print(stderr, "\rchecking objects: {}/{}", done, total);
    std::fflush(stderr);
  }
  void finish() {
    if (shown_) fmt::print(stderr, "\n");
    shown_ = false;
  }

 private:
  bool tty_;
  bool shown_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
};

int emit(const fsck::Report& rep, const std::string& target, bool as_json) {
  int rc = rep.error ? kExitError : rep.findings.empty() ? kExitOk : kExitProblems;
  if (as_json) {
    std::string o =
        fmt::format("{{\"target\":{},\"status\":\"{}\",\"complete\":{},\"objects_checked\":{},",
                    json::string(target),
                    rc == kExitOk         ? "clean"
                    : rc == kExitProblems ? "problems"
                                          : "error",
                    rep.error ? "false" : "true", rep.checked);
    if (rep.error) o += fmt::format("\"error\":{},", json::string(rep.error->message()));
    o += "\"removed\":[";
    for (std::size_t i = 0; i < rep.removed.size(); ++i) {
      if (i) o += ',';
      o += json::string(rep.removed[i]);
    }
    o += "],\"findings\":[";
    for (std::size_t i = 0; i < rep.findings.size(); ++i) {
      const auto& f = rep.findings[i];
      o += fmt::format("{}{{\"kind\":\"{}\",\"object\":{},\"detail\":{}}}", i ? "," : "", f.kind,
                       json::string(f.object), json::string(f.detail));
    }
    o += "]}\n";
    fmt::print("{}", o);
  } else {
    for (const auto& r : rep.removed)
      fmt::print("removed: {}: temporary file of a killed writer\n", r);
    for (const auto& f : rep.findings) {
      if (f.kind == "image")
        fmt::print("image: {}\n", f.detail);
      else
        fmt::print("{}: {}{}{}\n", f.kind, f.object, f.detail.empty() ? "" : ": ", f.detail);
    }
  }
  if (rep.error) fmt::print(stderr, "cfs: error: fsck {}: {}\n", target, rep.error->message());
  if (!as_json) {
    const char* plural = rep.findings.size() == 1 ? "" : "s";
    if (rep.error)
      fmt::print(stderr,
                 "fsck {}: check INCOMPLETE (stopped by the error above): {} objects checked, "
                 "{} problem{} found so far\n",
                 target, rep.checked, rep.findings.size(), plural);
    else
      fmt::print(stderr, "fsck {}: {} objects checked, {} problem{}\n", target, rep.checked,
                 rep.findings.size(), plural);
  }
  return rc;
}

int run_fsck(int argc, char** argv) {
  CLI::App app{
      "Check composefs images (structure and backing objects) and/or an object store.\n"
      "  cfs fsck IMAGE... [--basedir DIR]...  image structure; with --basedir, every referenced\n"
      "                                        object exists and has the recorded digest\n"
      "  cfs fsck --store DIR [IMAGE...]       every object's name equals its digest, stray\n"
      "                                        files; each IMAGE's objects exist in DIR\n"
      "Exit status: 0 clean, 1 problems found, 2 usage error, 3 operational error.",
      "cfs fsck"};
  std::string store;
  std::vector<std::string> images, basedirs;
  bool json = false, repair = false;
  app.add_option("IMAGE", images, "composefs images to check");
  app.add_option("--basedir", basedirs,
                 "object directory holding the images' backing files (repeatable; without it "
                 "only the image structure is checked)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--store", store, "object store to check");
  app.add_flag("--repair", repair,
               "with --store: remove the temporary files of killed writers (never one a running "
               "writer holds)");
  app.add_flag("--json", json, "machine-readable report on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (images.empty() && store.empty()) {
    fmt::print(stderr, "cfs: error: fsck: nothing to check (give IMAGE or --store DIR)\n");
    return kExitUsage;
  }
  if (!store.empty() && !basedirs.empty()) {
    fmt::print(stderr, "cfs: error: fsck: --basedir and --store are exclusive\n");
    return kExitUsage;
  }
  if (repair && store.empty()) {
    fmt::print(stderr, "cfs: error: fsck: --repair needs --store DIR\n");
    return kExitUsage;
  }
  Progress progress;
  fsck::Options opts;
  opts.repair = repair;
  opts.progress = [&](std::uint64_t done, std::uint64_t total) { progress.tick(done, total); };
  fsck::Report rep;
  std::string target;
  if (!store.empty()) {
    rep = fsck::check_store(store, opts);
    progress.finish();
    target = store;
    for (const auto& img : images) {
      fsck::merge(rep, fsck::check_image(img, {store}, false, opts), img);
      progress.finish();
    }
  } else {
    for (const auto& img : images) {
      fsck::merge(rep, fsck::check_image(img, basedirs, true, opts), img);
      progress.finish();
    }
    target = images.size() == 1 ? images[0] : fmt::format("{} images", images.size());
  }
  return emit(rep, target, json);
}

}  // namespace

CFS_REGISTER_COMMAND("fsck", "check images and their objects, or an object store", run_fsck);

}  // namespace cfs::tools
