// SPDX-License-Identifier: Apache-2.0
#include "cfs/store/fanout_dirs.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"

namespace cfs::store {
namespace {

// Digits of the key: bytes 1-8 of a digest, the first 16 hex digits of a name in its fan-out
// directory.
constexpr std::size_t kKeyDigits = 16;

std::uint64_t key_of(const verity::Digest& digest) {
  std::uint64_t k = 0;
  for (std::size_t i = 1; i <= kKeyDigits / 2; ++i) k = (k << 8) | digest.bytes[i];
  return k;
}

// The key of a name in a fan-out directory; nullopt for names no object has (temps, "."):
// object names are lowercase hex (cfs/tree/object_name.h), so nothing else can be one.
std::optional<std::uint64_t> key_of(std::string_view name) {
  if (name.size() < kKeyDigits) return std::nullopt;
  std::uint64_t k = 0;
  for (std::size_t i = 0; i < kKeyDigits; ++i) {
    const char c = name[i];
    unsigned v;
    if (c >= '0' && c <= '9')
      v = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = static_cast<unsigned>(c - 'a' + 10);
    else
      return std::nullopt;
    k = (k << 4) | v;
  }
  return k;
}

char hex_digit(unsigned v) { return static_cast<char>(v < 10 ? '0' + v : 'a' + (v - 10)); }

// A set of 64-bit keys in one array (open addressing, linear probing, at most half full): 16
// bytes per key, where std::unordered_set took about 40 and a malloc per key. The keys are
// digest bytes, so their low bits are already uniform.
class KeySet {
 public:
  // True if `key` was not in the set (it is now).
  bool insert(std::uint64_t key) {
    if (key == 0) return !std::exchange(has_zero_, true);
    if (2 * (count_ + 1) > slots_.size()) grow();
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = key & mask;; i = (i + 1) & mask) {
      if (slots_[i] == key) return false;
      if (slots_[i] == 0) {
        slots_[i] = key;
        ++count_;
        return true;
      }
    }
  }

 private:
  void grow() {
    std::vector<std::uint64_t> old(std::max<std::size_t>(64, 2 * slots_.size()), 0);
    old.swap(slots_);
    count_ = 0;
    for (std::uint64_t k : old)
      if (k != 0) insert(k);
  }

  std::vector<std::uint64_t> slots_;
  std::size_t count_ = 0;
  bool has_zero_ = false;
};

}  // namespace

// Directories larger than this are never listed (every probe there answers "may exist", as
// without the index): ~3,600 object names of SHA-256 per 256 KiB of ext4 directory, ~900k objects
// in a store, where listing 256 of them would cost more time and memory (16 bytes a name) than
// the lookups of a typical add saves.
constexpr off_t kListMaxBytes = 256 * 1024;

struct FanoutDirs::Dir {
  enum class Index { kNotListed, kListed, kTooLarge };
  std::mutex mu;
  UniqueFd fd;  // open once set
  Index index = Index::kNotListed;
  // Keys of the names listed and of every digest probed since: both mean "may exist".
  KeySet keys;
};

FanoutDirs::FanoutDirs(int root_fd, std::string what) : root_fd_(root_fd), what_(std::move(what)) {
  for (auto& d : dirs_) d = std::make_unique<Dir>();
}

FanoutDirs::~FanoutDirs() = default;

Result<FanoutDirs::Dir*> FanoutDirs::open_dir(std::size_t index, bool list) {
  Dir& dir = *dirs_[index];
  const std::string name{hex_digit(static_cast<unsigned>(index >> 4)),
                         hex_digit(static_cast<unsigned>(index & 15))};
  if (!dir.fd) {
    // A directory this process makes is empty: nothing to list.
    auto mk = sys::mkdirat(root_fd_, name, 0755);
    if (mk)
      dir.index = Dir::Index::kListed;
    else if (!mk.error().is_errno(EEXIST))
      return fail(std::move(mk).error().with_context(what_));
    auto fd = sys::openat(root_fd_, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!fd) return fail(std::move(fd).error().with_context(what_));
    dir.fd = std::move(*fd);
  }
  if (list && dir.index == Dir::Index::kNotListed) {
    // One that was there is listed once (one getdents pass instead of a lookup per object
    // added to it), unless it is large.
    CFS_ASSIGN(struct stat st, sys::fstat(dir.fd.get(), what_ + "/" + name));
    if (st.st_size > kListMaxBytes) {
      dir.index = Dir::Index::kTooLarge;
    } else {
      CFS_ASSIGN(auto entries, sys::list_dir(dir.fd.get(), what_ + "/" + name));
      for (const auto& [entry, type] : entries)
        if (auto k = key_of(entry)) dir.keys.insert(*k);
      dir.index = Dir::Index::kListed;
    }
  }
  return &dir;
}

Result<FanoutDirs::Probe> FanoutDirs::probe(const verity::Digest& digest) {
  const std::size_t index = digest.bytes[0];
  std::lock_guard lock(dirs_[index]->mu);
  CFS_ASSIGN(Dir * dir, open_dir(index, true));
  Probe p;
  p.dirfd = dir->fd.get();
  p.known_absent = dir->index == Dir::Index::kListed && dir->keys.insert(key_of(digest));
  return p;
}

Result<int> FanoutDirs::dir(const verity::Digest& digest) {
  const std::size_t index = digest.bytes[0];
  std::lock_guard lock(dirs_[index]->mu);
  CFS_ASSIGN(Dir * dir, open_dir(index, false));
  return dir->fd.get();
}

}  // namespace cfs::store
