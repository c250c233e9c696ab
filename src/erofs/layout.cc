// SPDX-License-Identifier: Apache-2.0
#include "cfs/erofs/layout.h"

#include <xxhash.h>

#include <array>
#include <bit>

namespace cfs::erofs {

namespace {

struct Prefix {
  std::string_view text;
  XattrIndex index;
};

// Order matters: composefs takes the first match.
constexpr std::array<Prefix, 5> kPrefixes{{
    {"user.", XattrIndex::kUser},
    {"system.posix_acl_access", XattrIndex::kPosixAclAccess},
    {"system.posix_acl_default", XattrIndex::kPosixAclDefault},
    {"trusted.", XattrIndex::kTrusted},
    {"security.", XattrIndex::kSecurity},
}};

}  // namespace

XattrName split_xattr_name(std::string_view key) noexcept {
  for (const auto& p : kPrefixes)
    if (key.starts_with(p.text)) return {p.index, key.substr(p.text.size())};
  return {XattrIndex::kNone, key};
}

std::string_view xattr_prefix(XattrIndex index) noexcept {
  for (const auto& p : kPrefixes)
    if (p.index == index) return p.text;
  return {};
}

std::uint32_t xattr_entry_size(std::string_view key, std::size_t value_len) noexcept {
  auto n = sizeof(XattrEntry) + split_xattr_name(key).suffix.size() + value_len;
  return static_cast<std::uint32_t>((n + 3) & ~std::size_t{3});
}

std::uint64_t xattr_body_size(std::size_t n_shared, std::uint64_t inline_bytes) noexcept {
  if (n_shared == 0 && inline_bytes == 0) return 0;
  std::uint64_t n = sizeof(XattrIbodyHeader) + n_shared * sizeof(std::uint32_t) + inline_bytes;
  return (n + 3) & ~std::uint64_t{3};
}

std::uint64_t xattr_icount(std::uint64_t body_size) noexcept {
  if (body_size == 0) return 0;
  return (body_size - sizeof(XattrIbodyHeader)) / sizeof(std::uint32_t) + 1;
}

unsigned xattr_filter_bit(XattrIndex index, std::string_view suffix) noexcept {
  auto h =
      XXH32(suffix.data(), suffix.size(), kXattrFilterSeed + static_cast<std::uint32_t>(index));
  return static_cast<unsigned>(h & (kXattrFilterBits - 1));
}

Chunking chunking(std::uint64_t size) noexcept {
  Chunking c;
  auto bits = static_cast<std::uint32_t>(std::bit_width(size - 1));
  c.chunkbits = bits < kBlockSizeBits ? kBlockSizeBits : bits;
  if (c.chunkbits - kBlockSizeBits > kChunkFormatBlkbitsMask)
    c.chunkbits = kChunkFormatBlkbitsMask + kBlockSizeBits;
  std::uint64_t chunk_size = std::uint64_t{1} << c.chunkbits;
  c.count = (size + chunk_size - 1) / chunk_size;  // wraps like DIV_ROUND_UP upstream
  return c;
}

DataSplit inline_data_split(std::uint64_t size) noexcept {
  DataSplit s{size / kBlockSize, static_cast<std::uint32_t>(size % kBlockSize)};
  if (s.tail > kBlockSize / 2) {
    ++s.n_blocks;
    s.tail = 0;
  }
  return s;
}

}  // namespace cfs::erofs
