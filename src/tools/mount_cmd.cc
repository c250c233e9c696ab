// SPDX-License-Identifier: Apache-2.0
// mount.composefs (mount(8) helper and upstream-compatible tool), `cfs mount` and `cfs umount`.
#include <fmt/core.h>

// g++ 12 -O2: a false "potential null pointer dereference" inside CLI11 (see create.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/mount/mount.h"
#include "cfs/mount/options.h"
#include "cfs/util/json.h"
#include "tools/command.h"
#include "tools/fuse_mount.h"
#include "tools/repo_mount.h"

namespace cfs::tools {
namespace {

void print_warnings(const char* prog, const mount::MountReport& r) {
  for (const auto& w : r.warnings) fmt::print(stderr, "{}: warning: {}\n", prog, w);
}

void print_report(const mount::MountReport& r, const std::string& image, const std::string& dir,
                  bool as_json) {
  if (as_json) {
    std::string warnings;
    for (const auto& w : r.warnings) warnings += (warnings.empty() ? "" : ", ") + json::string(w);
    fmt::print(
        "{{\"image\": {}, \"target\": {}, \"erofs\": \"{}\", \"loop_device\": {}, "
        "\"lower\": \"{}\", \"overlay\": \"{}\", \"verity\": \"{}\", "
        "\"digest_check\": \"{}\", \"warnings\": [{}]}}\n",
        json::string(image), json::string(dir), mount::to_string(r.erofs),
        json::string(r.loop_device), mount::to_string(r.lower), mount::to_string(r.overlay),
        mount::to_string(r.verity), mount::to_string(r.digest_check), warnings);
    return;
  }
  fmt::print("mounted {} on {}: erofs={}{} lower={} overlay={} verity={} digest-check={}\n", image,
             dir, mount::to_string(r.erofs),
             r.loop_device.empty() ? "" : " (" + r.loop_device + ")", mount::to_string(r.lower),
             mount::to_string(r.overlay), mount::to_string(r.verity),
             mount::to_string(r.digest_check));
}

constexpr const char* kMountUsage =
    "Usage: mount.composefs [-t composefs] [-o OPTIONS] IMAGE MOUNTPOINT\n"
    "\n"
    "Mounts a composefs image (EROFS metadata + overlayfs over object directories).\n"
    "Options (comma-separated, '\\' escapes a comma):\n"
    "  basedir=DIR[:DIR...]   object directories (required)\n"
    "  digest=HEX             expected fs-verity digest of the image (implies verity)\n"
    "  verity                 overlay verity=require: every file must match its digest\n"
    "  verity=off|on|require  overlay verity mode\n"
    "  tryverity              verity=require if the kernel supports it, else warn\n"
    "  upperdir=DIR,workdir=DIR  writable upper layer\n"
    "  ro, rw                 read-only (default without upperdir) or read-write\n"
    "  idmap=PATH             idmapped EROFS mount with the user namespace at PATH\n"
    "  metacopy=, redirect_dir=, userxattr  explicit overlay options (conflicts refused)\n"
    "  nosuid, nodev, noexec, noatime, relatime, strictatime\n"
    "Flags passed by mount(8): -n -s -v -f (fake: validate only) -r (ro) -w (rw).\n";

// mount(8) runs helpers as `mount.composefs SPEC DIR [-sfnv] [-N ns] [-o opts] [-t type]`,
// options after the operands, so this is a small permuting parser rather than CLI11.
int run_mount_composefs(int argc, char** argv) {
  const char* prog = "mount.composefs";
  std::vector<std::string> operands;
  mount::Options opts;
  bool fake = false, verbose = false;
  auto usage_error = [&](const std::string& msg) {
    fmt::print(stderr, "{}: error: {}\n{}", prog, msg, kMountUsage);
    return kExitUsage;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) operands.emplace_back(argv[i]);
      break;
    }
    if (a == "-h" || a == "--help") {
      fmt::print("{}", kMountUsage);
      return kExitOk;
    }
    if (a.size() < 2 || a[0] != '-') {
      operands.push_back(a);
      continue;
    }
    // Bundled short flags (-nv) and attached values (-oOPTS, -tcomposefs).
    for (std::size_t k = 1; k < a.size(); ++k) {
      char f = a[k];
      if (f == 'o' || f == 't' || f == 'N') {
        std::string value = a.substr(k + 1);
        if (value.empty()) {
          if (i + 1 >= argc) return usage_error(std::string("option -") + f + " needs a value");
          value = argv[++i];
        }
        if (f == 'o') {
          if (auto r = mount::parse_options(value, opts); !r) {
            fmt::print(stderr, "{}: error: {}\n", prog, r.error().message());
            return kExitUsage;
          }
        } else if (f == 't') {
          if (value != "composefs")
            return usage_error("unsupported filesystem type '" + value + "' (only composefs)");
        } else {
          fmt::print(stderr, "{}: error: -N (mount namespace) is not supported\n", prog);
          return kExitFailure;
        }
        break;
      }
      switch (f) {
        case 'n':
        case 's':
        case 'i':
          break;  // no mtab; sloppy; no helpers: nothing to do
        case 'f':
          fake = true;
          break;
        case 'v':
          verbose = true;
          break;
        case 'r':
          opts.read_only = true;
          break;
        case 'w':
          opts.read_only = false;
          break;
        default:
          return usage_error(std::string("unknown flag -") + f);
      }
    }
  }
  if (operands.size() != 2) return usage_error("expected IMAGE and MOUNTPOINT");
  if (fake) {
    if (auto r = mount::validate(opts); !r) {
      fmt::print(stderr, "{}: error: {}\n", prog, r.error().message());
      return kExitFailure;
    }
    return kExitOk;
  }
  auto r = mount::mount_image(operands[0], operands[1], opts);
  if (!r) {
    fmt::print(stderr, "{}: error: {}\n", prog, r.error().message());
    return kExitFailure;
  }
  print_warnings(prog, *r);
  if (verbose) print_report(*r, operands[0], operands[1], false);
  return kExitOk;
}

int run_cfs_mount(int argc, char** argv) {
  if (wants_repo_mount(argc, argv)) return run_repo_mount(argc, argv);
  // `cfs mount --fuse IMAGE DIR -o ...`: the userspace mount takes the whole command line.
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--fuse") == 0) return run_fuse_mount(argc, argv);
  CLI::App app{
      "Mount a composefs image (EROFS + overlayfs over object directories). With --fuse: the "
      "userspace mount with fs-verity checks (composefs-fuse --help).",
      "cfs mount"};
  std::string image, dir;
  std::vector<std::string> option_strings;
  bool json = false, verbose = false;
  std::string erofs_backend = "auto", overlay_api = "auto", lower_mode = "auto";
  app.add_option("IMAGE", image, "composefs image file")->required();
  app.add_option("MOUNTPOINT", dir, "directory to mount on")->required();
  app.add_option("-o,--options", option_strings,
                 "mount options (see mount.composefs --help); may be repeated");
  app.add_flag("--json", json, "print what was done as JSON on stdout");
  app.add_flag("-v,--verbose", verbose, "print the mount paths chosen");
  app.add_option("--erofs-backend", erofs_backend, "force the EROFS backend (for testing)")
      ->check(CLI::IsMember({"auto", "file", "loop"}));
  app.add_option("--overlay-api", overlay_api, "force the overlay API (for testing)")
      ->check(CLI::IsMember({"auto", "fsconfig", "legacy", "legacy-plain"}));
  app.add_option("--lower-mode", lower_mode,
                 "force whether the EROFS stays detached or is attached while the overlay is "
                 "built (for testing)")
      ->check(CLI::IsMember({"auto", "detached", "attached"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  mount::Options opts;
  for (const auto& s : option_strings) {
    if (auto r = mount::parse_options(s, opts); !r) {
      fmt::print(stderr, "cfs: error: {}\n", r.error().message());
      return kExitUsage;
    }
  }
  mount::Backends b;
  b.erofs = erofs_backend == "file"   ? mount::ErofsBackend::kFile
            : erofs_backend == "loop" ? mount::ErofsBackend::kLoop
                                      : mount::ErofsBackend::kAuto;
  b.overlay = overlay_api == "fsconfig"       ? mount::OverlayApi::kFsconfig
              : overlay_api == "legacy"       ? mount::OverlayApi::kLegacy
              : overlay_api == "legacy-plain" ? mount::OverlayApi::kLegacyPlain
                                              : mount::OverlayApi::kAuto;
  b.lower = lower_mode == "detached"   ? mount::LowerMode::kDetached
            : lower_mode == "attached" ? mount::LowerMode::kAttached
                                       : mount::LowerMode::kAuto;
  auto r = mount::mount_image(image, dir, opts, b);
  if (!r) {
    fmt::print(stderr, "cfs: error: {}\n", r.error().message());
    return kExitFailure;
  }
  print_warnings("cfs", *r);
  if (json || verbose) print_report(*r, image, dir, json);
  return kExitOk;
}

int run_cfs_umount(int argc, char** argv) {
  CLI::App app{"Unmount a composefs mount", "cfs umount"};
  std::string dir;
  bool lazy = false;
  app.add_option("MOUNTPOINT", dir, "mounted directory")->required();
  app.add_flag("-l,--lazy", lazy, "detach now, clean up when no longer busy (MNT_DETACH)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (auto r = mount::unmount(dir, lazy); !r) {
    fmt::print(stderr, "cfs: error: {}\n", r.error().message());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

CFS_REGISTER_COMMAND("mount.composefs", "", run_mount_composefs);
CFS_REGISTER_COMMAND("mount", "mount a composefs image (kernel EROFS + overlayfs)", run_cfs_mount);
CFS_REGISTER_COMMAND("umount", "unmount a composefs mount", run_cfs_umount);

}  // namespace cfs::tools
