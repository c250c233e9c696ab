// SPDX-License-Identifier: Apache-2.0
// Entry point of the multicall binary: dispatch on argv[0] (compatible program names) or on
// the first argument (`cfs SUBCOMMAND`). The only place exceptions are caught.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cfs/util/sys.h"
#include "tools/command.h"

namespace cfs::tools {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

int report(const Error& e) {
  fmt::print(stderr, "cfs: error: {}\n", e.message());
  return kExitFailure;
}

int parse_args(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? -1 : kExitUsage;
  }
  return 0;
}

namespace {

void subcommand_usage(std::FILE* out, const char* group, const char* about,
                      std::span<const Subcommand> subs) {
  std::size_t width = 0;
  for (const auto& s : subs) width = std::max(width, std::strlen(s.name));
  fmt::print(out, "Usage: cfs {} SUBCOMMAND [--repo PATH] [OPTIONS] ...\n\n{}\n\nSubcommands:\n",
             group, about);
  for (const auto& s : subs) fmt::print(out, "  {:<{}} {}\n", s.name, width + 2, s.summary);
  fmt::print(out, "\nRun 'cfs {} SUBCOMMAND --help' for its options.\n", group);
}

}  // namespace

int run_subcommand(const char* group, const char* about, std::span<const Subcommand> subs, int argc,
                   char** argv) {
  if (argc < 2) {
    subcommand_usage(stderr, group, about, subs);
    return kExitUsage;
  }
  std::string_view sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    subcommand_usage(stdout, group, about, subs);
    return kExitOk;
  }
  for (const auto& s : subs)
    if (sub == s.name) return s.run(argc - 1, argv + 1);
  fmt::print(stderr, "cfs: error: unknown {} subcommand '{}'\n", group, sub);
  subcommand_usage(stderr, group, about, subs);
  return kExitUsage;
}

namespace {

const Command* find(const std::string& name) {
  for (const auto& c : registry())
    if (c.name == name) return &c;
  return nullptr;
}

// The order of `cfs --help`, stated here rather than left to the link order of the static
// registrars: build, inspect, check, mount. Commands not listed follow in name order.
constexpr std::array<std::string_view, 9> kHelpOrder = {
    "create", "info", "inspect", "digest", "measure", "fsck", "mount", "fuse-mount", "umount"};

std::vector<const Command*> listed_commands() {
  std::vector<const Command*> out;
  for (const auto& c : registry())
    if (!c.summary.empty()) out.push_back(&c);
  auto rank = [](const Command* c) {
    auto it = std::find(kHelpOrder.begin(), kHelpOrder.end(), c->name);
    return static_cast<std::size_t>(it - kHelpOrder.begin());
  };
  std::sort(out.begin(), out.end(), [&](const Command* a, const Command* b) {
    return std::pair(rank(a), a->name) < std::pair(rank(b), b->name);
  });
  return out;
}

void usage(std::FILE* out) {
  fmt::print(out,
             "Usage: cfs COMMAND [OPTIONS] ...\n\ncomposefs images, object stores and "
             "verified mounts.\n\nCommands:\n");
  for (const Command* c : listed_commands()) fmt::print(out, "  {:<14} {}\n", c->name, c->summary);
  fmt::print(out, "\nRun 'cfs COMMAND --help' for the options of a command.\n");
}

int dispatch(int argc, char** argv) {
  std::string prog = argv[0] ? argv[0] : "cfs";
  if (auto slash = prog.rfind('/'); slash != std::string::npos) prog = prog.substr(slash + 1);
  if (const Command* c = find(prog); c && prog != "cfs") return c->run(argc, argv);
  if (argc < 2) {
    usage(stderr);
    return kExitUsage;
  }
  std::string sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") {
    usage(stdout);
    return kExitOk;
  }
  if (sub == "--version") {
    fmt::print("cfs {}\n", CFS_VERSION);
    return kExitOk;
  }
  const Command* c = find(sub);
  if (!c) {
    fmt::print(stderr, "cfs: error: unknown command '{}'\n", sub);
    usage(stderr);
    return kExitUsage;
  }
  return c->run(argc - 1, argv + 1);
}

}  // namespace
}  // namespace cfs::tools

int main(int argc, char** argv) {
  // A soft descriptor limit of 1024 (the usual default) is not enough for a repository's
  // fan-out directories beside a lazy mount's fetches and open files: raised to the hard one
  // (process policy, so here and not in a library; cfs/util/sys.h).
  (void)cfs::sys::raise_fd_limit();
  // Before any thread: a command that opens many descriptors from several threads (an import's
  // workers, a store fill, a lazy mount) would otherwise grow the table while threaded, each
  // doubling waiting for an RCU grace period (cfs/util/sys.h).
  (void)cfs::sys::reserve_fd_table(4096);
  try {
    return cfs::tools::dispatch(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fputs("cfs: error: out of memory\n", stderr);
  } catch (const std::exception& e) {
    fmt::print(stderr, "cfs: error: {}\n", e.what());
  }
  return cfs::tools::kExitFailure;
}
