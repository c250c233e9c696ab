// SPDX-License-Identifier: Apache-2.0
// `composefs-info [--basedir=PATH] [--filter=NAME]... COMMAND IMAGE...` (also `cfs info`):
// ls, dump, objects, missing-objects, measure-file with composefs 1.0.8's semantics and output
// (composefs-tools.md §2). Options may appear anywhere, as with getopt_long's permutation.
// Under the compat name every failure exits 1 like upstream; `cfs info` uses 2 for usage and
// also takes --json (one JSON array per run; entries as cfs/dump/print.h describes them).
#include <fcntl.h>
#include <fmt/core.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/dump/print.h"
#include "cfs/erofs/reader.h"
#include "cfs/util/hex.h"
#include "cfs/util/json.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"
#include "cfs/verity/measure.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

constexpr std::size_t kFlushBytes = std::size_t{1} << 20;

struct InfoArgs {
  std::string basedir;
  bool have_basedir = false;
  bool json = false;
  std::vector<std::string> filters;
  std::vector<std::string> positional;  // command, then images/files
};

class Info {
 public:
  explicit Info(bool compat) : compat_(compat), prog_(compat ? "composefs-info" : "cfs") {}

  int run(int argc, char** argv) {
    InfoArgs a;
    if (int rc = parse(argc, argv, a); rc >= 0) return rc;
    if (a.positional.empty()) return usage_error("No command specified");
    const std::string cmd = a.positional[0];
    std::vector<std::string> files(a.positional.begin() + 1, a.positional.end());
    if (cmd == "measure-file") {
      if (files.empty()) return usage_error("No files specified");
      return measure(files, a.json);
    }
    if (cmd != "ls" && cmd != "dump" && cmd != "objects" && cmd != "missing-objects") {
      // A usage error (2) for `cfs info`, as its man page says; upstream exits 1, without usage.
      const std::string msg = fmt::format("Unknown command '{}'", cmd);
      return compat_ ? error(msg) : usage_error(msg);
    }
    UniqueFd basedir;
    if (a.have_basedir) {
      auto fd = sys::open(a.basedir, O_RDONLY | O_DIRECTORY | O_PATH);
      if (!fd) return error(fd.error().message(), kExitFailure);
      basedir = std::move(*fd);
    }
    if (files.empty()) return usage_error("No image path specified");

    std::vector<std::string> objects;
    erofs::LoadOptions opts{a.filters};
    if (a.json && (cmd == "ls" || cmd == "dump")) out_ += '[';
    for (const auto& path : files) {
      auto tree = [&]() -> Result<Tree> {
        // The mapping is dropped before printing: its pages would otherwise stay in RSS
        // next to the output buffer.
        CFS_ASSIGN(auto img, erofs::Image::open(path));
        return erofs::load_tree(img, opts);
      }();
      if (!tree) return error("Failed to load '" + path + "': " + tree.error().message());
      if (cmd == "ls" || cmd == "dump") {
        // Streamed in ~1 MiB writes: memory stays at the tree's size, not tree + output.
        out_.reserve(kFlushBytes + 64 * 1024);
        bool ok = true;
        auto sink = [&](std::string& buf) {
          if (ok) ok = flush();
          buf.clear();  // after a failed write, stop collecting
        };
        if (a.json) {
          out_ += &path == &files.front() ? "\n{\"image\":" : ",\n{\"image\":";
          json::append_string(out_, path);
          out_ += ",\"entries\":";
          if (cmd == "ls")
            dump::print_ls_json(*tree, out_, kFlushBytes, sink);
          else
            dump::print_dump_json(*tree, out_, kFlushBytes, sink);
          out_ += '}';
          if (&path == &files.back()) out_ += "\n]\n";
        } else if (cmd == "ls") {
          dump::print_ls(*tree, out_, kFlushBytes, sink);
        } else {
          dump::print_dump(*tree, out_, kFlushBytes, sink);
        }
        if (!ok || !flush()) return kExitFailure;
        continue;
      }
      for (std::size_t i = 0; i < tree->size(); ++i) {
        Node& n = tree->node(static_cast<NodeId>(i));
        if (n.is_reg() && !n.payload.empty()) objects.push_back(std::move(n.payload));
      }
    }
    if (cmd == "ls" || cmd == "dump") return kExitOk;
    // Sorted (strcmp order) and de-duplicated, as upstream prints them.
    std::sort(objects.begin(), objects.end());
    objects.erase(std::unique(objects.begin(), objects.end()), objects.end());
    if (a.json) out_ += '[';
    bool first = true;
    for (const auto& o : objects) {
      if (cmd == "missing-objects" && basedir) {
        std::string_view rel = o;
        while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
        if (sys::fstatat(basedir.get(), std::string(rel), AT_EMPTY_PATH)) continue;
      }
      if (a.json) {
        out_ += first ? "\n" : ",\n";
        json::append_string(out_, o);
      } else {
        out_.append(o).push_back('\n');
      }
      first = false;
      if (out_.size() >= kFlushBytes && !flush()) return kExitFailure;
    }
    if (a.json) out_ += first ? "]\n" : "\n]\n";
    return flush() ? kExitOk : kExitFailure;
  }

 private:
  // Returns -1 to continue, else an exit code.
  int parse(int argc, char** argv, InfoArgs& a) {
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (options_done || arg.size() < 2 || arg.substr(0, 2) != "--") {
        if (arg == "-h" && !options_done) return help();
        a.positional.emplace_back(arg);
        continue;
      }
      if (arg == "--") {
        options_done = true;
        continue;
      }
      if (arg == "--help") return help();
      if (arg == "--json" && !compat_) {
        a.json = true;
        continue;
      }
      std::string_view name = arg.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string_view::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      if (name != "basedir" && name != "filter")
        return usage_error(fmt::format("unrecognized option '{}'", arg));
      if (!has_value) {
        if (i + 1 >= argc) return usage_error(fmt::format("option '--{}' needs a value", name));
        value = argv[++i];
      }
      if (name == "basedir") {
        a.basedir = std::string(value);
        a.have_basedir = true;
      } else {
        if (value.find('/') != std::string_view::npos)
          return error(fmt::format("Filter must be a single name: {}", value), kExitFailure);
        a.filters.emplace_back(value);
      }
    }
    return -1;
  }

  int measure(const std::vector<std::string>& files, bool as_json) {
    if (as_json) out_ += '[';
    for (const auto& f : files) {
      auto d = [&]() -> Result<verity::Measurement> {
        CFS_ASSIGN(UniqueFd fd, sys::open(f, O_RDONLY));
        return verity::measure_or_compute(fd.get(), verity::Params{}, f);
      }();
      if (!d) return error(fmt::format("failed to measure '{}': {}", f, d.error().message()));
      if (as_json) {
        // The fields of `cfs measure --json`.
        out_ += &f == &files.front() ? "\n{\"file\": " : ",\n{\"file\": ";
        json::append_string(out_, f);
        out_ += fmt::format(R"(, "algorithm": "{}", "digest": "{}", "source": "{}"}})",
                            verity::hash_alg_name(d->digest.alg), d->digest.hex(),
                            d->from_kernel ? "kernel" : "userspace");
      } else {
        out_.append(d->digest.hex()).push_back('\n');
      }
    }
    if (as_json) out_ += "\n]\n";
    return flush() ? kExitOk : kExitFailure;
  }

  bool flush() {
    for (std::size_t off = 0; off < out_.size(); off += kFlushBytes) {
      std::string_view part = std::string_view(out_).substr(off, kFlushBytes);
      auto st = sys::write_all(1, std::as_bytes(std::span(part.data(), part.size())));
      if (!st) {
        error("write stdout: " + st.error().message());
        return false;
      }
    }
    out_.clear();
    return true;
  }

  std::string usage() const {
    return fmt::format(
        "usage: {} [--basedir=PATH] [--filter=NAME]...{} "
        "[ls|objects|dump|missing-objects|measure-file] IMAGES...\n",
        compat_ ? "composefs-info" : "cfs info", compat_ ? "" : " [--json]");
  }

  int help() {
    fmt::print("{}", usage());
    return kExitOk;
  }

  int usage_error(const std::string& msg) {
    fmt::print(stderr, "{}: error: {}\n{}", prog_, msg, usage());
    return compat_ ? kExitFailure : kExitUsage;
  }

  int error(const std::string& msg, int rc = kExitFailure) {
    fmt::print(stderr, "{}: error: {}\n", prog_, msg);
    return rc;
  }

  bool compat_;
  std::string prog_;
  std::string out_;
};

int run_composefs_info(int argc, char** argv) { return Info(true).run(argc, argv); }
int run_info(int argc, char** argv) { return Info(false).run(argc, argv); }

}  // namespace

CFS_REGISTER_COMMAND("composefs-info", "", run_composefs_info);
CFS_REGISTER_COMMAND("info", "inspect images: ls, dump, objects, missing-objects, measure-file",
                     run_info);

}  // namespace cfs::tools
