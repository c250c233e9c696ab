// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace cfs {

bool cpu_is_intel() noexcept {
  static const bool intel = [] {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    return b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;  // "GenuineIntel"
#else
    return false;
#endif
  }();
  return intel;
}

}  // namespace cfs
