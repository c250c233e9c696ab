// SPDX-License-Identifier: Apache-2.0
// The loader's view of an ELF file (see elf.h). Struct and field names are the ELF
// specification's (<elf.h>), laid out with util/le.h so they are read with memcpy at any offset.
#include "registry/elf.h"

#include <cstring>
#include <string_view>

#include "cfs/util/le.h"

namespace cfs::registry::detail {
namespace {

constexpr std::uint32_t kPtLoad = 1, kPtDynamic = 2, kPtInterp = 3;
constexpr std::uint64_t kDtNull = 0, kDtNeeded = 1, kDtStrtab = 5, kDtStrsz = 10, kDtRpath = 15,
                        kDtRunpath = 29;
constexpr std::uint16_t kPnXnum = 0xffff;  // the real e_phnum is in section 0: not supported

struct Elf64Ehdr {
  std::uint8_t e_ident[16];
  le16 e_type, e_machine;
  le32 e_version;
  le64 e_entry, e_phoff, e_shoff;
  le32 e_flags;
  le16 e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
};
struct Elf32Ehdr {
  std::uint8_t e_ident[16];
  le16 e_type, e_machine;
  le32 e_version;
  le32 e_entry, e_phoff, e_shoff;
  le32 e_flags;
  le16 e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
};
struct Elf64Phdr {
  le32 p_type, p_flags;
  le64 p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
};
struct Elf32Phdr {
  le32 p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align;
};
struct Elf64Dyn {
  le64 d_tag, d_val;
};
struct Elf32Dyn {
  le32 d_tag, d_val;
};
static_assert(sizeof(Elf64Ehdr) == 64 && sizeof(Elf32Ehdr) == 52);
static_assert(sizeof(Elf64Phdr) == 56 && sizeof(Elf32Phdr) == 32);
static_assert(sizeof(Elf64Dyn) == 16 && sizeof(Elf32Dyn) == 8);

struct Elf64 {
  using Ehdr = Elf64Ehdr;
  using Phdr = Elf64Phdr;
  using Dyn = Elf64Dyn;
};
struct Elf32 {
  using Ehdr = Elf32Ehdr;
  using Phdr = Elf32Phdr;
  using Dyn = Elf32Dyn;
};

/// [off, off + len) lies within a file of `size` bytes (no overflow).
bool within(std::uint64_t off, std::uint64_t len, std::uint64_t size) {
  return off <= size && len <= size - off;
}

template <typename T>
T load(std::span<const std::byte> file, std::uint64_t off) {
  T v;
  std::memcpy(&v, file.data() + off, sizeof v);
  return v;
}

struct Segment {
  std::uint64_t vaddr, offset, filesz;
};

class Parser {
 public:
  Parser(std::span<const std::byte> file, const std::string& what) : file_(file), what_(what) {}

  Error bad(const std::string& field, const std::string& why) const {
    return Error(Errc::kCorruptImage, what_ + ": ELF " + field + ": " + why);
  }

  /// The NUL-terminated string at [off, end) (end within the file), at most kElfMaxString long.
  Result<std::string> string_at(std::uint64_t off, std::uint64_t end,
                                const std::string& field) const {
    if (off >= end) return fail(bad(field, "outside its string table"));
    std::uint64_t n = std::min<std::uint64_t>(end - off, kElfMaxString + 1);
    const char* p = reinterpret_cast<const char*>(file_.data() + off);
    const void* nul = std::memchr(p, 0, static_cast<std::size_t>(n));
    if (!nul) return fail(bad(field, "not NUL-terminated within its bounds"));
    return std::string(p, static_cast<const char*>(nul));
  }

  template <typename C>
  Result<std::optional<ElfLoadInfo>> parse(ElfLoadInfo info) const {
    using Ehdr = typename C::Ehdr;
    using Phdr = typename C::Phdr;
    using Dyn = typename C::Dyn;
    const std::uint64_t size = file_.size();
    if (size < sizeof(Ehdr)) return fail(bad("header", "the file is shorter than its header"));
    auto eh = load<Ehdr>(file_, 0);
    info.machine = eh.e_machine;
    const std::uint64_t phoff = eh.e_phoff;
    const std::uint16_t phnum = eh.e_phnum;
    if (phnum == 0) return std::optional<ElfLoadInfo>();
    if (phnum == kPnXnum) return fail(bad("e_phnum", "PN_XNUM is not supported"));
    if (eh.e_phentsize != sizeof(Phdr))
      return fail(bad("e_phentsize", std::to_string(eh.e_phentsize) + " instead of " +
                                         std::to_string(sizeof(Phdr))));
    if (!within(phoff, std::uint64_t{phnum} * sizeof(Phdr), size))
      return fail(bad("e_phoff", "the program headers end past the end of the file"));

    std::vector<Segment> loads;
    std::optional<Segment> dynamic;
    bool has_interp = false;
    for (std::uint16_t i = 0; i < phnum; ++i) {
      auto ph = load<Phdr>(file_, phoff + std::uint64_t{i} * sizeof(Phdr));
      const std::string field = "program header " + std::to_string(i);
      Segment s{ph.p_vaddr, ph.p_offset, ph.p_filesz};
      if (ph.p_type == kPtLoad) {
        if (!within(s.offset, s.filesz, size))
          return fail(bad(field, "PT_LOAD bytes past the end of the file"));
        loads.push_back(s);
      } else if (ph.p_type == kPtInterp && !has_interp) {
        if (!within(s.offset, s.filesz, size))
          return fail(bad(field, "PT_INTERP past the end of the file"));
        CFS_ASSIGN(info.interp, string_at(s.offset, s.offset + s.filesz, field + " (PT_INTERP)"));
        if (info.interp.empty()) return fail(bad(field, "empty PT_INTERP"));
        has_interp = true;
      } else if (ph.p_type == kPtDynamic && !dynamic) {
        if (!within(s.offset, s.filesz, size))
          return fail(bad(field, "PT_DYNAMIC past the end of the file"));
        dynamic = s;
      }
    }
    if (!dynamic) {
      if (!has_interp) return std::optional<ElfLoadInfo>();
      return std::make_optional(std::move(info));
    }

    // The dynamic section: tags up to DT_NULL. String values are offsets into DT_STRTAB, which
    // is a virtual address: the PT_LOAD segment holding it gives its file offset.
    std::vector<std::uint64_t> needed;
    std::optional<std::uint64_t> strtab, strsz, rpath, runpath;
    const std::uint64_t count = dynamic->filesz / sizeof(Dyn);
    for (std::uint64_t i = 0; i < count; ++i) {
      auto d = load<Dyn>(file_, dynamic->offset + i * sizeof(Dyn));
      const std::uint64_t tag = d.d_tag, val = d.d_val;
      if (tag == kDtNull) break;
      if (tag == kDtNeeded) {
        if (needed.size() == kElfMaxNeeded)
          return fail(bad("DT_NEEDED", "more than " + std::to_string(kElfMaxNeeded) + " entries"));
        needed.push_back(val);
      } else if (tag == kDtStrtab) {
        strtab = val;
      } else if (tag == kDtStrsz) {
        strsz = val;
      } else if (tag == kDtRpath) {
        rpath = val;
      } else if (tag == kDtRunpath) {
        runpath = val;
      }
    }
    if (needed.empty() && !rpath && !runpath) return std::make_optional(std::move(info));
    if (!strtab || !strsz) return fail(bad("dynamic section", "no DT_STRTAB or DT_STRSZ"));
    std::optional<std::uint64_t> table;
    for (const auto& s : loads)
      if (*strtab >= s.vaddr && *strtab - s.vaddr < s.filesz) {
        table = s.offset + (*strtab - s.vaddr);
        break;
      }
    if (!table) return fail(bad("DT_STRTAB", "its address is in no PT_LOAD segment"));
    if (!within(*table, *strsz, size))
      return fail(bad("DT_STRSZ", "the string table ends past the end of the file"));
    const std::uint64_t end = *table + *strsz;
    auto str = [&](std::uint64_t idx, const std::string& field) -> Result<std::string> {
      if (idx >= *strsz) return fail(bad(field, "offset outside the string table"));
      return string_at(*table + idx, end, field);
    };
    for (std::size_t i = 0; i < needed.size(); ++i) {
      CFS_ASSIGN(std::string name, str(needed[i], "DT_NEEDED " + std::to_string(i)));
      if (!name.empty()) info.needed.push_back(std::move(name));
    }
    if (auto path = runpath ? runpath : rpath) {
      CFS_ASSIGN(std::string dirs, str(*path, runpath ? "DT_RUNPATH" : "DT_RPATH"));
      std::string_view rest = dirs;
      while (!rest.empty()) {
        auto colon = rest.find(':');
        std::string_view dir = rest.substr(0, colon);
        if (!dir.empty()) info.runpath.emplace_back(dir);
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
      }
    }
    return std::make_optional(std::move(info));
  }

 private:
  std::span<const std::byte> file_;
  const std::string& what_;
};

}  // namespace

Result<std::optional<ElfLoadInfo>> parse_elf_load_info(std::span<const std::byte> file,
                                                       const std::string& what) {
  constexpr unsigned char kMagic[4] = {0x7f, 'E', 'L', 'F'};
  constexpr std::size_t kClass = 4, kData = 5, kVersion = 6;
  if (file.size() < 16 || std::memcmp(file.data(), kMagic, 4) != 0)
    return std::optional<ElfLoadInfo>();
  const auto ident = [&](std::size_t i) { return std::to_integer<unsigned>(file[i]); };
  if (ident(kData) != 1) return std::optional<ElfLoadInfo>();  // ELFDATA2LSB only
  Parser p(file, what);
  if (ident(kVersion) != 1) return fail(p.bad("e_ident[EI_VERSION]", "not EV_CURRENT"));
  ElfLoadInfo info;
  if (ident(kClass) == 2) {
    info.elf64 = true;
    return p.parse<Elf64>(std::move(info));
  }
  if (ident(kClass) == 1) return p.parse<Elf32>(std::move(info));
  return fail(p.bad("e_ident[EI_CLASS]", "neither ELFCLASS32 nor ELFCLASS64"));
}

std::string multiarch_triplet(const ElfLoadInfo& info) {
  struct Arch {
    bool elf64;
    std::uint16_t machine;
    const char* triplet;
  };
  static constexpr Arch kArches[] = {
      {true, 62, "x86_64-linux-gnu"},   {false, 3, "i386-linux-gnu"},
      {true, 183, "aarch64-linux-gnu"}, {false, 40, "arm-linux-gnueabihf"},
      {true, 243, "riscv64-linux-gnu"}, {true, 21, "powerpc64le-linux-gnu"},
  };
  for (const auto& a : kArches)
    if (a.elf64 == info.elf64 && a.machine == info.machine) return a.triplet;
  return {};
}

}  // namespace cfs::registry::detail
