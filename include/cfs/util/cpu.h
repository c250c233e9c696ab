// SPDX-License-Identifier: Apache-2.0
// Facts about the CPU that choose between measured code paths (docs/design.md).
#pragma once

namespace cfs {

/// True on GenuineIntel CPUs (cpuid leaf 0). Asked once per process: under a hypervisor every
/// cpuid is a VM exit (~16 us on host B).
bool cpu_is_intel() noexcept;

}  // namespace cfs
