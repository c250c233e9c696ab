// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/merkle.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "cfs/util/atomic_file.h"
#include "cfs/util/le.h"
#include "cfs/util/sys.h"
#include "verity/block_hasher_internal.h"
#include "verity/leaves_internal.h"

namespace cfs::verity {
namespace {

// Allocates the tree and records where each level lives (top level first in memory).
void lay_out(MerkleTree& t) {
  const std::uint64_t bs = t.params.block_size;
  const std::vector<std::uint64_t> blocks =
      detail::level_blocks(t.data_blocks(), t.params.block_size, t.hash_size());
  std::uint64_t total = 0;
  for (std::uint64_t b : blocks) total += b;
  t.levels.assign(blocks.size(), {});
  std::uint64_t off = 0;
  for (std::size_t k = blocks.size(); k-- > 0;) {
    t.levels[k] = {off, blocks[k]};
    off += blocks[k] * bs;
  }
  t.tree.assign(static_cast<std::size_t>(total * bs), 0);
}

// Hashes level k-1 into level k for k >= 1 (level 0 filled by the caller), then sets the root
// hash and the file digest. With one data block, `leaf` holds its hash (the root).
void finish_tree(MerkleTree& t, const detail::BlockHasher& h, const std::uint8_t* leaf) {
  const std::size_t ds = t.hash_size();
  const std::uint64_t bs = t.params.block_size;
  t.root_hash = Digest::zero(t.params.alg);
  for (std::size_t k = 1; k < t.levels.size(); ++k) {
    const MerkleLevel& below = t.levels[k - 1];
    h.hash_blocks(t.tree.data() + below.offset, static_cast<std::size_t>(below.blocks),
                  t.tree.data() + t.levels[k].offset);
  }
  if (!t.levels.empty()) {
    h.hash_blocks(t.tree.data() + t.levels.back().offset, 1, t.root_hash.bytes.data());
  } else if (t.data_size > 0) {
    std::memcpy(t.root_hash.bytes.data(), leaf, ds);
  }
  (void)bs;
  t.digest = detail::descriptor_digest(t.params, t.data_size, t.root_hash.bytes.data());
}

std::uint8_t* leaf_out(MerkleTree& t, std::uint8_t* single) {
  return t.levels.empty() ? single : t.tree.data() + t.levels[0].offset;
}

}  // namespace

std::uint64_t MerkleTree::data_blocks() const noexcept {
  return (data_size + params.block_size - 1) / params.block_size;
}

std::span<const std::uint8_t> MerkleTree::leaf_hash(std::uint64_t index) const noexcept {
  if (index >= data_blocks()) return {};
  const std::size_t ds = hash_size();
  if (levels.empty()) return root_hash.view();
  return {tree.data() + levels[0].offset + index * ds, ds};
}

std::span<const std::uint8_t> MerkleTree::level_bytes(std::size_t k) const noexcept {
  if (k >= levels.size()) return {};
  return {tree.data() + levels[k].offset,
          static_cast<std::size_t>(levels[k].blocks * params.block_size)};
}

Result<MerkleTree> build_merkle_tree(int fd, const Params& p, const std::string& what,
                                     unsigned threads) {
  CFS_TRY(validate(p));
  CFS_ASSIGN(struct stat st, sys::fstat(fd, what));
  if (S_ISDIR(st.st_mode)) return fail_errno(what, EISDIR);
  if (!S_ISREG(st.st_mode) || st.st_size == 0) {
    // Size unknown in advance: read it all, then build from memory.
    CFS_ASSIGN(std::string all, sys::read_fd(fd, what));
    return build_merkle_tree(std::as_bytes(std::span(all.data(), all.size())), p, threads);
  }
  MerkleTree t;
  t.params = p;
  t.data_size = static_cast<std::uint64_t>(st.st_size);
  lay_out(t);
  const detail::BlockHasher h(p);
  std::uint8_t single[64] = {};
  if (t.data_size < (4u << 20)) threads = 1;
  CFS_TRY(detail::hash_leaves(h, fd, 0, t.data_size, leaf_out(t, single), threads, what));
  finish_tree(t, h, single);
  return t;
}

Result<MerkleTree> build_merkle_tree(std::span<const std::byte> data, const Params& p,
                                     unsigned threads) {
  CFS_TRY(validate(p));
  MerkleTree t;
  t.params = p;
  t.data_size = data.size();
  lay_out(t);
  const detail::BlockHasher h(p);
  std::uint8_t single[64] = {};
  detail::hash_leaves_mem(h, reinterpret_cast<const std::uint8_t*>(data.data()), data.size(),
                          leaf_out(t, single), threads);
  finish_tree(t, h, single);
  return t;
}

struct MerkleBuilder::Impl {
  MerkleTree t;
  detail::BlockHasher h;
  std::uint8_t single[64] = {};  // the one leaf hash of a file of at most one block
  std::uint8_t* leaves;          // level 0 (or `single`)
  std::uint64_t fed = 0;
  std::vector<std::uint8_t> partial;  // a data block not yet whole

  Impl(const Params& p, std::uint64_t size) : h(p) {
    t.params = p;
    t.data_size = size;
    lay_out(t);
    leaves = leaf_out(t, single);
  }
  std::uint8_t* leaf(std::uint64_t index) { return leaves + index * t.hash_size(); }
};

MerkleBuilder::MerkleBuilder(const Params& p, std::uint64_t data_size)
    : impl_(std::make_unique<Impl>(p, data_size)) {}
MerkleBuilder::~MerkleBuilder() = default;
MerkleBuilder::MerkleBuilder(MerkleBuilder&&) noexcept = default;
MerkleBuilder& MerkleBuilder::operator=(MerkleBuilder&&) noexcept = default;
std::uint64_t MerkleBuilder::size() const noexcept { return impl_->fed; }

Status MerkleBuilder::update(std::span<const std::byte> data) {
  Impl& m = *impl_;
  if (data.size() > m.t.data_size - m.fed)
    return fail(Errc::kInvalidInput,
                "Merkle tree: more than the " + std::to_string(m.t.data_size) + " bytes announced");
  const std::size_t bs = m.t.params.block_size;
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  std::size_t n = data.size();
  // Whole blocks are hashed where they lie, many at once; only a block split between two calls
  // is copied.
  if (!m.partial.empty()) {
    const std::size_t take = std::min(n, bs - m.partial.size());
    m.partial.insert(m.partial.end(), p, p + take);
    p += take;
    n -= take;
    m.fed += take;
    if (m.partial.size() < bs) return {};
    m.h.hash_blocks(m.partial.data(), 1, m.leaf(m.fed / bs - 1));
    m.partial.clear();
  }
  if (const std::size_t whole = n / bs; whole > 0) {
    m.h.hash_blocks(p, whole, m.leaf(m.fed / bs));
    p += whole * bs;
    n -= whole * bs;
    m.fed += whole * bs;
  }
  if (n > 0) {
    m.partial.reserve(bs);
    m.partial.assign(p, p + n);
    m.fed += n;
  }
  return {};
}

Result<MerkleTree> MerkleBuilder::finish() {
  Impl& m = *impl_;
  if (m.fed != m.t.data_size)
    return fail(Errc::kInvalidInput, "Merkle tree: " + std::to_string(m.fed) + " bytes of the " +
                                         std::to_string(m.t.data_size) + " announced");
  if (!m.partial.empty()) {
    m.h.hash_tail(m.partial.data(), m.partial.size(), m.leaf(m.fed / m.t.params.block_size));
    m.partial.clear();
  }
  finish_tree(m.t, m.h, m.single);
  return std::move(m.t);
}

bool verify_blocks(const MerkleTree& t, std::uint64_t first, std::span<const std::byte> data) {
  const std::uint64_t bs = t.params.block_size;
  const std::uint64_t nblocks = t.data_blocks();
  if (first >= nblocks || data.empty()) return false;
  // Exact extent: whole blocks, or ending precisely at EOF.
  const std::uint64_t start = first * bs;
  if (data.size() > t.data_size - start) return false;
  if (data.size() % bs != 0 && start + data.size() != t.data_size) return false;
  const std::size_t ds = t.hash_size();
  const detail::BlockHasher& h = detail::cached_hasher(t.params);
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  constexpr std::size_t kBatch = 64;
  std::uint8_t got[kBatch * 64];
  std::size_t full = data.size() / bs;
  std::uint64_t idx = first;
  int diff = 0;
  while (full > 0) {
    const std::size_t n = std::min(kBatch, full);
    h.hash_blocks(p, n, got);
    const std::span<const std::uint8_t> want = t.leaf_hash(idx);
    diff |= std::memcmp(got, want.data(), n * ds);  // leaf hashes of a level are contiguous
    p += n * bs;
    idx += n;
    full -= n;
  }
  if (const std::size_t rest = data.size() % bs; rest != 0) {
    h.hash_tail(p, rest, got);
    diff |= std::memcmp(got, t.leaf_hash(idx).data(), ds);
  }
  return diff == 0;
}

bool verify_block(const MerkleTree& t, std::uint64_t index, std::span<const std::byte> block) {
  const std::uint64_t bs = t.params.block_size;
  if (index >= t.data_blocks()) return false;
  const std::uint64_t expect = std::min<std::uint64_t>(bs, t.data_size - index * bs);
  if (block.size() != expect) return false;
  return verify_blocks(t, index, block);
}

Result<MerkleTree> adopt_merkle_tree(const Params& p, std::uint64_t data_size,
                                     std::vector<std::uint8_t> tree, const Digest& expected) {
  CFS_TRY(validate(p));
  MerkleTree t;
  t.params = p;
  t.data_size = data_size;
  lay_out(t);
  if (tree.size() != t.tree.size())
    return fail(Errc::kCorruptImage, "Merkle tree of " + std::to_string(tree.size()) +
                                         " bytes, expected " + std::to_string(t.tree.size()));
  if (t.data_blocks() == 1)
    return fail(Errc::kUnsupportedFeature,
                "a one-block file has no Merkle tree; its root hash is not recoverable");
  t.tree = std::move(tree);
  const detail::BlockHasher& h = detail::cached_hasher(p);
  const std::size_t ds = t.hash_size();
  // Each level must hash to the one above; the top must give the expected digest.
  std::vector<std::uint8_t> hashes;
  for (std::size_t k = 1; k < t.levels.size(); ++k) {
    const MerkleLevel& below = t.levels[k - 1];
    hashes.resize(static_cast<std::size_t>(below.blocks) * ds);
    h.hash_blocks(t.tree.data() + below.offset, static_cast<std::size_t>(below.blocks),
                  hashes.data());
    const std::span<const std::uint8_t> above = t.level_bytes(k);
    if (std::memcmp(hashes.data(), above.data(), hashes.size()) != 0 ||
        std::any_of(above.begin() + static_cast<std::ptrdiff_t>(hashes.size()), above.end(),
                    [](std::uint8_t b) { return b != 0; }))
      return fail(Errc::kDigestMismatch, "Merkle tree level " + std::to_string(k - 1) +
                                             " does not match level " + std::to_string(k));
  }
  std::uint8_t unused[64] = {};
  finish_tree(t, h, unused);
  if (!(t.digest == expected))
    return fail(Errc::kDigestMismatch,
                "Merkle tree gives digest " + t.digest.str() + ", expected " + expected.str());
  return t;
}

namespace {

struct CacheHeader {
  std::uint8_t magic[8];  // "CFSMTRE1"
  std::uint8_t hash_algorithm;
  std::uint8_t log_blocksize;
  std::uint8_t salt_size;
  std::uint8_t reserved0[5];
  le64 data_size;
  std::uint8_t salt[32];
  std::uint8_t digest[64];
};
static_assert(sizeof(CacheHeader) == 120);
constexpr std::uint8_t kMagic[8] = {'C', 'F', 'S', 'M', 'T', 'R', 'E', '1'};

}  // namespace

Status save_merkle_tree(const MerkleTree& t, const std::string& path) {
  CacheHeader hdr{};
  std::memcpy(hdr.magic, kMagic, sizeof kMagic);
  hdr.hash_algorithm = static_cast<std::uint8_t>(t.params.alg);
  hdr.log_blocksize = static_cast<std::uint8_t>(__builtin_ctz(t.params.block_size));
  hdr.salt_size = static_cast<std::uint8_t>(t.params.salt.size());
  hdr.data_size = t.data_size;
  if (!t.params.salt.empty()) std::memcpy(hdr.salt, t.params.salt.data(), t.params.salt.size());
  std::memcpy(hdr.digest, t.digest.bytes.data(), t.digest.size);
  CFS_ASSIGN(AtomicFile out, AtomicFile::create(path, 0644));
  CFS_TRY(sys::write_all(out.fd(), std::as_bytes(std::span(&hdr, 1))));
  CFS_TRY(sys::write_all(out.fd(), std::as_bytes(std::span(t.tree))));
  // A cache can be rebuilt, so it is not worth an fsync.
  return out.commit(false);
}

Result<MerkleTree> load_merkle_tree(const std::string& path, const Digest& expected) {
  CFS_ASSIGN(std::string raw, sys::read_file(path));
  CacheHeader hdr{};
  if (raw.size() < sizeof hdr) return fail(Errc::kCorruptImage, path + ": truncated tree cache");
  std::memcpy(&hdr, raw.data(), sizeof hdr);
  if (std::memcmp(hdr.magic, kMagic, sizeof kMagic) != 0)
    return fail(Errc::kCorruptImage, path + ": not a cfs Merkle tree cache");
  if (hdr.hash_algorithm != 1 && hdr.hash_algorithm != 2)
    return fail(Errc::kCorruptImage, path + ": bad hash algorithm");
  if (hdr.log_blocksize < 6 || hdr.log_blocksize > 20 || hdr.salt_size > 32)
    return fail(Errc::kCorruptImage, path + ": bad parameters");
  Params p;
  p.alg = static_cast<HashAlg>(hdr.hash_algorithm);
  p.block_size = 1u << hdr.log_blocksize;
  p.salt.assign(hdr.salt, hdr.salt + hdr.salt_size);
  if (p.alg != expected.alg)
    return fail(Errc::kDigestMismatch, path + ": cache is for another hash algorithm");
  // A size that cannot be real would make the layout computation allocate absurdly.
  const std::uint64_t data_size = hdr.data_size;
  const std::uint64_t tree_bytes = raw.size() - sizeof hdr;
  if (data_size > (1ull << 62) ||
      (data_size + p.block_size - 1) / p.block_size > tree_bytes / digest_size(p.alg) + 1)
    return fail(Errc::kCorruptImage, path + ": tree too small for the recorded size");
  std::vector<std::uint8_t> tree(raw.begin() + sizeof hdr, raw.end());
  CFS_ASSIGN_CTX(MerkleTree t, adopt_merkle_tree(p, data_size, std::move(tree), expected), path);
  return t;
}

}  // namespace cfs::verity
