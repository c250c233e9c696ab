// SPDX-License-Identifier: Apache-2.0
// The libFuzzer entry point every fuzz target defines (and replay_main.cc calls).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
