// SPDX-License-Identifier: Apache-2.0
// Private helpers shared by the reader's translation units: bounds-checked loads and the
// directory-block walker (a template so load_tree avoids std::function per entry).
#pragma once

#include <fmt/core.h>

#include <cstring>
#include <string>
#include <string_view>

#include "cfs/erofs/reader.h"

namespace cfs::erofs::detail {

inline constexpr unsigned kMaxNameLen = 255;

inline tl::unexpected<Error> corrupt(std::string msg) {
  return fail(Errc::kCorruptImage, std::move(msg));
}

/// True when [off, off + len) lies inside an object of `size` bytes (overflow-safe).
inline bool in_bounds(std::uint64_t off, std::uint64_t len, std::uint64_t size) noexcept {
  return off <= size && len <= size - off;
}

template <typename T>
T load(std::span<const std::byte> b, std::uint64_t off) noexcept {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

inline std::string_view view(std::span<const std::byte> b, std::uint64_t off, std::uint64_t len) {
  return {reinterpret_cast<const char*>(b.data() + off), static_cast<std::size_t>(len)};
}

/// Bytes of directory block `blk` of `dir` (validated by Image::inode()).
inline std::span<const std::byte> dir_block(std::span<const std::byte> img, const InodeInfo& dir,
                                            std::uint64_t blk) {
  std::uint64_t start = blk * kBlockSize;
  std::uint64_t len = std::min<std::uint64_t>(kBlockSize, dir.size - start);
  if (blk < dir.data_blocks) return img.subspan((dir.data_blkaddr + blk) * kBlockSize, len);
  return img.subspan(dir.tail_offset, len);  // the inline tail is the last block
}

inline std::uint64_t dir_block_count(const InodeInfo& dir) {
  return (dir.size + kBlockSize - 1) / kBlockSize;
}

/// Walks the dirents of one directory block starting at slot `first`, validating each one.
/// fn(index, count, DirentView) returns false to stop. Returns false when stopped.
template <typename Fn>
Result<bool> walk_block(std::span<const std::byte> blk, const InodeInfo& dir, std::uint64_t bno,
                        std::uint64_t first, Fn&& fn) {
  auto where = [&] { return fmt::format("nid {}: directory block {}", dir.nid, bno); };
  if (blk.size() < sizeof(Dirent)) return corrupt(where() + ": shorter than one dirent");
  auto d0 = load<Dirent>(blk, 0);
  std::uint32_t nameoff0 = d0.nameoff;
  if (nameoff0 < sizeof(Dirent) || nameoff0 % sizeof(Dirent) != 0 || nameoff0 >= blk.size())
    return corrupt(fmt::format("{}: bad first nameoff {}", where(), nameoff0));
  std::uint64_t count = nameoff0 / sizeof(Dirent);
  std::uint32_t cur_off = nameoff0;
  for (std::uint64_t i = 0; i < count; ++i) {
    auto d = i == 0 ? d0 : load<Dirent>(blk, i * sizeof(Dirent));
    std::uint32_t off = d.nameoff;
    if (off != cur_off)
      return corrupt(fmt::format("{}: dirent {} nameoff {} out of order (expected {})", where(), i,
                                 off, cur_off));
    std::uint64_t end;
    if (i + 1 < count) {
      end = load<Dirent>(blk, (i + 1) * sizeof(Dirent)).nameoff;
      if (end <= off || end > blk.size())
        return corrupt(fmt::format("{}: dirent {} nameoff {} out of range", where(), i + 1, end));
    } else {
      // The last name runs to the end of the block or to the first NUL (kernel: strnlen).
      const void* nul = std::memchr(blk.data() + off, 0, blk.size() - off);
      end = nul ? static_cast<std::uint64_t>(static_cast<const std::byte*>(nul) - blk.data())
                : blk.size();
      if (end == off) return corrupt(fmt::format("{}: dirent {} has an empty name", where(), i));
    }
    std::string_view name = view(blk, off, end - off);
    if (name.size() > kMaxNameLen)
      return corrupt(fmt::format("{}: dirent {} name longer than 255 bytes", where(), i));
    if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
      return corrupt(fmt::format("{}: dirent {} name contains '/' or NUL", where(), i));
    if (d.file_type > static_cast<std::uint8_t>(FileType::kSymlink))
      return corrupt(fmt::format("{}: dirent {} bad file_type {}", where(), i, d.file_type));
    cur_off = static_cast<std::uint32_t>(end);
    if (i < first) continue;
    std::uint64_t next =
        i + 1 < count ? bno * kBlockSize + (i + 1) * sizeof(Dirent) : (bno + 1) * kBlockSize;
    if (!fn(i, count, DirentView{name, d.nid, static_cast<FileType>(d.file_type), next}))
      return false;
  }
  return true;
}

/// Walks all dirents of `dir` from readdir cookie `offset`, checking that names strictly
/// increase across the whole directory (the kernel's lookup binary-searches them).
template <typename Fn>
Status walk_dir(std::span<const std::byte> img, const InodeInfo& dir, std::uint64_t offset,
                Fn&& fn) {
  std::uint64_t nblocks = dir_block_count(dir);
  std::string_view prev;
  bool have_prev = false;
  bool bad_order = false;
  std::uint64_t bad_index = 0;
  for (std::uint64_t b = offset / kBlockSize; b < nblocks; ++b) {
    std::uint64_t first = 0;
    if (b == offset / kBlockSize)
      first = (offset % kBlockSize + sizeof(Dirent) - 1) / sizeof(Dirent);
    auto blk = dir_block(img, dir, b);
    auto r =
        walk_block(blk, dir, b, first, [&](std::uint64_t i, std::uint64_t, const DirentView& e) {
          if (have_prev && !(prev < e.name)) {
            bad_order = true;
            bad_index = i;
            return false;
          }
          prev = e.name;
          have_prev = true;
          return fn(e);
        });
    if (!r) return tl::unexpected<Error>(std::move(r).error());
    if (bad_order)
      return corrupt(fmt::format("nid {}: directory block {} dirent {}: names not sorted", dir.nid,
                                 b, bad_index));
    if (!*r) return {};
  }
  return {};
}

/// Where an inode's trusted.overlay.metacopy and trusted.overlay.redirect values lie in the
/// image, inline or in the shared table (the last of each, as backing_from_xattrs takes them),
/// for the redirect slimming transform (erofs/slim.h). Errors: those of Image::xattrs().
struct BackingSpans {
  std::uint64_t metacopy = 0, metacopy_size = 0;  ///< offset and size; size 0: none
  std::uint64_t redirect = 0, redirect_size = 0;
};
Result<BackingSpans> backing_spans(const Image& image, const InodeInfo& ino);

}  // namespace cfs::erofs::detail
