// SPDX-License-Identifier: Apache-2.0
// Streams a placed Plan out as image bytes: header, superblock, inodes with their xattrs and
// tails, the shared xattr table, data blocks. One pass, no seeks; the fs-verity digest is
// computed on the same bytes.
#include <algorithm>
#include <cstring>
#include <span>

#include "cfs/erofs/format.h"
#include "cfs/util/sys.h"
#include "erofs/emit_internal.h"

namespace cfs::erofs::detail {

Sink::Sink(int fd, const verity::Params& p) : fd_(fd), hasher_(p) { buf_.reserve(kBufferSize); }

void Sink::put(const void* data, std::size_t n) {
  const auto* p = static_cast<const std::byte*>(data);
  while (n > 0) {
    std::size_t room = kBufferSize - buf_.size();
    std::size_t k = std::min(room, n);
    buf_.insert(buf_.end(), p, p + k);
    p += k;
    n -= k;
    written_ += k;
    if (buf_.size() == kBufferSize) flush_buffer();
  }
}

void Sink::zeros(std::size_t n) {
  static constexpr std::byte kZero[4096] = {};
  while (n > 0) {
    std::size_t k = std::min(n, sizeof(kZero));
    put(kZero, k);
    n -= k;
  }
}

void Sink::align(std::uint64_t alignment) {
  zeros(static_cast<std::size_t>((alignment - written_ % alignment) % alignment));
}

void Sink::flush_buffer() {
  if (buf_.empty()) return;
  hasher_.update(buf_);
  if (fd_ >= 0 && status_) {
    if (auto st = sys::write_all(fd_, buf_); !st) status_ = std::move(st);
  }
  buf_.clear();
}

Result<verity::Digest> Sink::finish() {
  flush_buffer();
  CFS_TRY(std::move(status_));
  return hasher_.finish();
}

namespace {

class Emitter {
 public:
  Emitter(const Plan& p, Sink& out) : p_(p), out_(out) {}

  void run() {
    header();
    superblock();
    block_cursor_ = p_.data_start / kBlockSize;
    for (const PNode& n : p_.nodes) inode(n);
    out_.align(kSlotSize);
    for (const XattrRef& x : p_.shared) xattr_entry(x);
    out_.align(kBlockSize);
    for (const PNode& n : p_.nodes) data_blocks(n);
  }

 private:
  template <typename T>
  void put(const T& v) {
    out_.put(&v, sizeof(T));
  }

  void header() {
    ComposefsHeader h{};
    h.magic = kComposefsMagic;
    h.version = kComposefsHeaderVersion;
    h.flags = p_.has_acl ? kComposefsFlagHasAcl : 0;
    h.composefs_version = p_.version;
    put(h);
    out_.zeros(kSuperOffset - sizeof(h));
  }

  void superblock() {
    SuperBlock sb{};
    sb.magic = kSuperMagic;
    sb.feature_compat = kFeatureCompatMtime | kFeatureCompatXattrFilter;
    sb.blkszbits = kBlockSizeBits;
    sb.root_nid = static_cast<std::uint16_t>(p_.nodes[0].nid);
    sb.inos = p_.nodes.size();
    sb.build_time = static_cast<std::uint64_t>(p_.min_sec);
    sb.build_time_nsec = p_.min_nsec;
    sb.blocks = static_cast<std::uint32_t>(p_.data_start / kBlockSize + p_.n_data_blocks);
    sb.meta_blkaddr = 0;
    sb.xattr_blkaddr = static_cast<std::uint32_t>(p_.inodes_end / kBlockSize);
    put(sb);
  }

  // i_u of an inode; advances the data block cursor for inodes with out-of-line blocks.
  std::uint32_t inode_u(const PNode& n, DataLayout layout) {
    std::uint32_t u = 0;
    switch (n.type()) {
      case S_IFCHR:
      case S_IFBLK:
        return p_.rdev(n);
      case S_IFDIR:
      case S_IFREG:
      case S_IFLNK:
        if (n.n_blocks > 0) {
          u = static_cast<std::uint32_t>(block_cursor_);
          block_cursor_ += n.n_blocks;
        }
        // The chunk format overwrites only the low 16 bits (union member `c.format`).
        if (layout == DataLayout::kChunkBased) u = (u & 0xFFFF0000u) | chunking(n.size).format();
        return u;
      default:
        return 0;
    }
  }

  void inode(const PNode& n) {
    out_.zeros(n.ipad);
    DataLayout layout = n.tail > 0 ? DataLayout::kFlatInline : DataLayout::kFlatPlain;
    std::uint64_t size = 0;
    switch (n.type()) {
      case S_IFDIR:
        size = std::uint64_t{n.n_blocks} * kBlockSize + n.tail;
        break;
      case S_IFREG:
        size = n.size;
        if (n.external) layout = DataLayout::kChunkBased;
        break;
      case S_IFLNK:
        size = n.data().size();
        break;
      default:
        break;
    }
    auto format =
        static_cast<std::uint16_t>(static_cast<std::uint16_t>(layout) << 1 |
                                   (n.compact ? kInodeLayoutCompact : kInodeLayoutExtended));
    auto icount = static_cast<std::uint16_t>(xattr_icount(n.xattr_size));
    std::uint32_t u = inode_u(n, layout);
    auto ino = static_cast<std::uint32_t>(&n - p_.nodes.data());
    const Node& owner = p_.source(n);
    if (n.compact) {
      InodeCompact i{};
      i.i_format = format;
      i.i_xattr_icount = icount;
      i.i_mode = static_cast<std::uint16_t>(n.mode);
      i.i_nlink = static_cast<std::uint16_t>(n.nlink);
      i.i_size = static_cast<std::uint32_t>(size);
      i.i_u = u;
      i.i_ino = ino;
      i.i_uid = static_cast<std::uint16_t>(owner.uid);
      i.i_gid = static_cast<std::uint16_t>(owner.gid);
      put(i);
    } else {
      InodeExtended i{};
      i.i_format = format;
      i.i_xattr_icount = icount;
      i.i_mode = static_cast<std::uint16_t>(n.mode);
      i.i_size = size;
      i.i_u = u;
      i.i_ino = ino;
      i.i_uid = owner.uid;
      i.i_gid = owner.gid;
      i.i_mtime = static_cast<std::uint64_t>(owner.mtime_sec);
      i.i_mtime_nsec = owner.mtime_nsec;
      i.i_nlink = n.nlink;
      put(i);
    }
    if (n.xattr_size > 0) xattr_body(n);
    inode_tail(n);
  }

  void xattr_body(const PNode& n) {
    std::uint32_t filter = 0;
    for (std::uint32_t i = n.xattr_begin; i < n.xattr_begin + n.xattr_count; ++i) {
      XattrName name = split_xattr_name(p_.names.key(p_.xattrs[i]));
      filter |= std::uint32_t{1} << xattr_filter_bit(name.index, name.suffix);
    }
    XattrIbodyHeader h{};
    h.h_name_filter = ~filter;
    h.h_shared_count = static_cast<std::uint8_t>(n.n_shared);
    put(h);
    // The table starts slot-aligned within its block, so its start / 4 is exact.
    auto shared_base = static_cast<std::uint32_t>(p_.inodes_end % kBlockSize / 4);
    for (std::uint32_t i = n.xattr_begin; i < n.xattr_begin + n.xattr_count; ++i) {
      if (p_.xattr_shared[i] == kNotShared) continue;
      le32 id = shared_base + p_.xattr_shared[i];
      put(id);
    }
    for (std::uint32_t i = n.xattr_begin; i < n.xattr_begin + n.xattr_count; ++i)
      if (p_.xattr_shared[i] == kNotShared) xattr_entry(p_.xattrs[i]);
  }

  void xattr_entry(const XattrRef& x) {
    XattrName name = split_xattr_name(p_.names.key(x));
    XattrEntry e{};
    e.e_name_len = static_cast<std::uint8_t>(name.suffix.size());
    e.e_name_index = static_cast<std::uint8_t>(name.index);
    e.e_value_size = static_cast<std::uint16_t>(x.value_size());
    put(e);
    out_.put(name.suffix.data(), name.suffix.size());
    const std::string_view head = p_.names.head(x);
    out_.put(head.data(), head.size());
    out_.put(x.rest_data, x.rest_size);
    out_.align(4);
  }

  // Dirents [first, first + count) as one chunk: the records, then the names.
  void dirent_chunk(const PNode& n, std::uint32_t first, std::uint32_t count) {
    auto nameoff = static_cast<std::uint16_t>(count * sizeof(erofs::Dirent));
    for (std::uint32_t i = first; i < first + count; ++i) {
      const DirEntry& d = p_.dirents[n.dirent_begin + i];
      erofs::Dirent rec{};
      rec.nid = p_.nodes[d.target].nid;
      rec.nameoff = nameoff;
      rec.file_type = static_cast<std::uint8_t>(overlay::file_type(p_.nodes[d.target].mode));
      nameoff = static_cast<std::uint16_t>(nameoff + d.name_size);
      put(rec);
    }
    for (std::uint32_t i = first; i < first + count; ++i) {
      std::string_view name = p_.dirents[n.dirent_begin + i].name();
      out_.put(name.data(), name.size());
    }
  }

  // Calls f(first, count, is_tail) for each dirent chunk, with the same packing as place().
  template <typename F>
  void for_each_dir_chunk(const PNode& n, F&& f) {
    std::uint64_t block = 0;
    std::uint32_t first = 0, blocks = 0;
    for (std::uint32_t i = 0; i < n.dirent_count; ++i) {
      std::uint64_t len = sizeof(erofs::Dirent) + p_.dirents[n.dirent_begin + i].name_size;
      if (block + len > kBlockSize) {
        f(first, i - first, false);
        ++blocks;
        block = 0;
        first = i;
      }
      block += len;
    }
    if (blocks < n.n_blocks) {
      f(first, n.dirent_count - first, false);
    } else if (block > 0) {
      f(first, n.dirent_count - first, true);
    }
  }

  void null_chunks(std::uint64_t count) {
    static constexpr std::uint8_t kNull[64] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    std::uint64_t bytes = count * 4;
    while (bytes > 0) {
      std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, sizeof(kNull)));
      out_.put(kNull, k);
      bytes -= k;
    }
  }

  void inode_tail(const PNode& n) {
    if (n.tail == 0) return;
    switch (n.type()) {
      case S_IFDIR:
        for_each_dir_chunk(n, [&](std::uint32_t first, std::uint32_t count, bool is_tail) {
          if (is_tail) dirent_chunk(n, first, count);
        });
        break;
      case S_IFLNK:
        out_.put(n.data_ptr, n.data().size());
        break;
      case S_IFREG:
        if (n.external)
          null_chunks(n.tail / 4);
        else
          out_.put(n.data_ptr + (n.size - n.tail), n.tail);
        break;
      default:
        break;
    }
  }

  void data_blocks(const PNode& n) {
    if (n.n_blocks == 0) return;
    switch (n.type()) {
      case S_IFDIR:
        for_each_dir_chunk(n, [&](std::uint32_t first, std::uint32_t count, bool is_tail) {
          if (is_tail) return;
          dirent_chunk(n, first, count);
          out_.align(kBlockSize);
        });
        break;
      case S_IFREG:
        if (n.external) {
          // Out-of-line chunk tables (files over 8 TiB) are always a full block of null
          // entries, whatever the chunk count (composefs 1.0.8; docs/format.md §7).
          null_chunks(kBlockSize / 4);
          break;
        }
        [[fallthrough]];
      case S_IFLNK:
        // Content and targets never need more than one block (<= 5000 and < 4096 bytes).
        out_.put(n.data_ptr, std::min<std::size_t>(n.data().size(), kBlockSize));
        out_.align(kBlockSize);
        break;
      default:
        break;
    }
  }

  const Plan& p_;
  Sink& out_;
  std::uint64_t block_cursor_ = 0;
};

}  // namespace

Result<verity::Digest> emit(const Plan& plan, Sink& out) {
  Emitter(plan, out).run();
  return out.finish();
}

}  // namespace cfs::erofs::detail
