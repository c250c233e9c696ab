// SPDX-License-Identifier: Apache-2.0
// `mkcomposefs` and `cfs create` run compose::build_image(); this adds what a terminal shows
// while it runs: one status line on stderr, redrawn every 200 ms.
#pragma once

#include <string>

#include "cfs/compose/compose.h"
#include "cfs/util/result.h"

namespace cfs::tools {

using compose::BuildReport;

struct BuildConfig : compose::BuildConfig {
  bool progress = false;        ///< progress line on stderr (caller checks isatty)
  std::string program = "cfs";  ///< prefix of progress lines
};

/// compose::build_image() with the progress line when cfg.progress.
Result<BuildReport> build_image(const BuildConfig& cfg);

}  // namespace cfs::tools
