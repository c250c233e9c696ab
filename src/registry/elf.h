// SPDX-License-Identifier: Apache-2.0
// What a dynamically linked ELF file makes the loader open next: its interpreter (PT_INTERP) and
// its DT_NEEDED libraries, with the directories it names for them (DT_RUNPATH, else DT_RPATH).
// The lazy provider (lazy.cc) uses this as a prefetch hint: when it has fetched an executable or
// a shared library, it fetches the objects of those libraries at once instead of one round trip
// per open of the dynamic loader (docs/lazy.md, docs/design.md "ELF prefetch").
//
// The bytes are untrusted (an image may hold any file). Every offset, size and count is checked
// against the file before it is used; a malformed file is an error value naming the field, never
// a crash or a read outside `file` (tests/fuzz/elf_fuzzer.cc). Only little-endian ELF32 and ELF64
// are read (every architecture composefs images commonly carry); anything else is "not ELF".
// Thread-safety: functions only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cfs/util/result.h"

namespace cfs::registry::detail {

struct ElfLoadInfo {
  bool elf64 = false;                ///< ELFCLASS64
  std::uint16_t machine = 0;         ///< e_machine (EM_X86_64 = 62, ...)
  std::string interp;                ///< PT_INTERP path; empty when there is none
  std::vector<std::string> needed;   ///< DT_NEEDED names, in order
  std::vector<std::string> runpath;  ///< DT_RUNPATH split at ':' (DT_RPATH when there is none)
};

/// Limits a hostile file cannot exceed (anything beyond is an error).
inline constexpr std::size_t kElfMaxNeeded = 1024;
inline constexpr std::size_t kElfMaxString = 4096;

/// nullopt: not a little-endian ELF file (or one with neither PT_INTERP nor PT_DYNAMIC).
/// Errors (kCorruptImage, naming `what` and the field): an ELF file whose headers point outside
/// it or are inconsistent.
Result<std::optional<ElfLoadInfo>> parse_elf_load_info(std::span<const std::byte> file,
                                                       const std::string& what);

/// The Debian multiarch directory name for the file's class and machine ("x86_64-linux-gnu"), or
/// empty for a machine not listed.
std::string multiarch_triplet(const ElfLoadInfo& info);

}  // namespace cfs::registry::detail
