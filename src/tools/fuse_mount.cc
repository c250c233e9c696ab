// SPDX-License-Identifier: Apache-2.0
// composefs-fuse / `cfs fuse-mount`: mount options in mount(8) style (-o comma-separated,
// `\` escapes a comma), our own keys taken out and the rest handed to libfuse.
#include "tools/fuse_mount.h"

#include <fmt/core.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/fuse/server.h"
#include "cfs/mount/options.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"
#include "cfs/vfs/filesystem.h"
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
    "  -o digest=HEX             expected fs-verity digest of the image file (checked in\n"
    "                            userspace before mounting)\n"
    "  -o tree_cache=DIR         persist Merkle trees of large objects in DIR (re-verified on\n"
    "                            load)\n"
    "  -o threads=N              maximum worker threads\n"
    "  -o upperdir=DIR           writable upper layer in overlayfs' format (whiteouts, opaque\n"
    "                            directories, metacopy copy-up keeping the verity digest)\n"
    "  -o workdir=DIR            scratch directory for copy-up, on the upper's filesystem\n"
    "                            (required with upperdir)\n"
    "  -o noacl, ro, rw          accepted (without upperdir the mount is read-only)\n"
    "  -o OTHER                  passed to libfuse (allow_other, max_read=, ...)\n"
    "  -f                        stay in the foreground\n"
    "  -d                        libfuse debug output (implies -f)\n"
    "  -s                        single-threaded\n"
    "  -h, --help                this help\n";

struct Parsed {
  std::string image;
  std::string upperdir;
  std::string workdir;
  std::optional<verity::Digest> digest;
  vfs::Options vfs;
  fuse::ServeOptions serve;
};

std::vector<std::string> split_options(std::string_view s) {
  std::vector<std::string> out(1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out.back().push_back(s[++i]);
    } else if (s[i] == ',') {
      out.emplace_back();
    } else {
      out.back().push_back(s[i]);
    }
  }
  return out;
}

std::vector<std::string> split_colon(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  for (;;) {
    auto c = s.find(':', pos);
    auto part = s.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
    if (!part.empty()) out.push_back(part);
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

// Returns an error message for a usage problem, empty on success.
std::string apply_option(Parsed& p, const std::string& opt) {
  auto eq = opt.find('=');
  std::string key = opt.substr(0, eq);
  std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
  if (opt.empty() || opt == "ro" || opt == "noacl" || opt == "rw") return "";
  if (key == "basedir") {
    for (auto& d : split_colon(val)) p.vfs.basedirs.push_back(d);
  } else if (key == "verity") {
    auto m = vfs::parse_verity_mode(val);
    if (!m) return "verity must be off, on or require, not '" + val + "'";
    p.vfs.verity = *m;
  } else if (key == "source") {
    p.image = val;
  } else if (key == "digest") {
    auto d = mount::parse_digest_hex(val);
    if (!d) return d.error().message();
    p.digest = *d;
  } else if (key == "tree_cache") {
    p.vfs.tree_cache_dir = val;
  } else if (key == "threads") {
    try {
      p.serve.max_threads = static_cast<unsigned>(std::stoul(val));
    } catch (const std::exception&) {
      return "threads needs a number";
    }
  } else if (key == "upperdir") {
    p.upperdir = val;
  } else if (key == "workdir") {
    p.workdir = val;
  } else {
    p.serve.extra.push_back(opt);
  }
  return "";
}

// The image is opened once; with digest= it is checked and exactly the checked bytes are
// served (the file itself when the kernel measures it, else a sealed copy), as the kernel
// mount does.
Result<std::unique_ptr<vfs::Filesystem>> open_filesystem(const Parsed& p) {
  CFS_ASSIGN(UniqueFd fd, sys::open_regular(p.image, "image"));
  if (p.digest) {
    CFS_ASSIGN(verity::CheckedFile checked,
               verity::open_checked(std::move(fd), "image " + p.image, *p.digest));
    fd = std::move(checked.fd);
  }
  CFS_ASSIGN(erofs::Image image, erofs::Image::open_fd(fd.get(), p.image));
  auto fs = vfs::Filesystem::open(std::move(image), p.vfs);
  if (!fs) return fail(std::move(fs).error().with_context(p.image));
  return fs;
}

int usage_error(const char* prog, const std::string& msg) {
  fmt::print(stderr, "{}: error: {}\n{}", prog, msg, "Try '--help' for usage.\n");
  return kExitUsage;
}

}  // namespace

int run_fuse_mount(int argc, char** argv) {
  std::string_view self = argc > 0 && argv[0] ? argv[0] : "";
  if (auto slash = self.rfind('/'); slash != std::string_view::npos) self.remove_prefix(slash + 1);
  const char* prog = self == "composefs-fuse" ? "composefs-fuse" : "cfs";
  Parsed p;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      fmt::print("{}", kUsage);
      return kExitOk;
    }
    if (a == "--fuse") continue;
    if (a == "-f") {
      p.serve.foreground = true;
    } else if (a == "-d") {
      p.serve.debug = true;
    } else if (a == "-s") {
      p.serve.single_thread = true;
    } else if (a == "-o" || (a.size() > 2 && a.rfind("-o", 0) == 0)) {
      std::string val;
      if (a == "-o") {
        if (i + 1 >= argc) return usage_error(prog, "-o needs a value");
        val = argv[++i];
      } else {
        val = a.substr(2);
      }
      for (const auto& opt : split_options(val))
        if (auto err = apply_option(p, opt); !err.empty()) return usage_error(prog, err);
    } else if (a.size() > 1 && a[0] == '-') {
      return usage_error(prog, "unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (p.image.empty() && positional.size() == 2) {
    p.image = positional[0];
    p.serve.mountpoint = positional[1];
  } else if (!p.image.empty() && positional.size() == 1) {
    p.serve.mountpoint = positional[0];
  } else {
    return usage_error(prog, "expected IMAGE and MOUNTPOINT");
  }
  if (p.vfs.basedirs.empty()) return usage_error(prog, "no object directories (-o basedir=DIR)");
  if (p.upperdir.empty() != p.workdir.empty())
    return usage_error(prog, "upperdir and workdir must be given together");
  auto fs = open_filesystem(p);
  if (!fs) {
    fmt::print(stderr, "{}: error: {}\n", prog, fs.error().message());
    return kExitFailure;
  }
  p.serve.fsname = p.image;
  Status st;
  if (!p.upperdir.empty()) {
    auto merged = vfs::MergedFs::open(std::move(*fs), p.upperdir, p.workdir);
    if (!merged) {
      fmt::print(stderr, "{}: error: {}: {}\n", prog, p.upperdir, merged.error().message());
      return kExitFailure;
    }
    st = fuse::serve(std::move(*merged), p.serve);
  } else {
    st = fuse::serve(std::move(*fs), p.serve);
  }
  if (!st) {
    fmt::print(stderr, "{}: error: {}\n", prog, st.error().message());
    return kExitFailure;
  }
  return kExitOk;
}

CFS_REGISTER_COMMAND("composefs-fuse", "", run_fuse_mount);
CFS_REGISTER_COMMAND("fuse-mount", "mount an image with FUSE and userspace fs-verity checks",
                     run_fuse_mount);

}  // namespace cfs::tools
