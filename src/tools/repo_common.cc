// SPDX-License-Identifier: Apache-2.0
#include "tools/repo_common.h"

#include <fmt/core.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

namespace cfs::tools {

void add_repo_option(CLI::App& app, std::string& path) {
  app.add_option("--repo", path,
                 "repository directory (default: $CFS_REPO, else /sysroot/composefs for root, "
                 "~/.var/lib/composefs for other users)");
}

std::string repo_path_or_default(const std::string& option) {
  return option.empty() ? repo::default_path() : option;
}

Result<repo::Repository> open_repo(const std::string& option, repo::OpenOptions options) {
  std::string path = repo_path_or_default(option);
  if (!options.on_wait)
    options.on_wait = [path] {
      fmt::print(stderr, "cfs: waiting for {}: another process holds it locked\n", path);
    };
  return repo::Repository::open(path, options);
}

}  // namespace cfs::tools
