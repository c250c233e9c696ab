// SPDX-License-Identifier: Apache-2.0
// fs-verity file digests, bit-exact with the Linux kernel and fsverity-utils: SHA-256/SHA-512,
// Merkle block sizes 1024..65536, salts up to 32 bytes, the 256-byte fsverity_descriptor.
// Thread-safety: Hasher is single-threaded; the free functions are thread-safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"

namespace cfs::verity {

enum class HashAlg : std::uint8_t { kSha256 = 1, kSha512 = 2 };  // FS_VERITY_HASH_ALG_*

struct Params {
  HashAlg alg = HashAlg::kSha256;
  std::uint32_t block_size = 4096;
  std::vector<std::uint8_t> salt;  ///< 0..32 bytes
};

/// Checks the parameters as fsverity-utils does for userspace digests: SHA-256 or SHA-512, the
/// block size a power of two from 2 * digest size up to kMaxBlockSize, salt <= 32 bytes.
/// Returns Errc::kUnsupportedFeature / kInvalidInput naming the offending field.
Status validate(const Params& p);
/// validate() plus what the kernel accepts for FS_IOC_ENABLE_VERITY: block size 1024..65536
/// (the kernel further limits it to the page size and the filesystem block size).
Status validate_for_kernel(const Params& p);

/// Largest Merkle block size cfs computes in userspace (libfsverity has no limit; the kernel's
/// is 65536). Bounds the memory of one pending block per tree level.
inline constexpr std::uint32_t kMaxBlockSize = 1u << 20;
inline constexpr std::size_t kMaxSaltSize = 32;

/// Digest size in bytes: 32 (SHA-256) or 64 (SHA-512).
constexpr std::size_t digest_size(HashAlg a) noexcept { return a == HashAlg::kSha512 ? 64 : 32; }
/// "sha256" / "sha512", the names fsverity-utils prints and parses.
const char* hash_alg_name(HashAlg a) noexcept;
/// Parses "sha256" / "sha512"; Errc::kUnsupportedFeature otherwise.
Result<HashAlg> parse_hash_alg(std::string_view name);

/// An fs-verity file digest: the algorithm and its bytes (32 for SHA-256, 64 for SHA-512).
/// The one digest type of cfs (images, trees, stores, mounts). Its object name ("ab/cdef…")
/// comes from cfs/tree/object_name.h. Small (66 bytes) so trees can hold one per file.
struct Digest {
  HashAlg alg = HashAlg::kSha256;
  std::uint8_t size = 0;  ///< digest_size(alg), or 0 for a default-constructed value
  std::array<std::uint8_t, 64> bytes{};

  /// An all-zero digest of `a` (size set), to be filled in.
  static Digest zero(HashAlg a) noexcept {
    Digest d;
    d.alg = a;
    d.size = static_cast<std::uint8_t>(digest_size(a));
    return d;
  }
  std::span<const std::uint8_t> view() const noexcept { return {bytes.data(), size}; }
  /// Lowercase hex of the bytes.
  std::string hex() const;
  /// "sha256:<hex>", the form `fsverity digest` prints.
  std::string str() const;
  friend bool operator==(const Digest& a, const Digest& b) noexcept {
    return a.alg == b.alg && a.size == b.size &&
           std::equal(a.view().begin(), a.view().end(), b.view().begin());
  }
  /// Algorithm first, then bytes (for sorting and ordered containers).
  friend bool operator<(const Digest& a, const Digest& b) noexcept {
    if (a.alg != b.alg) return a.alg < b.alg;
    return std::lexicographical_compare(a.view().begin(), a.view().end(), b.view().begin(),
                                        b.view().end());
  }
};

/// The 256-byte `struct fsverity_descriptor` whose hash is the file digest: what the kernel
/// returns for FS_VERITY_METADATA_TYPE_DESCRIPTOR and `fsverity digest --out-descriptor`
/// writes (sig_size zero). `root_hash` holds digest_size(p.alg) bytes (all zero for an empty
/// file); p must have passed validate().
using Descriptor = std::array<std::uint8_t, 256>;
Descriptor make_descriptor(const Params& p, std::uint64_t data_size,
                           std::span<const std::uint8_t> root_hash);

/// The message built-in signatures sign: "FSVerity", le16 algorithm, le16 digest size, digest
/// (44 bytes for SHA-256, 76 for SHA-512); `fsverity digest --for-builtin-sig` prints its hex.
std::vector<std::uint8_t> formatted_digest(const Digest& d);

/// Streaming fs-verity digest with bounded memory (one pending block per tree level).
class Hasher {
 public:
  explicit Hasher(const Params& p = {});
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  void update(std::span<const std::byte> data);
  /// Total bytes fed so far.
  std::uint64_t size() const noexcept;
  /// Finishes and returns the file digest (the hash of the descriptor, not the root hash).
  Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  // Feeds leaf hashes computed on several threads into the upper levels.
  friend Result<std::optional<Digest>> digest_fd_up_to(int fd, const Params& p,
                                                       std::uint64_t max_size,
                                                       const std::string& what, unsigned threads);
};

/// Digest of an in-memory buffer.
Digest digest_bytes(std::span<const std::byte> data, const Params& p = {});

/// Most inputs one digest_small_many() call takes.
inline constexpr std::size_t kSmallBatchMax = 16;

/// Largest input digest_small_many() takes: one tree block of leaf hashes' worth of data, so
/// the tree has at most two levels (512 KiB for SHA-256 with 4 KiB blocks).
std::size_t small_many_max(const Params& p) noexcept;

/// out[i] = digest_bytes(inputs[i], p) for up to kSmallBatchMax inputs of at most
/// small_many_max(p) bytes each (e.g. the files of a directory), every tree level hashed for
/// all inputs at once, interleaved: one small input alone leaves the SHA units mostly idle.
/// Throws std::invalid_argument on more inputs or a larger one.
void digest_small_many(std::span<const std::span<const std::byte>> inputs, const Params& p,
                       std::span<Digest> out);

/// Reads a file of at most one block whole, from offset 0, into `buf` (block_size + 1 bytes or
/// more): its size, or nullopt when it holds more, or cannot be read with pread (pipes), so a
/// caller can collect small files for digest_small_many() and pass the rest to digest_fd().
/// Costs two preads (the second proves EOF) and no fstat.
Result<std::optional<std::size_t>> read_one_block(int fd, const Params& p, std::span<std::byte> buf,
                                                  const std::string& what);

/// Digest of an open file from offset 0 to EOF. Large files are split over `threads` threads
/// (0 = all available CPUs). I/O errors are returned with `what` as context.
Result<Digest> digest_fd(int fd, const Params& p, const std::string& what, unsigned threads = 0);
/// Same, except that a regular file larger than `max_size` bytes (and than one block) is left
/// alone: nullopt, nothing hashed, so a caller digesting many files can schedule the big ones
/// differently. A file of at most one block costs two preads (the second confirms EOF) and no
/// fstat.
Result<std::optional<Digest>> digest_fd_up_to(int fd, const Params& p, std::uint64_t max_size,
                                              const std::string& what, unsigned threads = 0);
Result<Digest> digest_file(const std::string& path, const Params& p = {}, unsigned threads = 0);

}  // namespace cfs::verity
