// SPDX-License-Identifier: Apache-2.0
// SHA-256 through the AVX-512 or SHA-NI kernels when available, SHA-512 through its 8-lane
// AVX-512 kernel wherever the CPU has AVX-512 and no other engine is forced (sha512_x8_active);
// otherwise, and for the few blocks of a batch the 8-lane kernel leaves,
// OpenSSL EVP with the algorithm fetched once and a salted template context copied per block
// (re-initialising through EVP_DigestInit_ex(EVP_sha256()) per block takes a lock and stops
// scaling).
#include <openssl/evp.h>

#include <cstring>
#include <vector>

#include "verity/block_hasher_internal.h"

namespace cfs::verity::detail {
namespace {

const EVP_MD* fetched(HashAlg a) {
  static EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  return a == HashAlg::kSha512 ? sha512 : sha256;
}

struct CtxDeleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_MD_CTX, CtxDeleter>;

// One reusable context per thread for the portable path.
EVP_MD_CTX* thread_ctx() {
  thread_local CtxPtr ctx(EVP_MD_CTX_new());
  return ctx.get();
}

// OpenSSL failures here mean allocation failure inside OpenSSL; treat them like bad_alloc.
void check(int ok) {
  if (ok != 1) throw std::bad_alloc();
}

std::vector<std::uint8_t>& scratch(std::size_t n) {
  thread_local std::vector<std::uint8_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

}  // namespace

struct BlockHasher::Evp {
  CtxPtr tmpl{EVP_MD_CTX_new()};
};

BlockHasher::BlockHasher(const Params& p)
    : alg_(p.alg),
      bs_(p.block_size),
      dsize_(verity::digest_size(p.alg)),
      engine_(p.alg == HashAlg::kSha256 ? active_engine() : Engine::kPortable) {
  const std::size_t hblock = p.alg == HashAlg::kSha512 ? 128 : 64;
  std::uint8_t padded_salt[128] = {};
  if (!p.salt.empty()) std::memcpy(padded_salt, p.salt.data(), p.salt.size());
  const std::size_t prefix = p.salt.empty() ? 0 : hblock;
  if (engine_ != Engine::kPortable) {
    plan_ = make_sha256_plan(padded_salt, prefix, bs_);
    return;
  }
  x8_ = p.alg == HashAlg::kSha512 && sha512_x8_active();
  if (x8_) plan512_ = std::make_unique<Sha512Plan>(make_sha512_plan(padded_salt, prefix, bs_));
  evp_ = std::make_unique<Evp>();
  if (!evp_->tmpl) throw std::bad_alloc();
  check(EVP_DigestInit_ex2(evp_->tmpl.get(), fetched(alg_), nullptr));
  if (prefix != 0) check(EVP_DigestUpdate(evp_->tmpl.get(), padded_salt, prefix));
}

BlockHasher::~BlockHasher() = default;
BlockHasher::BlockHasher(BlockHasher&&) noexcept = default;
BlockHasher& BlockHasher::operator=(BlockHasher&&) noexcept = default;

void BlockHasher::hash_blocks(const std::uint8_t* in, std::size_t n, std::uint8_t* out) const {
  if (engine_ != Engine::kPortable) {
    sha256_many(plan_, in, bs_, n, out, engine_);
    return;
  }
  std::size_t i = 0;
  if (x8_) {
    constexpr std::size_t kBatch = 64;
    const std::uint8_t* msgs[kBatch];
    std::uint8_t* outs[kBatch];
    while (i < n) {
      const std::size_t m = n - i < kBatch ? n - i : kBatch;
      for (std::size_t j = 0; j < m; ++j) {
        msgs[j] = in + (i + j) * bs_;
        outs[j] = out + (i + j) * dsize_;
      }
      const std::size_t done = sha512_x8_gather(*plan512_, msgs, bs_, m, outs);
      i += done;
      if (done < m) break;  // the last few, below a pass's worth, go to OpenSSL
    }
  }
  EVP_MD_CTX* ctx = thread_ctx();
  for (; i < n; ++i) {
    unsigned len = 0;
    check(EVP_MD_CTX_copy_ex(ctx, evp_->tmpl.get()));
    check(EVP_DigestUpdate(ctx, in + i * bs_, bs_));
    check(EVP_DigestFinal_ex(ctx, out + i * dsize_, &len));
  }
}

void BlockHasher::hash_gather(const std::uint8_t* const* in, std::size_t n,
                              std::uint8_t* const* out) const {
  if (engine_ != Engine::kPortable) {
    sha256_gather(plan_, in, bs_, n, out, engine_);
    return;
  }
  const std::size_t done = x8_ ? sha512_x8_gather(*plan512_, in, bs_, n, out) : 0;
  for (std::size_t i = done; i < n; ++i) hash_blocks(in[i], 1, out[i]);
}

void BlockHasher::hash_tail(const std::uint8_t* in, std::size_t len, std::uint8_t* out) const {
  if (len == bs_) {
    hash_blocks(in, 1, out);
    return;
  }
  std::vector<std::uint8_t>& buf = scratch(bs_);
  std::memcpy(buf.data(), in, len);
  std::memset(buf.data() + len, 0, bs_ - len);
  hash_blocks(buf.data(), 1, out);
}

void hash_messages(HashAlg alg, const std::uint8_t* const* data, std::size_t len, std::size_t n,
                   std::uint8_t* const* out) {
  if (alg == HashAlg::kSha256 && len % 64 == 0 && active_engine() != Engine::kPortable) {
    // Descriptor-sized messages: the engine's kernel with a plan for this length.
    thread_local std::size_t plan_len = 0;
    thread_local Sha256Plan plan{};
    if (plan_len != len) {
      plan = make_sha256_plan(nullptr, 0, len);
      plan_len = len;
    }
    sha256_gather(plan, data, len, n, out, active_engine());
    return;
  }
  std::size_t i = 0;
  if (alg == HashAlg::kSha512 && len % 128 == 0 && sha512_x8_active()) {
    thread_local std::size_t plan_len = 0;
    thread_local Sha512Plan plan{};
    if (plan_len != len) {
      plan = make_sha512_plan(nullptr, 0, len);
      plan_len = len;
    }
    i = sha512_x8_gather(plan, data, len, n, out);
  }
  EVP_MD_CTX* ctx = thread_ctx();
  for (; i < n; ++i) {
    unsigned got = 0;
    check(EVP_DigestInit_ex2(ctx, fetched(alg), nullptr));
    check(EVP_DigestUpdate(ctx, data[i], len));
    check(EVP_DigestFinal_ex(ctx, out[i], &got));
  }
}

void hash_message(HashAlg alg, const std::uint8_t* data, std::size_t len, std::uint8_t* out) {
  hash_messages(alg, &data, len, 1, &out);
}

std::vector<std::uint64_t> level_blocks(std::uint64_t data_blocks, std::uint32_t block_size,
                                        std::size_t digest_size) {
  std::vector<std::uint64_t> out;
  const std::uint64_t per_block = block_size / digest_size;
  for (std::uint64_t n = data_blocks; n > 1;) {
    n = (n + per_block - 1) / per_block;
    out.push_back(n);
  }
  return out;
}

}  // namespace cfs::verity::detail
