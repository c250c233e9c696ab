// SPDX-License-Identifier: Apache-2.0
// Command registry of the multicall `cfs` binary. Each src/tools/*.cc file registers its
// commands; `cfs NAME ...` runs one, and so does invoking the binary under a program name
// (mkcomposefs, composefs-info, mount.composefs, composefs-fuse are symlinks to cfs).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "cfs/util/result.h"

namespace CLI {
class App;
}

namespace cfs::tools {

/// Exit codes: 0 success, 1 operational error, 2 usage error (fsverity-utils convention).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  std::string name;     ///< subcommand or program name (argv[0] basename)
  std::string summary;  ///< one line for `cfs --help`; empty = not listed (program aliases)
  int (*run)(int argc, char** argv);  ///< argv[0] is the command name
};

std::vector<Command>& registry();

/// One subcommand of a command group (`cfs repo`, `cfs oci`).
struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);  ///< argv[0] is the subcommand name
};

/// Runs the subcommand argv[1] of `cfs GROUP`. `about` is the group's usage text up to its
/// list of subcommands; -h/--help/help print the usage on stdout, a missing or unknown
/// subcommand prints it on stderr and returns kExitUsage.
int run_subcommand(const char* group, const char* about, std::span<const Subcommand> subs, int argc,
                   char** argv);

/// Prints "cfs: error: MESSAGE" on stderr and returns kExitFailure.
int report(const Error& e);

/// Parses argv into `app`: 0 to go on; -1 after --help was printed (exit kExitOk); kExitUsage
/// after a usage error was printed.
int parse_args(CLI::App& app, int argc, char** argv);

struct Registrar {
  explicit Registrar(Command c) { registry().push_back(std::move(c)); }
};

}  // namespace cfs::tools

#define CFS_TOOL_CONCAT_INNER_(a, b) a##b
#define CFS_TOOL_CONCAT_(a, b) CFS_TOOL_CONCAT_INNER_(a, b)
/// CFS_REGISTER_COMMAND("digest", "compute fs-verity digests", run_digest);
#define CFS_REGISTER_COMMAND(name, summary, fn)                                     \
  static const ::cfs::tools::Registrar CFS_TOOL_CONCAT_(cfs_registrar_, __LINE__) { \
    ::cfs::tools::Command { name, summary, fn }                                     \
  }
