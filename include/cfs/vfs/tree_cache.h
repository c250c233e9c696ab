// SPDX-License-Identifier: Apache-2.0
// Merkle trees of objects, keyed by the fs-verity digest they were verified against. A tree
// is only ever stored under the digest it hashes to, so a hit is as good as rebuilding it:
// what it vouches for is the content the image names, whatever file it was built from.
// Recently used trees stay in memory up to a byte budget; trees in use by open files are
// shared_ptr-owned and survive eviction. Optionally trees persist in a directory and are
// re-verified against the digest when loaded (verity::load_merkle_tree).
// Thread-safety: all methods are thread-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/huge_pages.h"
#include "cfs/util/result.h"
#include "cfs/verity/merkle.h"

namespace cfs::vfs {

/// The whole content of an object, verified: read into memory once to build its tree (when the
/// tree gives the expected digest, these very bytes are verified), or handed over with a tree
/// built elsewhere from them (Prebuilt::bytes). TreeCache::get's `copy`.
struct ContentCopy {
  AlignedBuffer bytes;
  std::size_t size = 0;  ///< bytes held; 0 when no copy was made
  /// Set when the copy is a Prebuilt's bytes instead of `bytes` (shared, not copied).
  std::shared_ptr<const HugeBytes> given;
  /// The `size` verified bytes.
  std::span<const std::byte> data() const { return {given ? given->data() : bytes.data(), size}; }
};

/// A Merkle tree built outside the cache from the bytes of an object (ObjectProvider::take_tree:
/// a fetch hashes what it receives to verify it), and, when the builder kept them, those very
/// bytes, all `tree->data_size` of them. Either may be null.
struct Prebuilt {
  std::shared_ptr<const verity::MerkleTree> tree;
  std::shared_ptr<const HugeBytes> bytes;
};

class TreeCache {
 public:
  TreeCache(std::size_t budget_bytes, std::string dir)
      : budget_(budget_bytes), dir_(std::move(dir)) {}

  /// The tree for `expected`, built from `fd` on a miss. Errc::kDigestMismatch when the file's
  /// fs-verity digest differs from `expected`; I/O errors as returned by the build. On a miss,
  /// `prebuilt` (when set) is asked first: a tree it gives for `expected` and `size` is used
  /// instead of reading `fd` (ObjectProvider::take_tree: built from the bytes a fetch stored);
  /// one that does not is ignored, its bytes with it.
  /// `copy` (when set): a tree built here is built from the file read whole into `copy`, which
  /// then holds `size` verified bytes; an adopted prebuilt tree's bytes, when there are exactly
  /// `size` of them, become the copy as they are (ContentCopy::given: they were hashed into that
  /// tree, whose digest is `expected`). It stays empty (size 0) on a hit, for a persisted tree or
  /// a prebuilt one without bytes, and on any error. Bytes are read (or received) once either
  /// way; the copy lets the caller serve them without reading and hashing them a second time.
  Result<std::shared_ptr<const verity::MerkleTree>> get(
      const verity::Digest& expected, int fd, std::uint64_t size, const std::string& what,
      const std::function<Prebuilt()>& prebuilt = {}, ContentCopy* copy = nullptr);

  /// Memory charged to the budget (trees plus per-entry bookkeeping), at most the budget.
  std::size_t bytes() const;
  /// Trees held.
  std::size_t entries() const;

 private:
  struct Slot {
    std::shared_ptr<const verity::MerkleTree> tree;
    std::list<std::string>::iterator lru;
    std::size_t charge = 0;  ///< what it counts against the budget
  };
  std::shared_ptr<const verity::MerkleTree> find(const std::string& key);
  void insert(const std::string& key, std::shared_ptr<const verity::MerkleTree> t);

  mutable std::mutex mu_;
  std::size_t budget_;
  std::size_t bytes_ = 0;
  std::string dir_;
  std::list<std::string> lru_;  ///< front = most recent
  std::unordered_map<std::string, Slot> map_;
};

}  // namespace cfs::vfs
