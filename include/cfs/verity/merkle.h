// SPDX-License-Identifier: Apache-2.0
// Whole fs-verity Merkle trees in memory: build one for a file or buffer, verify data blocks
// against it (the userspace mount checks every block it serves), persist it in a cache file.
//
// Layout of MerkleTree::tree is the kernel's (what FS_IOC_READ_VERITY_METADATA returns and
// `fsverity digest --out-merkle-tree` writes): the TOP level first, level 0 (the hashes of the
// data blocks) LAST; every level is whole blocks, the last block of a level zero-padded. A file
// of at most one block has an empty tree (its root hash is the hash of its only block), an
// empty file an empty tree and an all-zero root hash.
//
// Thread-safety: a MerkleTree is an immutable value once built; verify_* may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::verity {

/// One level of a tree: `blocks` blocks starting at byte `offset` of MerkleTree::tree.
struct MerkleLevel {
  std::uint64_t offset = 0;
  std::uint64_t blocks = 0;
};

struct MerkleTree {
  Params params;
  std::uint64_t data_size = 0;
  /// Kernel order: top level first, level 0 last (see the file comment).
  std::vector<std::uint8_t> tree;
  /// levels[0] = leaf hashes (hashes of data blocks), levels.back() = the single top block.
  /// Empty when the file has at most one data block.
  std::vector<MerkleLevel> levels;
  /// Hash of the top block (first digest_size bytes meaningful), zero for an empty file.
  Digest root_hash;
  /// The fs-verity file digest (hash of the descriptor): what identifies the file.
  Digest digest;

  std::size_t hash_size() const noexcept { return digest_size(params.alg); }
  /// The 256-byte fsverity_descriptor whose hash is `digest`.
  Descriptor descriptor() const { return make_descriptor(params, data_size, root_hash.view()); }
  /// ceil(data_size / block_size).
  std::uint64_t data_blocks() const noexcept;
  /// Expected hash of data block `index` (the root hash for a one-block file); empty span when
  /// index >= data_blocks().
  std::span<const std::uint8_t> leaf_hash(std::uint64_t index) const noexcept;
  /// Bytes of level k (k = 0 leaf hashes), whole blocks.
  std::span<const std::uint8_t> level_bytes(std::size_t k) const noexcept;
};

/// Builds the tree of an open file from offset 0 to EOF (pread; the fd offset is unchanged).
/// Leaves are hashed on `threads` threads (0 = all CPUs). `what` names the file in errors.
Result<MerkleTree> build_merkle_tree(int fd, const Params& p, const std::string& what,
                                     unsigned threads = 0);
Result<MerkleTree> build_merkle_tree(std::span<const std::byte> data, const Params& p,
                                     unsigned threads = 1);

/// Builds the tree of a file of `data_size` bytes from its bytes as they come, in order (update()
/// any number of times), for a writer that would otherwise read back what it wrote to build it:
/// a fetched object hashed while it is received is served with this tree (see vfs/tree_cache.h).
/// Memory: the whole tree (data_size / block_size hashes), as build_merkle_tree. `p` must have
/// passed validate().
class MerkleBuilder {
 public:
  MerkleBuilder(const Params& p, std::uint64_t data_size);
  ~MerkleBuilder();
  MerkleBuilder(MerkleBuilder&&) noexcept;
  MerkleBuilder& operator=(MerkleBuilder&&) noexcept;
  /// The next bytes; Errc::kInvalidInput (nothing hashed) when they go past data_size.
  Status update(std::span<const std::byte> data);
  /// Bytes fed so far.
  std::uint64_t size() const noexcept;
  /// The tree; Errc::kInvalidInput when fewer than data_size bytes were fed.
  Result<MerkleTree> finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// True when `block` is data block `index` of the file the tree describes. `block` must be
/// exactly that block: block_size bytes, or the tail up to EOF for the last block.
bool verify_block(const MerkleTree& t, std::uint64_t index, std::span<const std::byte> block);
/// Same for consecutive blocks starting at block `first` (several blocks hashed at once):
/// `data` holds whole blocks except that it may end at EOF. False if any block mismatches.
bool verify_blocks(const MerkleTree& t, std::uint64_t first, std::span<const std::byte> data);

/// Adopts tree bytes from elsewhere (a cache file, FS_IOC_READ_VERITY_METADATA) after checking
/// that they are complete and consistent: every level hashes to the level above, the root and
/// data_size give `expected` (Errc::kDigestMismatch otherwise; kCorruptImage for a wrong size).
Result<MerkleTree> adopt_merkle_tree(const Params& p, std::uint64_t data_size,
                                     std::vector<std::uint8_t> tree, const Digest& expected);

/// Cache file: a small header (magic, params, data size, digest) then the tree bytes, written
/// atomically (temp + rename). load_merkle_tree() re-verifies the whole tree against `expected`
/// (cost ~1/127 of hashing the data), so a stale or tampered cache is rejected, never trusted.
Status save_merkle_tree(const MerkleTree& t, const std::string& path);
Result<MerkleTree> load_merkle_tree(const std::string& path, const Digest& expected);

}  // namespace cfs::verity
