// SPDX-License-Identifier: Apache-2.0
// The libFuzzer entry point every fuzz target defines (and replay_main.cc calls), and the one
// invariant check the targets share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

/// CFS_FUZZ_VERBOSE set: targets that support it print the errors an input ends in (to see
/// how far a seed gets, and what an error says).
inline bool fuzz_verbose() {
  static const bool on = std::getenv("CFS_FUZZ_VERBOSE") != nullptr;
  return on;
}

// A broken invariant must crash so libFuzzer keeps the input; the message names the target's
// file and line, since a replay of a whole corpus otherwise only says "aborted". (A macro:
// clang 14, Debian's, has no std::source_location.)
#define FUZZ_CHECK(ok, what)                                           \
  do {                                                                 \
    if (!(ok)) {                                                       \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, (what)); \
      std::abort();                                                    \
    }                                                                  \
  } while (0)
