// SPDX-License-Identifier: Apache-2.0
// SIGINT and SIGTERM for a command that can stop cleanly (every command that talks to a registry:
// `cfs oci pull docker://…`, `push`, `seal`, `cfs registry …`, `cfs oci mount --lazy` until it
// serves; docs/registry.md "Interrupting"): the first signal asks the work to stop (a registry
// client's CancelToken, registry_options.h stop_on_signals: its transfers and retry waits end at
// once) and the command reports (report()) and exits 128 + the signal; a second one kills the
// process by its default action at once.
//
// The signals are blocked in the creating thread, and so in every thread it starts afterwards
// (create this before any), and read by a thread of its own (signalfd): no async-signal handler
// runs, and the library sees only its token. A signal the process ignored when it started (a
// background job's SIGINT) stays ignored.
// Thread-safety: signal() may be called from any thread.
#pragma once

#include <signal.h>

#include <atomic>
#include <functional>
#include <string_view>
#include <thread>

#include "cfs/util/unique_fd.h"

namespace cfs::tools {

class Interrupts {
 public:
  /// `stop` runs once, on this object's thread, when the first signal comes.
  explicit Interrupts(std::function<void()> stop);
  ~Interrupts();
  Interrupts(const Interrupts&) = delete;
  Interrupts& operator=(const Interrupts&) = delete;

  /// The first signal received (SIGINT or SIGTERM), or 0.
  int signal() const noexcept { return first_.load(); }
  /// Stops reading the signals (they take their default action again, a pending one at once)
  /// and returns signal() as it stays: for a command whose work goes on past the part a signal
  /// stops cleanly (a lazy mount's server, which handles them itself). The destructor does this.
  int end();
  /// Prints "cfs: interrupted by SIGINT: <what>" on stderr (one line: `what` says what stopped,
  /// what is left and how to resume) and returns exit_status(signal()).
  int report(std::string_view what) const;
  /// The exit status of a command `sig` interrupted (the shell's convention: 130, 143).
  static int exit_status(int sig) noexcept { return 128 + sig; }
  /// "SIGINT" / "SIGTERM".
  static const char* name(int sig) noexcept;

 private:
  void run();

  std::function<void()> stop_;
  sigset_t set_{};
  sigset_t old_mask_{};
  UniqueFd signals_;  // signalfd of set_
  UniqueFd wake_;     // eventfd: the destructor ends the thread
  std::atomic<int> first_{0};
  std::thread thread_;
};

}  // namespace cfs::tools
