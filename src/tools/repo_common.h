// SPDX-License-Identifier: Apache-2.0
// What the repository front ends share: the --repo option and its default, opening with a
// note on stderr while waiting for another process's lock.
#pragma once

#include <string>
#include <string_view>

#include "cfs/repo/repository.h"
#include "cfs/util/json.h"

namespace CLI {
class App;
}

namespace cfs::tools {

/// Adds --repo PATH to a command.
void add_repo_option(CLI::App& app, std::string& path);
/// The --repo value, else $CFS_REPO, else the per-user or system default.
std::string repo_path_or_default(const std::string& option);
/// Opens the repository named by --repo (or the default); says on stderr when it has to wait
/// for another process (gc holds the repository exclusively while it runs).
Result<repo::Repository> open_repo(const std::string& option, repo::OpenOptions options);

}  // namespace cfs::tools
