// SPDX-License-Identifier: Apache-2.0
// Image open, inode decoding, directories and data reads. Validation mirrors what the kernel
// checks in fs/erofs/inode.c (erofs_read_inode) and data.c (erofs_map_blocks_flat), plus the
// composefs header, so anything we accept the kernel would read the same way.
#include "cfs/erofs/reader.h"

#include <fmt/core.h>
#include <sys/mman.h>

#include <cstring>

#include "cfs/util/mapped_file.h"
#include "cfs/util/path.h"
#include "erofs/reader_internal.h"

namespace cfs::erofs {

using detail::corrupt;
using detail::in_bounds;
using detail::load;

struct Image::Owner {
  MappedFile map;
  std::vector<std::byte> vec;
};

namespace {

// EROFS_FEATURE_INCOMPAT_CHUNKED_FILE: harmless for us; everything else (compression, extra
// devices, fragments, dedupe, ...) is a layout we do not read.
constexpr std::uint32_t kIncompatChunkedFile = 0x4;
constexpr std::uint16_t kIFormatAll = 0xF;  // version bit + 3 layout bits (EROFS_I_ALL)
constexpr std::uint64_t kHeaderEnd = kSuperOffset + sizeof(SuperBlock);

// The fields compact and extended inodes share; returns i_xattr_icount.
template <class D>
std::uint16_t decode_common(const D& d, InodeInfo& ino) {
  ino.mode = d.i_mode;
  ino.size = d.i_size;
  ino.raw_u = d.i_u;
  ino.ino = d.i_ino;
  ino.uid = d.i_uid;
  ino.gid = d.i_gid;
  ino.nlink = d.i_nlink;
  return d.i_xattr_icount;
}

// Chunk-based regular files (composefs' external files): only the chunk format is checked.
template <class Where>
Status decode_chunked(InodeInfo& ino, const Where& where) {
  if (!ino.is_reg())
    return corrupt(fmt::format("{}: chunk-based layout on a non-regular file", where()));
  if ((ino.raw_u & ~(kChunkFormatBlkbitsMask | kChunkFormatIndexes)) != 0)
    return corrupt(fmt::format("{}: bad chunk format {:#x}", where(), ino.raw_u));
  unsigned chunkbits = kBlockSizeBits + (ino.raw_u & kChunkFormatBlkbitsMask);
  std::uint64_t chunks =
      (ino.size >> chunkbits) + ((ino.size & ((std::uint64_t{1} << chunkbits) - 1)) != 0 ? 1 : 0);
  std::uint64_t esize = (ino.raw_u & kChunkFormatIndexes) ? 8 : 4;
  // The table is only read on demand (read()); composefs puts it out of line, in a block of
  // its own, for files over 8 TiB whose table does not fit after the inode (docs/format.md §7),
  // and nothing else needs it.
  ino.tail_size = chunks * esize;
  return {};
}

// Flat layouts (erofs_map_blocks_flat): FLAT_PLAIN keeps every block out of line;
// FLAT_INLINE keeps the last (possibly full) block right after the xattrs.
template <class Where>
Status decode_flat(InodeInfo& ino, std::uint64_t size, const Where& where) {
  std::uint64_t nblocks = ino.size / kBlockSize + (ino.size % kBlockSize != 0 ? 1 : 0);
  if (ino.size > size)
    return corrupt(fmt::format("{}: i_size {} larger than the image", where(), ino.size));
  if (ino.layout == DataLayout::kFlatInline && ino.size > 0) {
    ino.data_blocks = nblocks - 1;
    ino.tail_size = ino.size - ino.data_blocks * kBlockSize;
    if (!in_bounds(ino.tail_offset, ino.tail_size, size))
      return corrupt(fmt::format("{}: inline data beyond the image", where()));
    if (ino.tail_offset % kBlockSize + ino.tail_size > kBlockSize)
      return corrupt(fmt::format("{}: inline data crosses a block boundary", where()));
  } else {
    ino.data_blocks = nblocks;
  }
  if (ino.data_blocks > 0) {
    ino.data_blkaddr = ino.raw_u;
    if (!in_bounds(ino.data_blkaddr * kBlockSize, ino.data_blocks * kBlockSize, size))
      return corrupt(fmt::format("{}: data blocks {}+{} beyond the image", where(),
                                 ino.data_blkaddr, ino.data_blocks));
    if (ino.data_blkaddr * kBlockSize < kHeaderEnd)
      return corrupt(
          fmt::format("{}: data block {} overlaps the superblock", where(), ino.data_blkaddr));
  }
  return {};
}

}  // namespace

Result<Image> Image::open(const std::string& path) {
  auto owner = std::make_shared<Owner>();
  CFS_ASSIGN(owner->map, MappedFile::open(path));
  auto bytes = owner->map.bytes();
  CFS_ASSIGN_CTX(Image img, init(std::move(owner), bytes), path);
  return img;
}

Result<Image> Image::open_fd(int fd, const std::string& what) {
  auto owner = std::make_shared<Owner>();
  CFS_ASSIGN(owner->map, MappedFile::map_fd(fd, what));
  auto bytes = owner->map.bytes();
  auto r = init(std::move(owner), bytes);
  if (!r) return fail(std::move(r).error().with_context(what));
  return r;
}

Result<Image> Image::from_bytes(std::vector<std::byte> bytes) {
  auto owner = std::make_shared<Owner>();
  owner->vec = std::move(bytes);
  std::span<const std::byte> b = owner->vec;
  return init(std::move(owner), b);
}

Result<Image> Image::from_bytes(std::span<const std::byte> bytes) {
  return from_bytes(std::vector<std::byte>(bytes.begin(), bytes.end()));
}

Result<Image> Image::init(std::shared_ptr<const Owner> owner, std::span<const std::byte> b) {
  Image img;
  img.owner_ = std::move(owner);
  img.bytes_ = b;
  ImageInfo& in = img.info_;
  in.size = b.size();
  if (b.size() < kHeaderEnd)
    return corrupt(fmt::format("truncated: {} bytes, a composefs image has at least {}", b.size(),
                               kHeaderEnd));
  auto h = load<ComposefsHeader>(b, 0);
  if (h.magic != kComposefsMagic)
    return corrupt(fmt::format("bad composefs magic {:#010x}", std::uint32_t{h.magic}));
  if (h.version != kComposefsHeaderVersion)
    return corrupt(
        fmt::format("unsupported composefs header version {}", std::uint32_t{h.version}));
  if (h.composefs_version > kMaxFormatVersion)
    return corrupt(
        fmt::format("unsupported composefs format version {}", std::uint32_t{h.composefs_version}));
  in.format_version = h.composefs_version;
  in.header_flags = h.flags;

  auto sb = load<SuperBlock>(b, kSuperOffset);
  if (sb.magic != kSuperMagic)
    return corrupt(fmt::format("bad EROFS superblock magic {:#010x}", std::uint32_t{sb.magic}));
  if (sb.blkszbits != kBlockSizeBits)
    return corrupt(fmt::format("unsupported EROFS block size 2^{}", sb.blkszbits));
  if ((sb.feature_incompat & ~kIncompatChunkedFile) != 0)
    return corrupt(fmt::format("unsupported EROFS incompat features {:#x}",
                               std::uint32_t{sb.feature_incompat}));
  in.root_nid = sb.root_nid;
  in.inos = sb.inos;
  in.build_time = static_cast<std::int64_t>(std::uint64_t{sb.build_time});
  in.build_time_nsec = sb.build_time_nsec;
  in.blocks = sb.blocks;
  in.meta_blkaddr = sb.meta_blkaddr;
  in.xattr_blkaddr = sb.xattr_blkaddr;
  if (std::uint64_t{in.blocks} * kBlockSize > b.size())
    return corrupt(fmt::format("truncated: superblock says {} blocks, file has {} bytes", in.blocks,
                               b.size()));
  if (std::uint64_t{in.meta_blkaddr} * kBlockSize >= b.size())
    return corrupt(fmt::format("meta_blkaddr {} beyond the image", in.meta_blkaddr));
  if (std::uint64_t{in.xattr_blkaddr} * kBlockSize > b.size())
    return corrupt(fmt::format("xattr_blkaddr {} beyond the image", in.xattr_blkaddr));
  CFS_ASSIGN_CTX(InodeInfo root, img.inode(in.root_nid), "root inode");
  if (!root.is_dir()) return corrupt(fmt::format("root nid {} is not a directory", in.root_nid));
  return img;
}

void Image::drop_resident_pages() const noexcept {
  if (!owner_ || owner_->map.size() == 0) return;
  // MADV_DONTNEED on a read-only file mapping drops PTEs only; nothing can be lost.
  auto* p = const_cast<std::byte*>(bytes_.data());
  (void)::madvise(p, bytes_.size(), MADV_DONTNEED);
}

Result<InodeInfo> Image::inode(std::uint64_t nid) const {
  const std::uint64_t size = bytes_.size();
  const std::uint64_t base = std::uint64_t{info_.meta_blkaddr} * kBlockSize;
  auto where = [&] { return fmt::format("nid {}", nid); };
  if (nid >= (size - base) / kSlotSize)
    return corrupt(fmt::format("{}: beyond the end of the image", where()));
  InodeInfo ino;
  ino.nid = nid;
  ino.inode_offset = base + nid * kSlotSize;
  if (ino.inode_offset < kHeaderEnd)
    return corrupt(fmt::format("{}: inode overlaps the superblock", where()));
  std::uint16_t ifmt = load<le16>(bytes_, ino.inode_offset);
  if ((ifmt & ~kIFormatAll) != 0)
    return corrupt(fmt::format("{}: unknown i_format bits {:#x}", where(), ifmt));
  ino.extended = (ifmt & 1) != 0;
  auto layout = static_cast<std::uint16_t>((ifmt >> 1) & 0x7);
  std::uint64_t isize = ino.extended ? sizeof(InodeExtended) : sizeof(InodeCompact);
  if (!in_bounds(ino.inode_offset, isize, size))
    return corrupt(fmt::format("{}: inode truncated", where()));
  std::uint16_t xattr_icount;
  if (ino.extended) {
    auto d = load<InodeExtended>(bytes_, ino.inode_offset);
    xattr_icount = decode_common(d, ino);
    ino.mtime_sec = static_cast<std::int64_t>(std::uint64_t{d.i_mtime});
    ino.mtime_nsec = d.i_mtime_nsec;
  } else {
    // Compact inodes carry no time: the superblock's build time stands for all of them.
    xattr_icount = decode_common(load<InodeCompact>(bytes_, ino.inode_offset), ino);
    ino.mtime_sec = info_.build_time;
    ino.mtime_nsec = info_.build_time_nsec;
  }
  if (!overlay::is_known_type(ino.mode))
    return corrupt(fmt::format("{}: invalid i_mode {:o}", where(), ino.mode));
  // i_mtime_nsec >= 10^9 is not rejected: dumps may carry such values, upstream writes and
  // reads them as given, and the kernel does not check either. Consumers that build a
  // timespec (the FUSE layer) clamp it.
  ino.xattr_size =
      xattr_icount == 0 ? 0 : sizeof(XattrIbodyHeader) + (std::uint32_t{xattr_icount} - 1) * 4;
  ino.tail_offset = ino.inode_offset + isize + ino.xattr_size;
  if (!in_bounds(ino.inode_offset + isize, ino.xattr_size, size))
    return corrupt(
        fmt::format("{}: xattr body (i_xattr_icount {}) beyond the image", where(), xattr_icount));
  if (layout == static_cast<std::uint16_t>(DataLayout::kCompressedFull) ||
      layout == static_cast<std::uint16_t>(DataLayout::kCompressedCompact))
    return corrupt(fmt::format("{}: compressed data layout {} is not supported", where(), layout));
  if (layout >= kMaxDataLayout)
    return corrupt(fmt::format("{}: unknown data layout {}", where(), layout));
  ino.layout = static_cast<DataLayout>(layout);

  switch (ino.type()) {
    case S_IFCHR:
    case S_IFBLK:
      ino.rdev = ino.raw_u;
      return ino;  // no data, whatever the layout says (as the kernel)
    case S_IFIFO:
    case S_IFSOCK:
      return ino;
    default:
      break;
  }

  if (ino.layout == DataLayout::kChunkBased)
    CFS_TRY(decode_chunked(ino, where));
  else
    CFS_TRY(decode_flat(ino, size, where));
  if (ino.is_dir() && ino.size == 0)
    return corrupt(fmt::format("{}: directory with i_size 0", where()));
  return ino;
}

Status Image::iterate_dir(const InodeInfo& dir, std::uint64_t offset,
                          const std::function<bool(const DirentView&)>& fn) const {
  if (!dir.is_dir()) return fail_errno(fmt::format("nid {}", dir.nid), ENOTDIR);
  return detail::walk_dir(bytes_, dir, offset, fn);
}

Status Image::iterate_dir(std::uint64_t dir_nid, std::uint64_t offset,
                          const std::function<bool(const DirentView&)>& fn) const {
  CFS_ASSIGN(InodeInfo dir, inode(dir_nid));
  return iterate_dir(dir, offset, fn);
}

Result<std::vector<DirEntry>> Image::readdir(std::uint64_t dir_nid) const {
  CFS_ASSIGN(InodeInfo dir, inode(dir_nid));
  if (!dir.is_dir()) return fail_errno(fmt::format("nid {}", dir_nid), ENOTDIR);
  std::vector<DirEntry> out;
  CFS_TRY(detail::walk_dir(bytes_, dir, 0, [&](const DirentView& e) {
    out.push_back({std::string(e.name), e.nid, e.file_type});
    return true;
  }));
  return out;
}

Result<std::optional<std::uint64_t>> Image::lookup(std::uint64_t dir_nid,
                                                   std::string_view name) const {
  CFS_ASSIGN(InodeInfo dir, inode(dir_nid));
  if (!dir.is_dir()) return fail_errno(fmt::format("nid {}", dir_nid), ENOTDIR);
  // Binary search for the last block whose first name is <= name, then within that block.
  std::uint64_t lo = 0, hi = detail::dir_block_count(dir);
  while (hi - lo > 1) {
    std::uint64_t mid = lo + (hi - lo) / 2;
    std::string_view first;
    auto r = detail::walk_block(detail::dir_block(bytes_, dir, mid), dir, mid, 0,
                                [&](std::uint64_t, std::uint64_t, const DirentView& e) {
                                  first = e.name;
                                  return false;
                                });
    if (!r) return fail(std::move(r).error());
    if (first <= name)
      lo = mid;
    else
      hi = mid;
  }
  // Dirents within a block are few (<= 341); a linear walk validates them all as a bonus.
  std::optional<std::uint64_t> found;
  auto r = detail::walk_block(detail::dir_block(bytes_, dir, lo), dir, lo, 0,
                              [&](std::uint64_t, std::uint64_t, const DirentView& e) {
                                if (e.name == name) {
                                  found = e.nid;
                                  return false;
                                }
                                return e.name < name;
                              });
  if (!r) return fail(std::move(r).error());
  return found;
}

Result<std::uint64_t> Image::resolve(std::string_view path) const {
  std::uint64_t cur = root_nid();
  for (std::size_t pos = 0; auto name = next_component(path, pos);) {
    CFS_ASSIGN(auto next, lookup(cur, *name));
    if (!next) return fail_errno(std::string(path), ENOENT);
    cur = *next;
  }
  return cur;
}

Result<std::string> Image::read(const InodeInfo& ino, std::uint64_t off, std::size_t len) const {
  std::string out;
  if (off >= ino.size) return out;
  len = static_cast<std::size_t>(std::min<std::uint64_t>(len, ino.size - off));
  if (len > bytes_.size() && ino.layout != DataLayout::kChunkBased)
    return corrupt(fmt::format("nid {}: read beyond the image", ino.nid));
  if (ino.layout == DataLayout::kChunkBased) {
    unsigned chunkbits = kBlockSizeBits + (ino.raw_u & kChunkFormatBlkbitsMask);
    std::uint64_t esize = (ino.raw_u & kChunkFormatIndexes) ? 8 : 4;
    out.reserve(len);
    while (out.size() < len) {
      std::uint64_t pos = off + out.size();
      std::uint64_t chunk = pos >> chunkbits;
      std::uint64_t in_chunk = pos & ((std::uint64_t{1} << chunkbits) - 1);
      std::uint64_t n =
          std::min<std::uint64_t>(len - out.size(), (std::uint64_t{1} << chunkbits) - in_chunk);
      std::uint64_t eoff = ino.tail_offset + chunk * esize;
      if (!in_bounds(eoff, esize, bytes_.size()))
        return corrupt(
            fmt::format("nid {}: chunk table entry {} beyond the image", ino.nid, chunk));
      std::uint32_t blk = esize == 8 ? std::uint32_t{load<le32>(bytes_, eoff + 4)}
                                     : std::uint32_t{load<le32>(bytes_, eoff)};
      if (blk == kNullAddr) {
        out.append(static_cast<std::size_t>(n), '\0');
        continue;
      }
      std::uint64_t src = std::uint64_t{blk} * kBlockSize + in_chunk;
      if (!in_bounds(src, n, bytes_.size()))
        return corrupt(
            fmt::format("nid {}: chunk {} block {} beyond the image", ino.nid, chunk, blk));
      out.append(detail::view(bytes_, src, n));
    }
    return out;
  }
  out.reserve(len);
  while (out.size() < len) {
    std::uint64_t pos = off + out.size();
    std::uint64_t blk = pos / kBlockSize;
    std::uint64_t in_blk = pos % kBlockSize;
    std::uint64_t n = std::min<std::uint64_t>(len - out.size(), kBlockSize - in_blk);
    std::uint64_t src = blk < ino.data_blocks ? (ino.data_blkaddr + blk) * kBlockSize + in_blk
                                              : ino.tail_offset + in_blk;
    // inode() validated both extents; this guards the arithmetic anyway.
    if (!in_bounds(src, n, bytes_.size()))
      return corrupt(fmt::format("nid {}: data beyond the image", ino.nid));
    out.append(detail::view(bytes_, src, n));
  }
  return out;
}

Result<std::string> Image::read(std::uint64_t nid, std::uint64_t off, std::size_t len) const {
  CFS_ASSIGN(InodeInfo ino, inode(nid));
  return read(ino, off, len);
}

Result<std::string> Image::readlink(std::uint64_t nid) const {
  CFS_ASSIGN(InodeInfo ino, inode(nid));
  if (!ino.is_symlink()) return fail_errno(fmt::format("nid {}", nid), EINVAL);
  if (ino.size == 0 || ino.size >= 4096)
    return corrupt(fmt::format("nid {}: symlink size {} out of range", nid, ino.size));
  return read(ino, 0, static_cast<std::size_t>(ino.size));
}

}  // namespace cfs::erofs
