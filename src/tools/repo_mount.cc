// SPDX-License-Identifier: Apache-2.0
// `cfs mount --repo R [--fuse] [-o OPTS] NAME MOUNTPOINT`: mounts an image of a repository with
// the repository's objects as the only object directory, verity required in a secure
// repository, and a lease recorded so that `cfs repo gc` keeps the image's objects while it is
// mounted (repo/lease.h).
#include "tools/repo_mount.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/mount/mount.h"
#include "cfs/mount/options.h"
#include "cfs/repo/lease.h"
#include "cfs/util/sys.h"
#include "tools/command.h"
#include "tools/fuse_mount.h"
#include "tools/repo_common.h"

namespace cfs::tools {
namespace {

// Opens for writing (a lease is a write); a repository this process cannot write is mounted
// without a lease, with a warning, since no gc can run on it from here either.
Result<repo::Repository> open_for_mount(const std::string& path, bool& leased) {
  repo::OpenOptions w;
  w.write = true;
  auto r = open_repo(path, w);
  leased = r.has_value();
  if (r) return r;
  const Error& e = r.error();
  if (!e.is(Errc::kUnsupportedFeature) && !e.is_errno(EROFS) && !e.is_errno(EACCES)) return r;
  auto ro = open_repo(path, {});
  if (ro)
    fmt::print(stderr, "cfs: warning: {}; the mount is not recorded as a lease\n", e.message());
  return ro;
}

}  // namespace

bool wants_repo_mount(int argc, char** argv) {
  std::vector<std::string> positional;
  bool basedir = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--repo" || a.starts_with("--repo=")) return true;
    bool takes_value = a == "-o" || a == "--options" || a == "--erofs-backend" ||
                       a == "--overlay-api" || a == "--lower-mode";
    std::string_view value;
    if (takes_value && i + 1 < argc) {
      value = argv[++i];
    } else if (a.starts_with("-o") && a.size() > 2) {
      value = a.substr(2);
    } else if (a.starts_with("--options=")) {
      value = a.substr(10);
    } else if (!a.starts_with("-")) {
      positional.emplace_back(a);
    }
    if (value.find("basedir=") != std::string_view::npos ||
        value.find("source=") != std::string_view::npos)
      basedir = true;
  }
  // No object directory given and IMAGE is no file: a name in the default repository.
  struct stat st {};
  return !basedir && positional.size() == 2 && ::lstat(positional[0].c_str(), &st) != 0;
}

int run_repo_mount(int argc, char** argv, const std::string& shown_name) {
  CLI::App app{
      "Mount an image of a repository: the kernel mount (overlayfs + EROFS), or with --fuse the "
      "userspace mount. Verity is required in a secure repository; the mount is recorded so "
      "that `cfs repo gc` keeps its objects.",
      "cfs mount"};
  std::string repo_path, name, dir;
  std::vector<std::string> option_strings;
  bool fuse = false, foreground = false, json = false, verbose = false;
  add_repo_option(app, repo_path);
  app.add_flag("--fuse", fuse, "the userspace mount (verifies every block it serves)");
  app.add_option("NAME", name, "image name (refs/NAME or NAME) or digest")->required();
  app.add_option("MOUNTPOINT", dir, "directory to mount on")->required();
  app.add_option("-o,--options", option_strings,
                 "further mount options (upperdir=, workdir=, ro, nosuid, ...; not basedir=, "
                 "digest= or verity=, which the repository decides)");
  std::string upperdir, workdir;
  app.add_option("--upperdir", upperdir, "writable upper directory (the same as -o upperdir=DIR)");
  app.add_option("--workdir", workdir,
                 "overlayfs work directory beside --upperdir (the same as -o workdir=DIR)");
  app.add_flag("-f,--foreground", foreground, "--fuse: serve in the foreground");
  app.add_flag("--json", json, "print what was mounted as JSON");
  app.add_flag("-v,--verbose", verbose, "print what was mounted");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  // The flags become -o options: both mounts (and the FUSE front end's command line) take
  // them that way. A comma would split the option, so such paths must be refused.
  for (const auto& [key, value] : {std::pair{"upperdir", &upperdir}, {"workdir", &workdir}}) {
    if (value->empty()) continue;
    if (value->find(',') != std::string::npos) {
      fmt::print(stderr, "cfs: error: --{} {}: a path with a comma cannot be passed on\n", key,
                 *value);
      return kExitUsage;
    }
    option_strings.push_back(fmt::format("{}={}", key, *value));
  }
  // Each mount's own options (threads=, tree_cache=, prefill_max= only with --fuse).
  auto parsed = mount::parse_repository_mount_options(
      option_strings, fuse ? mount::Dialect::kFuse : mount::Dialect::kKernel);
  if (!parsed) {
    fmt::print(stderr, "cfs: error: {}\n", parsed.error().message());
    return kExitUsage;
  }
  mount::Options user = std::move(*parsed);

  bool leased = false;
  auto repo = open_for_mount(repo_path, leased);
  if (!repo) return report(repo.error());
  auto kind = fuse ? repo::MountKind::kFuse : repo::MountKind::kKernel;
  auto plan = repo::prepare_mount(*repo, name, kind, dir, leased);
  if (!plan) return report(plan.error());
  // What was mounted, for --json / -v.
  auto describe = [&](const char* how) -> std::string {
    const std::string& shown = shown_name.empty() ? name : shown_name;
    if (json)
      return fmt::format(
          "{{\"name\": {}, \"image\": \"{}\", \"target\": {}, \"mount\": \"{}\", "
          "\"verity\": {}, \"lease\": {}}}\n",
          json::string(shown), plan->image.hex(), json::string(dir), how,
          fuse || plan->require_verity ? "true" : "false",
          leased ? json::string(plan->lease.id) : "null");
    // The FUSE mount verifies every block of every object whatever the repository says; what
    // an insecure repository gives up there is only the check of the image's own digest.
    const char* verity =
        fuse ? (plan->require_verity ? "checked per block in userspace, image digest checked"
                                     : "checked per block in userspace, image digest not checked "
                                       "(insecure repository)")
        : plan->require_verity ? "required"
                               : "not required (insecure repository)";
    if (verbose)
      return fmt::format("mounted {} ({}) on {}: {} mount, verity {}\n", shown, plan->image.hex(),
                         dir, how, verity);
    return "";
  };

  if (fuse) {
    // The FUSE front end takes a command line. The calling process reports once the mount is
    // up; the serving process (after it daemonized) completes the lease and closes the
    // repository (its lock).
    std::string o = "basedir=" + plan->objects_dir + ",verity=require";
    if (plan->require_verity) o += ",digest=" + plan->image.hex();
    std::vector<std::string> args = {"cfs", plan->image_path, dir, "-o", o};
    for (const auto& s : option_strings) {
      args.emplace_back("-o");
      args.push_back(s);
    }
    if (foreground) args.emplace_back("-f");
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    // A copy of stdout stays open in the serving process until the lease is complete: a
    // caller reading the output to its end (a pipe) returns with the mount recorded.
    int out = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    auto on_ready = [&] {
      if (leased) (void)repo::complete_lease(*repo, plan->lease);
      repo::Repository closed = std::move(*repo);
      if (out >= 0) ::close(out);
      out = -1;
    };
    // Reported before the daemon forks, so that it is there when the command returns.
    auto on_mounted = [&] {
      std::string text = describe("fuse");
      if (!text.empty()) (void)sys::write_all(STDOUT_FILENO, std::as_bytes(std::span(text)));
    };
    int rc = run_fuse_mount_then(static_cast<int>(args.size()), cargs.data(), on_ready, on_mounted);
    if (out >= 0) ::close(out);
    if (rc != kExitOk && leased && repo->fd() >= 0) (void)repo::drop_lease(*repo, plan->lease);
    return rc;
  }

  user.basedirs = {plan->objects_dir};
  if (plan->require_verity) {
    user.digest = plan->image;
    user.verity = mount::VerityMode::kRequire;
    user.verity_spelling = "verity=require";
  }
  auto r = mount::mount_image(plan->image_path, dir, user);
  if (!r) {
    if (leased) (void)repo::drop_lease(*repo, plan->lease);
    return report(r.error());
  }
  for (const auto& w : r->warnings) fmt::print(stderr, "cfs: warning: {}\n", w);
  if (leased) {
    if (auto st = repo::complete_lease(*repo, plan->lease); !st)
      fmt::print(stderr, "cfs: warning: the mount lease was not completed: {}\n",
                 st.error().message());
  }
  fmt::print("{}", describe("kernel"));
  return kExitOk;
}

}  // namespace cfs::tools
