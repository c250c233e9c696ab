// SPDX-License-Identifier: Apache-2.0
// `cfs fsck IMAGE [--basedir DIR]... [--json]`: the image's structure (check_image, load_tree),
// then every backing object it references: present under one of the basedirs and, when the
// image records a digest, with that fs-verity digest (the kernel's measurement when the object
// has verity, else computed; objects spread over all cores).
// `cfs fsck --store DIR [--json]`: every object's name equals its content's digest; anything
// else in the store (temp files from interrupted adds, stray names) is reported.
//
// Exit status: 0 clean, 1 problems found (each one printed), 2 usage error, 3 operational error
// (image or store unreadable, I/O error while checking).
#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/json.h"
#include "cfs/util/parallel.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

constexpr int kExitProblems = 1;
constexpr int kExitError = 3;

struct Finding {
  std::string kind;    ///< image | missing | corrupt | conflict | stray
  std::string object;  ///< payload / store-relative path ("" for image findings)
  std::string detail;
};

/// "\r" progress line on stderr, only on a terminal, at most every 100 ms.
class Progress {
 public:
  explicit Progress(std::uint64_t total) : total_(total), tty_(::isatty(2) == 1) {}
  void tick() {
    std::uint64_t done = ++done_;
    if (!tty_) return;
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock) return;
    auto now = std::chrono::steady_clock::now();
    if (done != total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    fmt::print(stderr, "\rchecking objects: {}/{}", done, total_);
    std::fflush(stderr);
  }
  void finish() {
    if (tty_ && total_ > 0) fmt::print(stderr, "\rchecking objects: {}/{}\n", done_.load(), total_);
  }

 private:
  std::uint64_t total_;
  bool tty_;
  std::atomic<std::uint64_t> done_{0};
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
};

struct Report {
  std::vector<Finding> findings;
  std::uint64_t checked = 0;
  std::optional<Error> error;  // operational failure
};

unsigned thread_count() { return std::max(1u, sys::available_cpus()); }

// One object: find it under a basedir and compare its digest.
std::optional<Finding> check_object(const std::vector<UniqueFd>& bases,
                                    const std::vector<std::string>& base_names,
                                    const std::string& payload,
                                    const std::optional<verity::Digest>& want, unsigned threads,
                                    bool store_scan, std::optional<Error>& io_error) {
  std::string_view rel = payload;
  while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
  for (std::size_t i = 0; i < bases.size(); ++i) {
    auto fd = sys::openat(bases[i].get(), std::string(rel), O_RDONLY | O_NOFOLLOW);
    if (!fd) {
      if (fd.error().is_errno(ENOENT) || fd.error().is_errno(ENOTDIR)) continue;
      if (fd.error().is_errno(ELOOP))
        return Finding{"corrupt", payload, "is a symlink in " + base_names[i]};
      io_error = fd.error();
      return std::nullopt;
    }
    auto st = sys::fstat(fd->get(), payload);
    if (!st) {
      io_error = st.error();
      return std::nullopt;
    }
    if (!S_ISREG(st->st_mode))
      return Finding{"corrupt", payload, "not a regular file in " + base_names[i]};
    if (!want) return std::nullopt;  // the image records no digest: presence is all we can check
    verity::Params params;
    params.alg = want->alg;
    auto d = verity::measure_or_compute(fd->get(), params, base_names[i] + "/" + std::string(rel),
                                        threads);
    if (!d) {
      io_error = d.error();
      return std::nullopt;
    }
    if (d->digest != *want)
      return Finding{"corrupt", payload,
                     store_scan ? fmt::format("content has fs-verity digest {}", d->digest.hex())
                                : fmt::format("fs-verity digest {} in {}, image expects {}",
                                              d->digest.hex(), base_names[i], want->hex())};
    return std::nullopt;
  }
  return Finding{"missing", payload, ""};
}

// verify_digests = false: the objects were already verified by a store scan, so presence and
// the payload-name/digest agreement are all that is left to check.
Report fsck_image(const std::string& path, const std::vector<std::string>& basedirs,
                  bool verify_digests) {
  Report rep;
  auto img = erofs::Image::open(path);
  if (!img) {
    if (img.error().is(Errc::kCorruptImage))
      rep.findings.push_back({"image", "", img.error().message()});
    else
      rep.error = img.error();
    return rep;
  }
  if (auto st = erofs::check_image(*img); !st) {
    rep.findings.push_back({"image", "", st.error().message()});
    return rep;
  }
  auto tree = erofs::load_tree(*img);
  if (!tree) {
    rep.findings.push_back({"image", "", tree.error().message()});
    return rep;
  }
  // payload -> digest; the same payload recorded with two digests is itself a problem.
  std::map<std::string, std::optional<verity::Digest>> objects;
  for (std::size_t i = 0; i < tree->size(); ++i) {
    const Node& n = tree->node(static_cast<NodeId>(i));
    if (!n.is_reg() || n.payload.empty()) continue;
    auto [it, inserted] = objects.emplace(n.payload, n.digest);
    if (!inserted && n.digest && it->second && *it->second != *n.digest)
      rep.findings.push_back({"conflict", n.payload, "referenced with different digests"});
    else if (!inserted && n.digest && !it->second)
      it->second = n.digest;
  }
  if (basedirs.empty()) return rep;  // structure only
  if (!verify_digests) {
    for (auto& [payload, digest] : objects) {
      auto named = tree::parse_object_path(payload);
      if (digest && named && *named != *digest)
        rep.findings.push_back({"conflict", payload,
                                "object name does not match the recorded digest " + digest->hex()});
      digest.reset();
    }
  }

  std::vector<UniqueFd> bases;
  for (const auto& b : basedirs) {
    auto fd = sys::open(b, O_RDONLY | O_DIRECTORY);
    if (!fd) {
      rep.error = fd.error();
      return rep;
    }
    bases.push_back(std::move(*fd));
  }
  std::vector<std::pair<std::string, std::optional<verity::Digest>>> list(objects.begin(),
                                                                          objects.end());
  std::vector<std::optional<Finding>> results(list.size());
  std::vector<std::optional<Error>> errors(list.size());
  const unsigned cpus = thread_count();
  // Many objects: one per core. Few: each digest itself spreads over the cores.
  const unsigned outer = list.size() >= cpus ? cpus : 1;
  const unsigned inner = outer == 1 ? cpus : 1;
  Progress progress(list.size());
  parallel_for(list.size(), outer, [&](std::size_t i) {
    results[i] =
        check_object(bases, basedirs, list[i].first, list[i].second, inner, false, errors[i]);
    progress.tick();
  });
  progress.finish();
  rep.checked = list.size();
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (errors[i] && !rep.error) rep.error = errors[i];
    if (results[i]) rep.findings.push_back(std::move(*results[i]));
  }
  return rep;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Result<std::vector<std::string>> list_dir(int dirfd, const std::string& what) {
  CFS_ASSIGN(UniqueFd fd, sys::openat(dirfd, ".", O_RDONLY | O_DIRECTORY));
  DIR* d = ::fdopendir(fd.get());
  if (!d) return fail_errno("opendir " + what);
  (void)fd.release();  // owned by d now
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Report fsck_store(const std::string& dir) {
  Report rep;
  auto root = sys::open(dir, O_RDONLY | O_DIRECTORY);
  if (!root) {
    rep.error = root.error();
    return rep;
  }
  auto top = list_dir(root->get(), dir);
  if (!top) {
    rep.error = top.error();
    return rep;
  }
  auto stray = [&](const std::string& rel, std::string why) {
    rep.findings.push_back({"stray", rel, std::move(why)});
  };
  std::vector<std::string> objects;
  for (const auto& name : *top) {
    auto st = sys::fstatat(root->get(), name, AT_SYMLINK_NOFOLLOW);
    if (!st) {
      rep.error = st.error();
      return rep;
    }
    bool fanout = name.size() == 2 && is_hex(name) && S_ISDIR(st->st_mode);
    if (!fanout) {
      stray(name, name.rfind(".tmp", 0) == 0 ? "temporary file (interrupted add)"
                                             : "not an object fan-out directory");
      continue;
    }
    auto sub = sys::openat(root->get(), name, O_RDONLY | O_DIRECTORY);
    if (!sub) {
      rep.error = sub.error();
      return rep;
    }
    auto kids = list_dir(sub->get(), dir + "/" + name);
    if (!kids) {
      rep.error = kids.error();
      return rep;
    }
    for (const auto& k : *kids) {
      std::string rel = name + "/" + k;
      auto kst = sys::fstatat(sub->get(), k, AT_SYMLINK_NOFOLLOW);
      if (!kst) {
        rep.error = kst.error();
        return rep;
      }
      if (!tree::is_object_path(rel) || !S_ISREG(kst->st_mode)) {
        stray(rel, k.rfind(".tmp", 0) == 0 ? "temporary file (interrupted add)"
                                           : "not an object (name or type)");
        continue;
      }
      objects.push_back(rel);
    }
  }
  std::vector<std::optional<Finding>> results(objects.size());
  std::vector<std::optional<Error>> errors(objects.size());
  std::vector<UniqueFd> bases;
  bases.push_back(std::move(*root));
  std::vector<std::string> names{dir};
  const unsigned cpus = thread_count();
  const unsigned outer = objects.size() >= cpus ? cpus : 1;
  Progress progress(objects.size());
  parallel_for(objects.size(), outer, [&](std::size_t i) {
    const std::optional<verity::Digest> want = tree::parse_object_path(objects[i]);
    results[i] =
        check_object(bases, names, objects[i], want, outer == 1 ? cpus : 1, true, errors[i]);
    progress.tick();
  });
  progress.finish();
  rep.checked = objects.size();
  for (std::size_t i = 0; i < objects.size(); ++i) {
    if (errors[i] && !rep.error) rep.error = errors[i];
    if (results[i]) rep.findings.push_back(std::move(*results[i]));
  }
  return rep;
}

int emit(const Report& rep, const std::string& target, bool as_json) {
  int rc = rep.error ? kExitError : rep.findings.empty() ? kExitOk : kExitProblems;
  if (as_json) {
    std::string o = fmt::format("{{\"target\":{},\"status\":\"{}\",\"objects_checked\":{},",
                                json::string(target),
                                rc == kExitOk         ? "clean"
                                : rc == kExitProblems ? "problems"
                                                      : "error",
                                rep.checked);
    if (rep.error) o += fmt::format("\"error\":{},", json::string(rep.error->message()));
    o += "\"findings\":[";
    for (std::size_t i = 0; i < rep.findings.size(); ++i) {
      const auto& f = rep.findings[i];
      o += fmt::format("{}{{\"kind\":\"{}\",\"object\":{},\"detail\":{}}}", i ? "," : "", f.kind,
                       json::string(f.object), json::string(f.detail));
    }
    o += "]}\n";
    fmt::print("{}", o);
  } else {
    for (const auto& f : rep.findings) {
      if (f.kind == "image")
        fmt::print("image: {}\n", f.detail);
      else
        fmt::print("{}: {}{}{}\n", f.kind, f.object, f.detail.empty() ? "" : ": ", f.detail);
    }
  }
  if (rep.error) fmt::print(stderr, "cfs: error: fsck {}: {}\n", target, rep.error->message());
  if (!as_json)
    fmt::print(stderr, "fsck {}: {} objects checked, {} problem{}\n", target, rep.checked,
               rep.findings.size(), rep.findings.size() == 1 ? "" : "s");
  return rc;
}

void merge(Report& into, Report&& from, const std::string& image) {
  for (auto& f : from.findings) {
    if (f.kind == "image") f.detail = image + ": " + f.detail;
    into.findings.push_back(std::move(f));
  }
  into.checked += from.checked;
  if (from.error && !into.error) into.error = std::move(from.error);
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
  bool json = false;
  app.add_option("IMAGE", images, "composefs images to check");
  app.add_option("--basedir", basedirs,
                 "object directory holding the images' backing files (repeatable; without it "
                 "only the image structure is checked)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--store", store, "object store to check");
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
  Report rep;
  std::string target;
  if (!store.empty()) {
    rep = fsck_store(store);
    target = store;
    for (const auto& img : images) merge(rep, fsck_image(img, {store}, false), img);
  } else {
    for (const auto& img : images) merge(rep, fsck_image(img, basedirs, true), img);
    target = images.size() == 1 ? images[0] : fmt::format("{} images", images.size());
  }
  return emit(rep, target, json);
}

}  // namespace

CFS_REGISTER_COMMAND("fsck", "check images and their objects, or an object store", run_fsck);

}  // namespace cfs::tools
