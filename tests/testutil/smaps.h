// SPDX-License-Identifier: Apache-2.0
// The kernel's own view of a mapping, for tests of memory placement: /proc/self/smaps is the
// oracle (what the kernel marked), not the code under test's bookkeeping.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace cfs::testutil {

/// The mapping that holds an address: its start and end, and its smaps VmFlags (" hg" when
/// advised for transparent huge pages).
struct Vma {
  std::uintptr_t start = 0, end = 0;
  std::string flags;
  bool advised_huge() const { return flags.find(" hg") != std::string::npos; }
};

/// The mapping holding `p`, or a Vma with end == 0 when nothing is mapped there.
inline Vma vma_of(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream f("/proc/self/smaps");
  std::string line;
  Vma cur;
  bool in = false;
  while (std::getline(f, line)) {
    unsigned long a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &a, &b) == 2 && line.find(' ') > line.find('-')) {
      in = at >= a && at < b;
      if (in) cur = {a, b, ""};
    } else if (in && line.rfind("VmFlags:", 0) == 0) {
      cur.flags = line.substr(8);
      return cur;
    }
  }
  return {};
}

}  // namespace cfs::testutil
