// SPDX-License-Identifier: Apache-2.0
// The options every command that talks to a registry takes (skopeo's names: --creds,
// --authfile, --tls-verify, --cert-dir, --retry-times, --retry-delay, --jobs, --json), shared
// by `cfs registry` and `cfs oci`.
#pragma once

#include <memory>
#include <optional>
#include <string>

// g++ 12 -O2 reports a false "potential null pointer dereference" inside CLI11's inlined
// std::string code; it is not in our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "cfs/registry/client.h"
#include "tools/interrupt.h"
#include "tools/progress.h"

namespace cfs::tools {

struct RegistryOptions {
  std::string creds;
  std::string authfile;
  std::string tls_verify = "true";
  std::string cert_dir;
  unsigned retry_times = 5;
  double retry_delay = 1.0;
  unsigned jobs = 4;
  bool json = false;

  /// Adds the options to a (sub)command; --jobs and --json only where they mean something.
  void add(CLI::App& app, bool with_json, bool with_jobs = false);
  /// The client options they stand for (kInvalidInput for a bad --tls-verify or --creds).
  Result<registry::ClientOptions> options() const;
};

/// The client's transfer events rendered by `progress` (which must outlive the client); with
/// messages_only, only retries and failures (a pull renders its import's own events).
registry::ProgressCallback transfer_callback(Progress& progress, bool messages_only = false);

/// A client with `o`'s options reporting to `progress` (which must outlive it), stopped by
/// `cancel` when given (stop_on_signals).
Result<registry::Client> make_client(const RegistryOptions& o, Progress& progress,
                                     bool messages_only = false,
                                     std::shared_ptr<registry::CancelToken> cancel = nullptr);

/// Starts `interrupts` (tools/interrupt.h) and returns the token its first signal cancels, for
/// the command's client (make_client, ClientOptions::cancel): every command that talks to a
/// registry stops this way. Call it before anything starts a thread (threads inherit the blocked
/// signals), and keep `interrupts` until the command has reported, so that a second signal
/// kills at once.
std::shared_ptr<registry::CancelToken> stop_on_signals(std::optional<Interrupts>& interrupts);

}  // namespace cfs::tools
