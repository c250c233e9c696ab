// SPDX-License-Identifier: Apache-2.0
// The registry side of `cfs oci` (oci_registry_cmd.cc): docker:// sources for `pull`, and the
// push / seal / verify-seal subcommands. Compiled only with the registry client
// (CFS_BUILD_REGISTRY, which defines CFS_WITH_REGISTRY for the cfs executable); oci_cmd.cc
// builds without it and then lists none of these.
#pragma once

#include <memory>
#include <optional>
#include <string>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "cfs/ocirepo/pull.h"
#include "cfs/repo/repository.h"
#include "tools/progress.h"

namespace cfs::tools {

int run_oci_push(int argc, char** argv);
int run_oci_seal(int argc, char** argv);
int run_oci_verify_seal(int argc, char** argv);
int run_oci_lazy_metadata(int argc, char** argv);
/// `cfs oci mount --lazy ...` (lazy_mount_cmd.cc; only with FUSE too: CFS_WITH_LAZY).
int run_oci_lazy_mount(int argc, char** argv);

/// The options `cfs oci pull` takes for docker:// sources (skopeo's names) and the pull itself.
class RegistryPull {
 public:
  RegistryPull();
  ~RegistryPull();
  void add_options(CLI::App& app);
  /// Rejects bad option values (kInvalidInput), before anything is opened.
  Status check_options() const;
  /// Pulls a docker:// reference into `repo` (registry::pull_image): downloads resumable under
  /// the repository, the seal checked when --verify-seal asked for it.
  /// Retries and failures of the transfers go to `progress` too.
  /// SIGINT/SIGTERM stop it (tools/interrupt.h): the transfers end at once, and it fails.
  Result<ocirepo::PullResult> pull(repo::Repository& repo, const std::string& source,
                                   const ocirepo::PullOptions& options, Progress& progress);
  /// The signal that stopped pull() (then the command exits 128 + it), or 0.
  int interrupted() const;
  /// When interrupted(): says on stderr what the interrupted pull of `source` left (and how to
  /// resume it), and returns the exit status.
  int report_interrupted(const repo::Repository& repo, const std::string& source) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::tools
