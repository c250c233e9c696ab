// SPDX-License-Identifier: Apache-2.0
// Hashes whole Merkle blocks (data or tree) for one parameter set, with the salt prefix folded
// into a precomputed start state. The one primitive the digest, tree and verify code use.
// Thread-safety: const methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cfs/verity/digest.h"
#include "cfs/verity/engine.h"
#include "verity/sha256_internal.h"
#include "verity/sha512_internal.h"

namespace cfs::verity::detail {

class BlockHasher {
 public:
  /// p must have passed validate().
  explicit BlockHasher(const Params& p);
  ~BlockHasher();
  BlockHasher(BlockHasher&&) noexcept;
  BlockHasher& operator=(BlockHasher&&) noexcept;

  std::size_t digest_size() const noexcept { return dsize_; }
  std::uint32_t block_size() const noexcept { return bs_; }
  /// The engine in use for SHA-256 (kPortable: OpenSSL). SHA-512 always says kPortable: its
  /// AVX-512 kernel leaves a few blocks of a batch to OpenSSL, which mapped reads must avoid.
  Engine engine() const noexcept { return engine_; }
  /// True when SHA-512 blocks go through the 8-lane AVX-512 kernel (sha512_avx512.cc).
  bool sha512_x8() const noexcept { return x8_; }

  /// Hashes n whole blocks at `in` (n * block_size bytes) into n consecutive digests at `out`.
  void hash_blocks(const std::uint8_t* in, std::size_t n, std::uint8_t* out) const;
  /// Hashes several whole blocks at arbitrary addresses.
  void hash_gather(const std::uint8_t* const* in, std::size_t n, std::uint8_t* const* out) const;
  /// Hash of one block given by its first `len` <= block_size bytes, the rest taken as zero.
  void hash_tail(const std::uint8_t* in, std::size_t len, std::uint8_t* out) const;

 private:
  struct Evp;
  HashAlg alg_;
  std::uint32_t bs_;
  std::size_t dsize_;
  Engine engine_;
  bool x8_ = false;
  Sha256Plan plan_{};
  std::unique_ptr<Sha512Plan> plan512_;  // with x8_
  std::unique_ptr<Evp> evp_;             // portable path (SHA-512's leftovers too)
};

/// Unsalted hash of a short message (the descriptor).
void hash_message(HashAlg alg, const std::uint8_t* data, std::size_t len, std::uint8_t* out);
/// Same for n messages of equal length, interleaved where the engine can.
void hash_messages(HashAlg alg, const std::uint8_t* const* data, std::size_t len, std::size_t n,
                   std::uint8_t* const* out);

/// The fs-verity file digest: hash of the 256-byte descriptor.
Digest descriptor_digest(const Params& p, std::uint64_t data_size, const std::uint8_t* root_hash);

/// Number of levels and blocks per level (level 0 first) for n data blocks.
std::vector<std::uint64_t> level_blocks(std::uint64_t data_blocks, std::uint32_t block_size,
                                        std::size_t digest_size);

}  // namespace cfs::verity::detail
