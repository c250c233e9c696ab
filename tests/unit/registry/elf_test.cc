// SPDX-License-Identifier: Apache-2.0
// The loader view of ELF files (registry/elf.h) on files built here byte by byte from the ELF
// specification's layouts (the expected values are what the test wrote), and on hostile variants
// of them: truncations at every length and out-of-range fields must be errors, never crashes.
#include "registry/elf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace cfs::registry::detail {
namespace {

/// A little-endian ELF file with PT_LOAD (the whole file), PT_INTERP, PT_DYNAMIC and a string
/// table, laid out at fixed offsets. Field offsets are the specification's.
struct ElfBuilder {
  bool elf64 = true;
  std::uint16_t machine = 62;
  std::string interp = "/lib64/ld-linux-x86-64.so.2";
  std::vector<std::string> needed = {"libfoo.so.1", "libc.so.6"};
  std::string runpath = "/opt/lib::$ORIGIN/../lib";
  std::uint64_t runpath_tag = 29;  // DT_RUNPATH (15: DT_RPATH)
  static constexpr std::uint64_t kVaddr = 0x400000;
  static constexpr std::uint64_t kInterpAt = 512, kStrAt = 600, kDynAt = 1024, kSize = 2048;

  std::vector<std::byte> bytes;
  void put(std::uint64_t off, std::uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) bytes.at(off + i) = std::byte(v >> (8 * i));
  }
  unsigned word() const { return elf64 ? 8u : 4u; }

  std::vector<std::byte> build() {
    bytes.assign(kSize, std::byte{0});
    const unsigned char ident[] = {0x7f, 'E', 'L', 'F', static_cast<unsigned char>(elf64 ? 2 : 1),
                                   1,    1};
    std::memcpy(bytes.data(), ident, sizeof ident);
    const unsigned w = word();
    const std::uint64_t phoff = elf64 ? 64 : 52, phentsize = elf64 ? 56 : 32;
    put(16, 3, 2);                       // e_type ET_DYN
    put(18, machine, 2);                 // e_machine
    put(20, 1, 4);                       // e_version
    put(24 + w, phoff, w);               // e_phoff
    put(elf64 ? 54 : 42, phentsize, 2);  // e_phentsize
    put(elf64 ? 56 : 44, 3, 2);          // e_phnum
    auto phdr = [&](unsigned i, std::uint32_t type, std::uint64_t off, std::uint64_t filesz) {
      std::uint64_t at = phoff + i * phentsize;
      put(at, type, 4);
      if (elf64) {
        put(at + 8, off, 8);            // p_offset
        put(at + 16, kVaddr + off, 8);  // p_vaddr
        put(at + 32, filesz, 8);        // p_filesz
      } else {
        put(at + 4, off, 4);
        put(at + 8, kVaddr + off, 4);
        put(at + 16, filesz, 4);
      }
    };
    phdr(0, 1, 0, kSize);  // PT_LOAD
    phdr(1, 3, kInterpAt, interp.size() + 1);
    std::memcpy(bytes.data() + kInterpAt, interp.data(), interp.size());
    // The string table: "\0" then each name.
    std::uint64_t at = kStrAt + 1;
    std::vector<std::uint64_t> offs;
    for (const auto& s : needed) {
      offs.push_back(at - kStrAt);
      std::memcpy(bytes.data() + at, s.data(), s.size());
      at += s.size() + 1;
    }
    std::uint64_t rp = at - kStrAt;
    std::memcpy(bytes.data() + at, runpath.data(), runpath.size());
    at += runpath.size() + 1;
    std::uint64_t strsz = at - kStrAt;
    std::uint64_t d = kDynAt;
    auto dyn = [&](std::uint64_t tag, std::uint64_t val) {
      put(d, tag, w);
      put(d + w, val, w);
      d += 2 * w;
    };
    for (auto o : offs) dyn(1, o);
    dyn(5, kVaddr + kStrAt);
    dyn(10, strsz);
    if (!runpath.empty()) dyn(runpath_tag, rp);
    dyn(0, 0);
    phdr(2, 2, kDynAt, d - kDynAt);  // PT_DYNAMIC
    return bytes;
  }
};

Result<std::optional<ElfLoadInfo>> parse(const std::vector<std::byte>& b) {
  return parse_elf_load_info(b, "test.so");
}

TEST(Elf, ReadsInterpreterNeededAndRunpath) {
  for (bool elf64 : {true, false}) {
    ElfBuilder e;
    e.elf64 = elf64;
    e.machine = elf64 ? 62 : 3;
    auto r = parse(e.build());
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_TRUE(*r);
    EXPECT_EQ((*r)->elf64, elf64);
    EXPECT_EQ((*r)->interp, "/lib64/ld-linux-x86-64.so.2");
    EXPECT_EQ((*r)->needed, (std::vector<std::string>{"libfoo.so.1", "libc.so.6"}));
    EXPECT_EQ((*r)->runpath, (std::vector<std::string>{"/opt/lib", "$ORIGIN/../lib"}));
    EXPECT_EQ(multiarch_triplet(**r), elf64 ? "x86_64-linux-gnu" : "i386-linux-gnu");
  }
}

TEST(Elf, RpathIsUsedOnlyWithoutRunpath) {
  ElfBuilder e;
  e.runpath_tag = 15;
  auto r = parse(e.build());
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->runpath, (std::vector<std::string>{"/opt/lib", "$ORIGIN/../lib"}));
}

TEST(Elf, NotElfIsNoHint) {
  std::string text = "#!/bin/sh\necho hi\n";
  auto r = parse_elf_load_info(std::as_bytes(std::span(text)), "script");
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  ElfBuilder e;
  auto b = e.build();
  b[5] = std::byte{2};  // ELFDATA2MSB: not read
  r = parse(b);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(multiarch_triplet(ElfLoadInfo{true, 9999, {}, {}, {}}), "");
}

TEST(Elf, EveryTruncationIsAnErrorOrALesserAnswer) {
  ElfBuilder e;
  auto full = e.build();
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    auto r = parse(cut);
    if (!r) {
      EXPECT_EQ(r.error().code(), make_error_code(Errc::kCorruptImage)) << n;
      EXPECT_NE(r.error().message().find("test.so: ELF "), std::string::npos) << n;
    } else if (n >= 16) {
      ADD_FAILURE() << "a file cut to " << n << " bytes parsed";
    }
  }
}

TEST(Elf, OutOfRangeFieldsAreNamed) {
  struct Case {
    const char* field;
    std::function<void(ElfBuilder&)> damage;
  };
  const Case cases[] = {
      {"e_phoff", [](ElfBuilder& e) { e.put(32, 0xfffffffffffffff0ull, 8); }},
      {"e_phentsize", [](ElfBuilder& e) { e.put(54, 55, 2); }},
      {"PT_INTERP", [](ElfBuilder& e) { e.put(64 + 56 + 8, ElfBuilder::kSize, 8); }},
      {"PT_DYNAMIC", [](ElfBuilder& e) { e.put(64 + 112 + 32, 0xffffffffffffff00ull, 8); }},
      {"DT_STRTAB", [](ElfBuilder& e) { e.put(ElfBuilder::kDynAt + 2 * 16 + 8, 0x10, 8); }},
      {"DT_STRSZ", [](ElfBuilder& e) { e.put(ElfBuilder::kDynAt + 3 * 16 + 8, 1u << 20, 8); }},
      {"DT_NEEDED 1", [](ElfBuilder& e) { e.put(ElfBuilder::kDynAt + 16 + 8, 4000, 8); }},
      {"NUL-terminated",
       [](ElfBuilder& e) {  // the last string runs into the end of the table
         e.put(ElfBuilder::kDynAt + 3 * 16 + 8, 1 + 12 + 10 + 5, 8);
       }},
      {"EI_VERSION", [](ElfBuilder& e) { e.bytes[6] = std::byte{0}; }},
      {"EI_CLASS", [](ElfBuilder& e) { e.bytes[4] = std::byte{3}; }},
  };
  for (const auto& c : cases) {
    ElfBuilder e;
    e.build();
    c.damage(e);
    auto r = parse(e.bytes);
    ASSERT_FALSE(r) << c.field;
    EXPECT_NE(r.error().message().find(c.field), std::string::npos)
        << c.field << ": " << r.error().message();
  }
}

TEST(Elf, StaticFilesAndLibrariesWithoutNeedsGiveWhatTheyHave) {
  ElfBuilder e;
  e.needed.clear();
  e.runpath.clear();
  auto r = parse(e.build());
  ASSERT_TRUE(r && *r);
  EXPECT_TRUE((*r)->needed.empty());
  EXPECT_EQ((*r)->interp, "/lib64/ld-linux-x86-64.so.2");
  e.put(56, 0, 2);  // e_phnum 0: nothing for the loader
  r = parse(e.bytes);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
}

}  // namespace
}  // namespace cfs::registry::detail
