// SPDX-License-Identifier: Apache-2.0
// Fuzzes the ELF loader-view parser (registry/elf.h) with untrusted files: a lazy mount parses
// every executable and library it fetches to prefetch what the loader opens next. Errors are
// expected; a parse that succeeds must give strings within the limits.
#include <cstdint>
#include <span>

#include "fuzz_target.h"
#include "registry/elf.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::registry::detail;
  auto r = parse_elf_load_info(std::as_bytes(std::span(data, size)), "fuzz");
  if (!r || !*r) return 0;
  const ElfLoadInfo& info = **r;
  FUZZ_CHECK(info.needed.size() <= kElfMaxNeeded, "too many DT_NEEDED");
  FUZZ_CHECK(info.interp.size() <= kElfMaxString, "PT_INTERP too long");
  for (const auto& n : info.needed) FUZZ_CHECK(!n.empty() && n.size() <= kElfMaxString, "bad name");
  for (const auto& d : info.runpath) FUZZ_CHECK(!d.empty() && d.size() <= kElfMaxString, "bad dir");
  (void)multiarch_triplet(info);
  return 0;
}
