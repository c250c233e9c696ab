// SPDX-License-Identifier: Apache-2.0
// Shared xattr selection and inode placement (composefs' compute_erofs_shared_xattrs and
// compute_erofs_inodes): which (name, value) pairs go to the shared table and in what order,
// each inode's data split, compact or extended form, tail padding and nid.
#include <fmt/core.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include "erofs/plan_internal.h"

namespace cfs::erofs::detail {
namespace {

constexpr std::uint64_t kMetaStart = 1152;  // right after the superblock
constexpr std::uint32_t kShareLimit = 128;  // EROFS_XATTR_LONG_PREFIX: h_shared_count stays below

// Shared table order: name descending, then longer values first, then value bytes descending.
bool shared_before(const XattrNames& names, const XattrRef& a, const XattrRef& b) {
  if (int c = names.key(a).compare(names.key(b)); c != 0) return c > 0;
  if (a.value_size() != b.value_size()) return a.value_size() > b.value_size();
  return names.compare_values(b, a) < 0;
}

std::uint64_t round_up(std::uint64_t x, std::uint64_t n) { return (x + n - 1) / n * n; }

// Keys are interned, so the key id stands for the key's bytes.
std::uint64_t hash_pair(const XattrNames& names, const XattrRef& x) {
  const std::uint64_t seed = x.key;
  if (x.head == 0) return XXH3_64bits_withSeed(x.rest_data, x.rest_size, seed);
  // The hash of the whole value, however it is split (equal values must collide).
  std::array<char, 256> buf;
  if (x.value_size() <= buf.size()) {
    const std::string_view head = names.head(x);
    std::memcpy(buf.data(), head.data(), head.size());
    if (x.rest_size > 0) std::memcpy(buf.data() + head.size(), x.rest_data, x.rest_size);
    return XXH3_64bits_withSeed(buf.data(), x.value_size(), seed);
  }
  std::string scratch;
  const std::string_view v = names.value(x, scratch);
  return XXH3_64bits_withSeed(v.data(), v.size(), seed);
}

// Distinct (name, value) pairs: a flat open-addressing table, because a /usr-sized tree has
// ~300k xattrs and node-based maps spend their time in cache misses. It is alive at the
// writer's peak memory, so it is small: a pair is named by its first occurrence in
// Plan::xattrs, and a slot is one 32-bit word, the pair's index + 1 in its low bits and high
// hash bits (a tag that skips most mismatching compares) in the bits that index leaves free.
class PairTable {
 public:
  static constexpr std::uint32_t kOnce = kNotShared;          // Use::offset: seen once
  static constexpr std::uint32_t kRepeated = kNotShared - 1;  // seen more than once
  struct Use {
    std::uint32_t first = 0;       // index of the first occurrence in the xattr list
    std::uint32_t offset = kOnce;  // kOnce, kRepeated, then the shared-table offset / 4
  };

  PairTable(const std::vector<XattrRef>& xattrs, const XattrNames& names)
      : xattrs_(xattrs), names_(names) {
    std::size_t cap = 16;
    while (cap < xattrs.size() + xattrs.size() / 2) cap <<= 1;  // load factor <= 2/3
    slots_.assign(cap, 0);
    mask_ = cap - 1;
    const auto id_bits = static_cast<unsigned>(std::bit_width(xattrs.size() + 1));
    id_mask_ = id_bits >= 32 ? 0xFFFFFFFF : (std::uint32_t{1} << id_bits) - 1;
    uses_.reserve(xattrs.size());
  }

  std::uint32_t add(std::uint32_t index) {
    const XattrRef& x = xattrs_[index];
    const std::uint64_t h = hash_pair(names_, x);
    const std::uint32_t tag = static_cast<std::uint32_t>(h >> 32) & ~id_mask_;
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      std::uint32_t& slot = slots_[i];
      if (slot == 0) {
        uses_.push_back({index, kOnce});
        slot = tag | static_cast<std::uint32_t>(uses_.size());
        return static_cast<std::uint32_t>(uses_.size() - 1);
      }
      if ((slot & ~id_mask_) != tag) continue;
      const std::uint32_t use = (slot & id_mask_) - 1;
      const XattrRef& y = xattrs_[uses_[use].first];
      if (y.key == x.key && names_.same_value(x, y)) {
        uses_[use].offset = kRepeated;
        return use;
      }
    }
  }

  /// Frees the slots once every pair is in.
  void seal() { std::vector<std::uint32_t>().swap(slots_); }
  std::vector<Use>& uses() { return uses_; }
  const XattrRef& pair(const Use& u) const { return xattrs_[u.first]; }

 private:
  const std::vector<XattrRef>& xattrs_;
  const XattrNames& names_;
  std::vector<std::uint32_t> slots_;  // 0 = empty
  std::size_t mask_ = 0;
  std::uint32_t id_mask_ = 0;
  std::vector<Use> uses_;
};

Status compute_shared(Plan& p) {
  PairTable table(p.xattrs, p.names);
  // Each xattr's pair first, its shared-table offset below.
  p.xattr_shared.resize(p.xattrs.size());
  for (std::size_t i = 0; i < p.xattrs.size(); ++i)
    p.xattr_shared[i] = table.add(static_cast<std::uint32_t>(i));
  table.seal();
  auto& uses = table.uses();

  std::vector<std::uint32_t> shared;
  for (std::uint32_t i = 0; i < uses.size(); ++i)
    if (uses[i].offset == PairTable::kRepeated) shared.push_back(i);
  std::sort(shared.begin(), shared.end(), [&](std::uint32_t a, std::uint32_t b) {
    return shared_before(p.names, table.pair(uses[a]), table.pair(uses[b]));
  });
  std::uint64_t offset = 0;
  p.shared.reserve(shared.size());
  for (std::uint32_t i : shared) {
    const XattrRef& x = table.pair(uses[i]);
    // Entries are 4-byte aligned and referenced by 32-bit index (table start / 4 + offset / 4).
    if (offset / 4 >= kNotShared - kBlockSize / 4)
      return fail(Errc::kInvalidInput, "shared xattr table too large");
    uses[i].offset = static_cast<std::uint32_t>(offset / 4);
    p.shared.push_back(x);
    offset += xattr_entry_size(p.names.key(x), x.value_size());
  }
  p.shared_size = offset;

  for (PNode& n : p.nodes) {
    std::uint32_t n_shared = 0;
    std::uint64_t inline_bytes = 0;
    for (std::uint32_t i = n.xattr_begin; i < n.xattr_begin + n.xattr_count; ++i) {
      const std::uint32_t off = uses[p.xattr_shared[i]].offset;
      if (off != PairTable::kOnce && n_shared < kShareLimit) {
        p.xattr_shared[i] = off;
        ++n_shared;
      } else {
        p.xattr_shared[i] = kNotShared;
        inline_bytes += xattr_entry_size(p.names.key(p.xattrs[i]), p.xattrs[i].value_size());
      }
    }
    n.n_shared = static_cast<std::uint8_t>(n_shared);
    // Bounded by the 65535-byte value and 255-byte key limits times the xattr count; the
    // icount check in place() rejects anything that large.
    n.xattr_size = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(xattr_body_size(n_shared, inline_bytes), 0xFFFFFFFF));
  }
  return {};
}

// Greedy packing of the dirents into blocks; a final chunk over half a block becomes a block.
DataSplit dir_split(const Plan& p, const PNode& n) {
  DataSplit s;
  std::uint64_t block = 0;
  for (std::uint32_t i = n.dirent_begin; i < n.dirent_begin + n.dirent_count; ++i) {
    std::uint64_t len = sizeof(erofs::Dirent) + p.dirents[i].name_size;
    if (block + len > kBlockSize) {
      ++s.n_blocks;
      block = 0;
    }
    block += len;
  }
  if (block > kBlockSize / 2) {
    ++s.n_blocks;
    block = 0;
  }
  s.tail = static_cast<std::uint32_t>(block);
  return s;
}

bool fits_compact(const Plan& p, const PNode& n) {
  const Node& owner = p.source(n);
  if (owner.mtime_sec != p.min_sec || owner.mtime_nsec != p.min_nsec) return false;
  if (n.nlink > 0xFFFF || owner.uid > 0xFFFF || owner.gid > 0xFFFF) return false;
  std::uint64_t size =
      n.type() == S_IFDIR ? std::uint64_t{n.n_blocks} * kBlockSize + n.tail : n.size;
  return size <= 0xFFFFFFFF;
}

// Padding before an inode at slot-aligned `pos` so that its inline tail never crosses a block
// boundary; may move the tail out of line instead (n_blocks + 1, tail 0).
std::uint64_t tail_padding(PNode& n, std::uint64_t pos, std::uint64_t isize) {
  std::uint64_t head = isize + n.xattr_size;
  if (n.type() == S_IFLNK) {
    // The inode and its target stay in one block when they fit; otherwise the target moves
    // to a data block, but the inode is still aligned as if it had stayed (composefs quirk).
    std::uint64_t total = head + n.tail;
    if (total / kBlockSize > 0) {
      ++n.n_blocks;
      n.tail = 0;
    }
    if (pos / kBlockSize != (pos + total - 1) / kBlockSize) return round_up(pos, kBlockSize) - pos;
    return 0;
  }
  std::uint64_t remainder = kBlockSize - (pos + head) % kBlockSize;
  if (remainder >= n.tail) return 0;
  std::uint64_t pad = round_up(remainder, kSlotSize);
  remainder = kBlockSize - (pos + head + pad) % kBlockSize;
  if (n.tail <= remainder) return pad;
  ++n.n_blocks;
  n.tail = 0;
  return round_up(pos, kBlockSize) - pos;
}

}  // namespace

Status place(Plan& p) {
  CFS_TRY(compute_shared(p));

  std::uint64_t pos = kMetaStart;
  std::uint64_t n_data_blocks = 0;
  for (std::uint32_t i = 0; i < p.nodes.size(); ++i) {
    PNode& n = p.nodes[i];
    DataSplit split;
    switch (n.type()) {
      case S_IFDIR:
        split = dir_split(p, n);
        break;
      case S_IFLNK:
        split.tail = static_cast<std::uint32_t>(n.data().size());
        break;
      case S_IFREG:
        if (n.size == 0) break;
        if (n.external)
          split.tail = static_cast<std::uint32_t>(chunking(n.size).count * sizeof(std::uint32_t));
        else
          split = inline_data_split(n.size);
        break;
      default:
        break;
    }
    n.n_blocks = static_cast<std::uint32_t>(split.n_blocks);
    n.tail = split.tail;
    n.compact = fits_compact(p, n);
    std::uint64_t isize = n.compact ? sizeof(InodeCompact) : sizeof(InodeExtended);
    if (xattr_icount(n.xattr_size) > 0xFFFF)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: xattrs need {} bytes, more than an inode can hold", p.path_of(i),
                              n.xattr_size));

    std::uint64_t aligned = round_up(pos, kSlotSize);
    std::uint64_t extra = tail_padding(n, aligned, isize);
    n.ipad = static_cast<std::uint16_t>(aligned - pos + extra);
    pos = aligned + extra;
    if (pos / kSlotSize > 0xFFFFFFFF)
      return fail(Errc::kInvalidInput, "image too large: inode metadata beyond 128 GiB");
    n.nid = static_cast<std::uint32_t>(pos / kSlotSize);
    n_data_blocks += n.n_blocks;
    pos += isize + n.xattr_size + n.tail;
  }
  p.inodes_end = round_up(pos, kSlotSize);
  p.data_start = round_up(p.inodes_end + p.shared_size, kBlockSize);
  p.n_data_blocks = n_data_blocks;

  if (p.nodes[0].nid > 0xFFFF)
    return fail(Errc::kInvalidInput, "/: root xattrs too large: root nid must fit in 16 bits");
  if (p.data_start / kBlockSize + n_data_blocks > 0xFFFFFFFF)
    return fail(Errc::kInvalidInput, "image too large: more than 2^32 blocks");
  return {};
}

}  // namespace cfs::erofs::detail
