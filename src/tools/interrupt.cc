// SPDX-License-Identifier: Apache-2.0
#include "tools/interrupt.h"

#include <fmt/core.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace cfs::tools {

Interrupts::Interrupts(std::function<void()> stop) : stop_(std::move(stop)) {
  sigemptyset(&set_);
  for (int sig : {SIGINT, SIGTERM}) {
    struct sigaction now {};
    if (sigaction(sig, nullptr, &now) == 0 && now.sa_handler == SIG_IGN) continue;
    sigaddset(&set_, sig);
  }
  pthread_sigmask(SIG_BLOCK, &set_, &old_mask_);
  signals_ = UniqueFd(::signalfd(-1, &set_, SFD_CLOEXEC));
  wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  if (signals_.get() < 0 || wake_.get() < 0) {
    // No way to read them: the signals keep their default action, as without this object.
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    return;
  }
  thread_ = std::thread([this] { run(); });
}

Interrupts::~Interrupts() { end(); }

int Interrupts::end() {
  if (thread_.joinable()) {
    const std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    thread_.join();
    // A signal still pending now (after the thread stopped reading) takes its default action.
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  return signal();
}

int Interrupts::report(std::string_view what) const {
  const int sig = signal();
  fmt::print(stderr, "cfs: interrupted by {}: {}\n", name(sig), what);
  return exit_status(sig);
}

const char* Interrupts::name(int sig) noexcept {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

void Interrupts::run() {
  for (;;) {
    pollfd fds[2] = {{signals_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents) return;
    signalfd_siginfo info{};
    if (::read(signals_.get(), &info, sizeof info) != sizeof info) continue;
    const int sig = static_cast<int>(info.ssi_signo);
    if (first_.load() == 0) {
      first_ = sig;
      if (stop_) stop_();
      continue;
    }
    // The second: its default action, at once (this thread alone lets it through).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    ::raise(sig);
  }
}

}  // namespace cfs::tools
