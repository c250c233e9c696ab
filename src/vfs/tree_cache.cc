// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/tree_cache.h"

#include <utility>

#include "cfs/util/sys.h"

namespace cfs::vfs {
namespace {

std::string key_of(const verity::Digest& d) {
  return (d.alg == verity::HashAlg::kSha512 ? "sha512-" : "sha256-") + d.hex();
}

// Files up to this size are hashed on the calling thread: spawning workers costs more than
// it saves, and FUSE already runs several requests in parallel.
constexpr std::uint64_t kParallelBuildMin = 8u << 20;
constexpr std::uint64_t kPersistMin = 1u << 20;

// What one cached tree costs beyond its vectors: the key twice (map and LRU list, ~71-char
// strings on the heap), a map node, a list node and the shared_ptr control block. Counting it
// keeps the budget honest for the many small files whose trees are empty.
constexpr std::size_t kEntryOverhead = 320;

std::size_t charge(const verity::MerkleTree& t) {
  return sizeof t + t.tree.capacity() + t.levels.capacity() * sizeof(verity::MerkleLevel) +
         kEntryOverhead;
}

}  // namespace

std::shared_ptr<const verity::MerkleTree> TreeCache::find(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.tree;
}

void TreeCache::insert(const std::string& key, std::shared_ptr<const verity::MerkleTree> t) {
  std::lock_guard lock(mu_);
  if (map_.count(key)) return;
  const std::size_t size = charge(*t);
  if (size > budget_) return;
  lru_.push_front(key);
  map_.emplace(key, Slot{std::move(t), lru_.begin(), size});
  bytes_ += size;
  while (bytes_ > budget_ && !lru_.empty()) {
    auto victim = map_.find(lru_.back());
    bytes_ -= victim->second.charge;
    map_.erase(victim);
    lru_.pop_back();
  }
}

std::size_t TreeCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t TreeCache::entries() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

Result<std::shared_ptr<const verity::MerkleTree>> TreeCache::get(
    const verity::Digest& expected, int fd, std::uint64_t size, const std::string& what,
    const std::function<Prebuilt()>& prebuilt, ContentCopy* copy) {
  if (copy) {
    copy->size = 0;
    copy->given.reset();
  }
  std::string key = key_of(expected);
  if (auto t = find(key)) return t;
  // Its digest is computed from its own levels (finish_tree), so a tree that gives `expected`
  // may be stored under it like one built here; one that does not is ignored, not trusted, and
  // so are the bytes that came with it.
  if (Prebuilt p = prebuilt ? prebuilt() : Prebuilt{};
      p.tree && p.tree->digest == expected && p.tree->data_size == size) {
    if (!dir_.empty() && size >= kPersistMin)
      (void)verity::save_merkle_tree(*p.tree, dir_ + "/" + key + ".tree");
    insert(key, p.tree);
    // Bytes of another length were not all hashed into this tree (or not only): not a copy.
    if (copy && p.bytes && p.bytes->size() == size) {
      copy->given = std::move(p.bytes);
      copy->size = static_cast<std::size_t>(size);
    }
    return p.tree;
  }
  verity::Params params;
  params.alg = expected.alg;
  if (!dir_.empty() && size >= kPersistMin) {
    auto loaded = verity::load_merkle_tree(dir_ + "/" + key + ".tree", expected);
    if (loaded) {
      auto t = std::make_shared<const verity::MerkleTree>(std::move(*loaded));
      insert(key, t);
      return t;
    }
  }
  verity::MerkleTree built;
  if (copy) {
    // Exactly `size` bytes: a file that grew is hashed as the content the image names (or
    // fails), one that shrank gives another digest.
    auto bytes = copy->bytes.get(static_cast<std::size_t>(size));
    CFS_ASSIGN_CTX(std::size_t n, sys::pread_full(fd, bytes, 0), what);
    CFS_ASSIGN(built, verity::build_merkle_tree(bytes.first(n), params,
                                                size >= kParallelBuildMin ? 0 : 1));
    if (!(built.digest == expected) || n != size) copy = nullptr;  // nothing verified
  } else {
    CFS_ASSIGN(built,
               verity::build_merkle_tree(fd, params, what, size >= kParallelBuildMin ? 0 : 1));
  }
  if (!(built.digest == expected))
    return fail(Errc::kDigestMismatch, what + ": fs-verity digest " + built.digest.hex() +
                                           " differs from the image's " + expected.hex());
  if (copy) copy->size = static_cast<std::size_t>(size);
  auto t = std::make_shared<const verity::MerkleTree>(std::move(built));
  // Small trees are cheaper to rebuild than to load; persist only those worth it.
  if (!dir_.empty() && size >= kPersistMin)
    (void)verity::save_merkle_tree(*t, dir_ + "/" + key + ".tree");
  insert(key, t);
  return t;
}

}  // namespace cfs::vfs
