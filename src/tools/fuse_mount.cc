// SPDX-License-Identifier: Apache-2.0
// composefs-fuse / `cfs fuse-mount` / `cfs mount --fuse`: argument parsing only. The -o options
// are the kernel mount's (mount::parse_options, FUSE dialect); fuse::mount_image does the rest.
#include "tools/fuse_mount.h"

#include <fmt/core.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/fuse/mount.h"
#include "cfs/mount/options.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

constexpr const char* kUsage =
    "Usage: composefs-fuse [OPTIONS] IMAGE MOUNTPOINT\n"
    "       composefs-fuse -o source=IMAGE,basedir=DIR[:DIR...] [OPTIONS] MOUNTPOINT\n"
    "       cfs mount --fuse IMAGE MOUNTPOINT -o basedir=DIR[,verity=MODE][,upperdir=U,workdir=W]\n"
    "\n"
    "Serves a composefs image and its object store through FUSE with the semantics of the\n"
    "kernel overlay mount, verifying file data against the image's fs-verity digests in\n"
    "userspace (no kernel fs-verity needed). Unmount with `fusermount3 -u MOUNTPOINT`,\n"
    "umount, or SIGTERM/SIGINT to the server.\n"
    "\n"
    "Options:\n"
    "  -o basedir=DIR[:DIR...]   object directories, searched in order (required)\n"
    "  -o verity=off|on|require  off: no checks; on (default): files whose metacopy carries a\n"
    "                            digest are verified block by block; require: files without\n"
    "                            a digest are refused too (EIO at open)\n"
    "  -o source=IMAGE           the image (instead of the IMAGE argument)\n"
    "  -o digest=HEX             expected fs-verity digest of the image file, SHA-256 or\n"
    "                            SHA-512 (kernel measurement, else a sealed copy is checked\n"
    "                            and served); implies verity=require\n"
    "  -o verity, tryverity      verity=require\n"
    "  -o tree_cache=DIR         persist Merkle trees of large objects in DIR (re-verified on\n"
    "                            load)\n"
    "  -o threads=N              maximum worker threads\n"
    "  -o upperdir=DIR           writable upper layer in overlayfs' format (whiteouts, opaque\n"
    "                            directories, metacopy copy-up keeping the verity digest)\n"
    "  -o workdir=DIR            scratch directory for copy-up, on the upper's filesystem\n"
    "                            (required with upperdir)\n"
    "  -o noacl, ro, rw          accepted (without upperdir the mount is read-only)\n"
    "  -o suid, dev, exec, nosuid, nodev, noexec, noatime, relatime, strictatime\n"
    "                            mount flags, as for the kernel mount (FUSE mounts default\n"
    "                            to nosuid,nodev)\n"
    "  -o OTHER                  passed to libfuse (allow_other, max_read=, ...)\n"
    "The options are those of mount.composefs; idmap=, metacopy=, redirect_dir= and\n"
    "userxattr are kernel-mount only and refused here.\n"
    "  -f                        stay in the foreground\n"
    "  -d                        libfuse debug output (implies -f)\n"
    "  -s                        single-threaded\n"
    "  -h, --help                this help\n";

int usage_error(const char* prog, const std::string& msg) {
  fmt::print(stderr, "{}: error: {}\n{}", prog, msg, "Try '--help' for usage.\n");
  return kExitUsage;
}

}  // namespace

int run_fuse_mount(int argc, char** argv) { return run_fuse_mount_then(argc, argv, {}); }

int run_fuse_mount_then(int argc, char** argv, const std::function<void()>& on_ready,
                        const std::function<void()>& on_mounted) {
  std::string_view self = argc > 0 && argv[0] ? argv[0] : "";
  if (auto slash = self.rfind('/'); slash != std::string_view::npos) self.remove_prefix(slash + 1);
  const char* prog = self == "composefs-fuse" ? "composefs-fuse" : "cfs";
  mount::Options opts;
  fuse::ServeOptions serve;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      fmt::print("{}", kUsage);
      return kExitOk;
    }
    if (a == "--fuse") continue;
    if (a == "-f") {
      serve.foreground = true;
    } else if (a == "-d") {
      serve.debug = true;
    } else if (a == "-s") {
      serve.single_thread = true;
    } else if (a == "-o" || (a.size() > 2 && a.rfind("-o", 0) == 0)) {
      std::string val;
      if (a == "-o") {
        if (i + 1 >= argc) return usage_error(prog, "-o needs a value");
        val = argv[++i];
      } else {
        val = a.substr(2);
      }
      if (auto r = mount::parse_options(val, opts, mount::Dialect::kFuse); !r)
        return usage_error(prog, r.error().message());
    } else if (a.size() > 1 && a[0] == '-') {
      return usage_error(prog, "unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  std::string image = opts.source, mountpoint;
  if (image.empty() && positional.size() == 2) {
    image = positional[0];
    mountpoint = positional[1];
  } else if (!image.empty() && positional.size() == 1) {
    mountpoint = positional[0];
  } else {
    return usage_error(prog, "expected IMAGE and MOUNTPOINT");
  }
  if (auto r = mount::validate(opts, mount::Dialect::kFuse); !r)
    return usage_error(prog, r.error().message());
  if (on_ready) serve.on_serving = [on_ready](bool) { on_ready(); };
  serve.on_mounted = on_mounted;
  if (auto st = fuse::mount_image(image, mountpoint, opts, serve); !st) {
    fmt::print(stderr, "{}: error: {}\n", prog, st.error().message());
    return kExitFailure;
  }
  return kExitOk;
}

CFS_REGISTER_COMMAND("composefs-fuse", "", run_fuse_mount);
CFS_REGISTER_COMMAND("fuse-mount", "mount an image with FUSE and userspace fs-verity checks",
                     run_fuse_mount);

}  // namespace cfs::tools
