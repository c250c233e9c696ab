// SPDX-License-Identifier: Apache-2.0
// `cfs inspect IMAGE`: a byte-level layout dump of a composefs image (header, superblock, and
// every inode reachable from the root in BFS order with its nid, offset, format, xattrs and
// dirents). A debugging aid for byte differences against another writer:
//   diff <(cfs inspect ours.cfs) <(cfs inspect theirs.cfs)
// It decodes the raw structures itself (independently of the reader, which refuses broken
// images) and bounds-checks every access; what cannot be decoded is printed as an error line.
#include <fmt/core.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "cfs/erofs/format.h"
#include "cfs/erofs/layout.h"
#include "cfs/util/mapped_file.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

using namespace cfs::erofs;

class Inspector {
 public:
  Inspector(std::span<const std::byte> b, std::size_t max_value) : b_(b), max_value_(max_value) {}

  int run();

 private:
  template <typename T>
  std::optional<T> get(std::uint64_t off) const {
    if (off > b_.size() || b_.size() - off < sizeof(T)) return std::nullopt;
    T v;
    std::memcpy(&v, b_.data() + off, sizeof(T));
    return v;
  }
  std::optional<std::string_view> str(std::uint64_t off, std::uint64_t len) const {
    if (off > b_.size() || b_.size() - off < len) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(b_.data() + off), len);
  }
  std::string show(std::string_view s) const {
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size() && i < max_value_; ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c == '"' || c == '\\')
        out += fmt::format("\\{}", static_cast<char>(c));
      else if (c >= 0x20 && c < 0x7f)
        out += static_cast<char>(c);
      else
        out += fmt::format("\\x{:02x}", c);
    }
    out += '"';
    if (s.size() > max_value_) out += fmt::format("...({} bytes)", s.size());
    return out;
  }

  void inode(std::uint64_t nid, const std::string& path);
  std::uint64_t xattr_entry(std::uint64_t off, const char* what);
  void dirents(std::uint64_t nid, const std::string& path, std::uint64_t data_off,
               std::uint64_t len);

  std::span<const std::byte> b_;
  std::size_t max_value_;
  SuperBlock sb_{};
  std::deque<std::pair<std::uint64_t, std::string>> queue_;
  std::set<std::uint64_t> seen_;
};

int Inspector::run() {
  auto h = get<ComposefsHeader>(0);
  auto sb = get<SuperBlock>(kSuperOffset);
  if (!h || !sb) {
    fmt::print("error: file too short for a header and superblock ({} bytes)\n", b_.size());
    return kExitFailure;
  }
  sb_ = *sb;
  fmt::print("size {} ({} blocks)\n", b_.size(), b_.size() / kBlockSize);
  fmt::print("header magic {:#010x} version {} flags {:#x} composefs_version {}\n",
             std::uint32_t{h->magic}, std::uint32_t{h->version}, std::uint32_t{h->flags},
             std::uint32_t{h->composefs_version});
  fmt::print(
      "superblock magic {:#010x} checksum {:#x} feature_compat {:#x} blkszbits {} "
      "sb_extslots {} root_nid {} inos {} build_time {}.{} blocks {} meta_blkaddr {} "
      "xattr_blkaddr {} feature_incompat {:#x} extra_devices {} dirblkbits {} "
      "xattr_prefix_count {} packed_nid {}\n",
      std::uint32_t{sb_.magic}, std::uint32_t{sb_.checksum}, std::uint32_t{sb_.feature_compat},
      sb_.blkszbits, sb_.sb_extslots, std::uint16_t{sb_.root_nid}, std::uint64_t{sb_.inos},
      std::uint64_t{sb_.build_time}, std::uint32_t{sb_.build_time_nsec}, std::uint32_t{sb_.blocks},
      std::uint32_t{sb_.meta_blkaddr}, std::uint32_t{sb_.xattr_blkaddr},
      std::uint32_t{sb_.feature_incompat}, std::uint16_t{sb_.extra_devices}, sb_.dirblkbits,
      sb_.xattr_prefix_count, std::uint64_t{sb_.packed_nid});
  queue_.emplace_back(sb_.root_nid, "/");
  seen_.insert(sb_.root_nid);
  std::uint64_t count = 0;
  while (!queue_.empty()) {
    auto [nid, path] = queue_.front();
    queue_.pop_front();
    inode(nid, path);
    ++count;
  }
  fmt::print("inodes reached {}\n", count);
  return kExitOk;
}

std::uint64_t Inspector::xattr_entry(std::uint64_t off, const char* what) {
  auto e = get<XattrEntry>(off);
  if (!e) {
    fmt::print("    {} error: entry at {} outside the image\n", what, off);
    return 0;
  }
  auto name = str(off + 4, e->e_name_len);
  auto value = str(off + 4 + e->e_name_len, e->e_value_size);
  if (!name || !value) {
    fmt::print("    {} error: entry at {} overruns the image\n", what, off);
    return 0;
  }
  auto index = static_cast<XattrIndex>(e->e_name_index);
  fmt::print("    {} @{} [{}] {}{} = {}\n", what, off, e->e_name_index, xattr_prefix(index),
             show(*name), show(*value));
  return (4u + e->e_name_len + e->e_value_size + 3) / 4 * 4;
}

void Inspector::dirents(std::uint64_t nid, const std::string& path, std::uint64_t data_off,
                        std::uint64_t len) {
  auto first = get<erofs::Dirent>(data_off);
  if (!first || len < sizeof(erofs::Dirent)) {
    fmt::print("    dirents error: chunk at {} unreadable\n", data_off);
    return;
  }
  std::uint32_t n = first->nameoff / sizeof(erofs::Dirent);
  fmt::print("    dirent chunk @{} len {} entries {}\n", data_off, len, n);
  for (std::uint32_t i = 0; i < n; ++i) {
    auto d = get<erofs::Dirent>(data_off + std::uint64_t{i} * sizeof(erofs::Dirent));
    if (!d) return;
    std::uint64_t start = d->nameoff;
    std::uint64_t end = len;
    if (i + 1 < n) {
      if (auto next = get<erofs::Dirent>(data_off + std::uint64_t{i + 1} * sizeof(erofs::Dirent)))
        end = next->nameoff;
    } else if (auto rest = str(data_off + start, start < len ? len - start : 0)) {
      end = start + std::min<std::uint64_t>(rest->find('\0'), rest->size());
    }
    auto name = end >= start ? str(data_off + start, end - start) : std::nullopt;
    if (!name || end > len) {
      fmt::print("    dirent {} error: name [{}, {}) outside the chunk\n", i, start, end);
      continue;
    }
    fmt::print("    dirent nid {} type {} nameoff {} {}\n", std::uint64_t{d->nid}, d->file_type,
               std::uint16_t{d->nameoff}, show(*name));
    if (*name == "." || *name == "..") continue;
    if (seen_.insert(d->nid).second)
      queue_.emplace_back(d->nid, (path == "/" ? "" : path) + "/" + std::string(*name));
  }
  (void)nid;
}

void Inspector::inode(std::uint64_t nid, const std::string& path) {
  std::uint64_t off = std::uint64_t{sb_.meta_blkaddr} * kBlockSize + nid * kSlotSize;
  auto c = get<InodeCompact>(off);
  if (!c) {
    fmt::print("nid {} @{} {} error: outside the image\n", nid, off, path);
    return;
  }
  bool extended = (c->i_format & 1) != 0;
  unsigned layout = (c->i_format >> 1) & 0x7;
  std::uint32_t mode = c->i_mode, u = c->i_u, ino = c->i_ino;
  std::uint64_t size = c->i_size, nlink = c->i_nlink, uid = c->i_uid, gid = c->i_gid;
  std::string times;
  std::uint64_t isize = sizeof(InodeCompact);
  if (extended) {
    auto e = get<InodeExtended>(off);
    if (!e) {
      fmt::print("nid {} @{} {} error: extended inode outside the image\n", nid, off, path);
      return;
    }
    isize = sizeof(InodeExtended);
    size = e->i_size;
    nlink = e->i_nlink;
    uid = e->i_uid;
    gid = e->i_gid;
    u = e->i_u;
    ino = e->i_ino;
    times = fmt::format(" mtime {}.{}", std::uint64_t{e->i_mtime}, std::uint32_t{e->i_mtime_nsec});
  }
  static constexpr const char* kLayouts[] = {
      "FLAT_PLAIN", "COMPRESSED_FULL", "FLAT_INLINE", "COMPRESSED_COMPACT", "CHUNK_BASED", "?", "?",
      "?"};
  std::uint16_t icount = c->i_xattr_icount;
  std::uint64_t xsize = icount == 0 ? 0 : sizeof(XattrIbodyHeader) + (icount - 1u) * 4u;
  fmt::print(
      "nid {} @{} block {}+{} {} {} {} mode {:o} nlink {} uid {} gid {} size {} u {:#x} ino {} "
      "icount {} xattr_size {}{}\n",
      nid, off, off / kBlockSize, off % kBlockSize, path, extended ? "extended" : "compact",
      kLayouts[layout], mode, nlink, uid, gid, size, u, ino, icount, xsize, times);

  std::uint64_t x = off + isize;
  if (xsize > 0) {
    auto hdr = get<XattrIbodyHeader>(x);
    if (!hdr) {
      fmt::print("    xattr error: header outside the image\n");
      return;
    }
    fmt::print("    xattr filter {:#010x} shared {}\n", std::uint32_t{hdr->h_name_filter},
               hdr->h_shared_count);
    std::uint64_t p = x + sizeof(XattrIbodyHeader);
    for (unsigned i = 0; i < hdr->h_shared_count; ++i, p += 4) {
      auto id = get<le32>(p);
      if (!id) break;
      fmt::print("    shared id {}\n", std::uint32_t{*id});
      xattr_entry(std::uint64_t{sb_.xattr_blkaddr} * kBlockSize + std::uint64_t{*id} * 4,
                  "  shared");
    }
    while (p < x + xsize) {
      std::uint64_t n = xattr_entry(p, "inline");
      if (n == 0) break;
      p += n;
    }
  }

  std::uint64_t tail_off = x + xsize;
  std::uint64_t type = mode & S_IFMT;
  std::uint64_t blocks = 0, tail = 0;
  if (layout == static_cast<unsigned>(DataLayout::kChunkBased)) {
    unsigned bits = kBlockSizeBits + (u & kChunkFormatBlkbitsMask);
    std::uint64_t count = size == 0 ? 0 : ((size - 1) >> bits) + 1;
    fmt::print("    chunks format {:#x} chunkbits {} count {}\n", u & 0xffff, bits, count);
    for (std::uint64_t i = 0; i < count && i < 4; ++i)
      if (auto e = get<le32>(tail_off + i * 4))
        fmt::print("    chunk[{}] {:#010x}\n", i, std::uint32_t{*e});
    return;
  }
  if (layout == static_cast<unsigned>(DataLayout::kFlatInline)) {
    blocks = size / kBlockSize;
    tail = size % kBlockSize;
  } else if (layout == static_cast<unsigned>(DataLayout::kFlatPlain)) {
    blocks = (size + kBlockSize - 1) / kBlockSize;
  }
  if (blocks > 0 || tail > 0)
    fmt::print("    data blocks {} at block {} tail {} @{}\n", blocks, blocks ? u : 0, tail,
               tail ? tail_off : 0);
  if (type == S_IFDIR) {
    for (std::uint64_t i = 0; i < blocks; ++i)
      dirents(nid, path, (std::uint64_t{u} + i) * kBlockSize,
              std::min<std::uint64_t>(kBlockSize, size - i * kBlockSize));
    if (tail > 0) dirents(nid, path, tail_off, tail);
  } else if (type == S_IFLNK || type == S_IFREG) {
    std::uint64_t data_off = blocks ? std::uint64_t{u} * kBlockSize : tail_off;
    if (auto s = str(data_off, std::min<std::uint64_t>(size, blocks ? kBlockSize : tail)))
      fmt::print("    {} {}\n", type == S_IFLNK ? "target" : "content", show(*s));
  }
}

int run_inspect(int argc, char** argv) {
  CLI::App app{"Print the byte-level layout of a composefs image (debugging aid).", "cfs inspect"};
  std::string image;
  std::size_t max_value = 64;
  app.add_option("IMAGE", image, "composefs image")->required();
  app.add_option("--max-value", max_value, "bytes of each value/content to print (default 64)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  auto file = MappedFile::open(image);
  if (!file) {
    fmt::print(stderr, "cfs: error: {}\n", file.error().message());
    return kExitFailure;
  }
  return Inspector(file->bytes(), max_value).run();
}

}  // namespace

CFS_REGISTER_COMMAND("inspect", "print the byte-level layout of an image (debugging)", run_inspect);

}  // namespace cfs::tools
