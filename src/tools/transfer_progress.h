// SPDX-License-Identifier: Apache-2.0
// Renders registry TransferEvents: a status line on a terminal (stderr), or one JSON object per
// event and line (--json, stdout) for scripts. Used by every command that moves blobs.
#pragma once

#include <cstdint>
#include <string>

#include "cfs/registry/progress.h"

namespace cfs::tools {

class TransferProgress {
 public:
  enum class Mode { kNone, kTerminal, kJson };
  /// kTerminal when stderr is a terminal and json is false; kJson with json.
  static Mode pick(bool json);

  explicit TransferProgress(Mode mode) : mode_(mode) {}
  /// The callback to put into ClientOptions::progress (this object must outlive the client).
  registry::ProgressCallback callback();
  /// Ends the terminal status line.
  void finish();

 private:
  void on_event(const registry::TransferEvent& ev);
  Mode mode_;
  bool line_open_ = false;
  std::uint64_t blobs_done_ = 0;
};

/// "12.3 MiB" style sizes.
std::string human_bytes(double bytes);

}  // namespace cfs::tools
