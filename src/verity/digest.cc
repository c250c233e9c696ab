// SPDX-License-Identifier: Apache-2.0
// Portable fs-verity implementation over OpenSSL EVP (the reference path; faster engines must
// match it bit for bit).
#include "cfs/verity/digest.h"

#include <fcntl.h>

#include <cstring>

#include <openssl/evp.h>

#include "cfs/util/hex.h"
#include "cfs/util/le.h"
#include "cfs/util/sys.h"

namespace cfs::verity {
namespace {

struct Descriptor {
  std::uint8_t version;
  std::uint8_t hash_algorithm;
  std::uint8_t log_blocksize;
  std::uint8_t salt_size;
  le32 sig_size;
  le64 data_size;
  std::uint8_t root_hash[64];
  std::uint8_t salt[32];
  std::uint8_t reserved[144];
};
static_assert(sizeof(Descriptor) == 256);

std::size_t digest_size(HashAlg a) { return a == HashAlg::kSha512 ? 64 : 32; }
const EVP_MD* evp(HashAlg a) { return a == HashAlg::kSha512 ? EVP_sha512() : EVP_sha256(); }

void hash_once(HashAlg a, std::span<const std::uint8_t> prefix, std::span<const std::uint8_t> data,
               std::uint8_t* out) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, evp(a), nullptr);
  if (!prefix.empty()) EVP_DigestUpdate(ctx, prefix.data(), prefix.size());
  EVP_DigestUpdate(ctx, data.data(), data.size());
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
}

}  // namespace

std::string Digest::hex() const { return to_hex(view()); }

Status validate(const Params& p) {
  if (p.alg != HashAlg::kSha256 && p.alg != HashAlg::kSha512)
    return fail(Errc::kUnsupportedFeature, "hash algorithm");
  if (p.block_size < 1024 || p.block_size > 65536 || (p.block_size & (p.block_size - 1)) != 0)
    return fail(Errc::kUnsupportedFeature,
                "block size " + std::to_string(p.block_size) +
                    " (must be a power of two from 1024 to 65536)");
  if (p.salt.size() > 32)
    return fail(Errc::kInvalidInput,
                "salt of " + std::to_string(p.salt.size()) + " bytes (at most 32)");
  return {};
}

struct Hasher::Impl {
  Params params;
  std::size_t dsize;
  std::vector<std::uint8_t> padded_salt;  // empty when no salt
  // levels[k] accumulates hashes of level k-1 blocks (level 0 = data block buffer).
  std::vector<std::vector<std::uint8_t>> pending;
  std::uint64_t total = 0;

  explicit Impl(const Params& p) : params(p), dsize(digest_size(p.alg)) {
    if (!p.salt.empty()) {
      padded_salt.assign(p.alg == HashAlg::kSha512 ? 128 : 64, 0);
      std::memcpy(padded_salt.data(), p.salt.data(), p.salt.size());
    }
    pending.emplace_back();
  }

  void hash_block(std::span<const std::uint8_t> block, std::uint8_t* out) const {
    hash_once(params.alg, padded_salt, block, out);
  }

  // Adds a digest to level `lvl` (1-based in pending); flushes full blocks upward.
  void push(std::size_t lvl, const std::uint8_t* d) {
    if (pending.size() <= lvl) pending.emplace_back();
    auto& buf = pending[lvl];
    buf.insert(buf.end(), d, d + dsize);
    if (buf.size() == params.block_size) {
      std::uint8_t h[64];
      hash_block(buf, h);
      buf.clear();
      push(lvl + 1, h);
      ++flushed_upto(lvl);
    }
  }
  std::vector<std::uint64_t> flushed;
  std::uint64_t& flushed_upto(std::size_t lvl) {
    if (flushed.size() <= lvl) flushed.resize(lvl + 1, 0);
    return flushed[lvl];
  }
};

Hasher::Hasher(const Params& p) : impl_(std::make_unique<Impl>(p)) {}
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
std::uint64_t Hasher::size() const noexcept { return impl_->total; }

void Hasher::update(std::span<const std::byte> data) {
  auto& im = *impl_;
  auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  std::size_t n = data.size();
  im.total += n;
  auto& buf = im.pending[0];
  while (n > 0) {
    std::size_t take = std::min<std::size_t>(n, im.params.block_size - buf.size());
    if (buf.empty() && take == im.params.block_size) {
      std::uint8_t h[64];
      im.hash_block({p, take}, h);
      im.push(1, h);
    } else {
      buf.insert(buf.end(), p, p + take);
      if (buf.size() == im.params.block_size) {
        std::uint8_t h[64];
        im.hash_block(buf, h);
        buf.clear();
        im.push(1, h);
      }
    }
    p += take;
    n -= take;
  }
}

Digest Hasher::finish() {
  auto& im = *impl_;
  const std::size_t bs = im.params.block_size;
  std::uint8_t root[64] = {};
  if (im.total > 0) {
    // Pad and flush the partial data block, then each level until one block remains.
    if (!im.pending[0].empty()) {
      im.pending[0].resize(bs, 0);
      std::uint8_t h[64];
      im.hash_block(im.pending[0], h);
      im.pending[0].clear();
      im.push(1, h);
    }
    std::uint64_t n_data = (im.total + bs - 1) / bs;
    if (n_data == 1) {
      // Single block: its hash is the root. It was pushed to level 1.
      std::memcpy(root, im.pending[1].data(), im.dsize);
    } else {
      for (std::size_t lvl = 1;; ++lvl) {
        // blocks already emitted at this level + the partial one.
        std::uint64_t emitted = lvl < im.flushed.size() ? im.flushed[lvl] : 0;
        bool partial = lvl < im.pending.size() && !im.pending[lvl].empty();
        std::uint64_t blocks = emitted + (partial ? 1 : 0);
        if (blocks == 1) {
          auto& buf = im.pending[lvl];
          if (partial) {
            buf.resize(bs, 0);
            im.hash_block(buf, root);
          } else {
            std::memcpy(root, im.pending[lvl + 1].data(), im.dsize);
          }
          break;
        }
        if (partial) {
          auto& buf = im.pending[lvl];
          buf.resize(bs, 0);
          std::uint8_t h[64];
          im.hash_block(buf, h);
          buf.clear();
          im.push(lvl + 1, h);
          ++im.flushed_upto(lvl);
        }
      }
    }
  }
  Descriptor desc{};
  desc.version = 1;
  desc.hash_algorithm = static_cast<std::uint8_t>(im.params.alg);
  desc.log_blocksize = static_cast<std::uint8_t>(__builtin_ctz(im.params.block_size));
  desc.salt_size = static_cast<std::uint8_t>(im.params.salt.size());
  desc.data_size = im.total;
  std::memcpy(desc.root_hash, root, im.dsize);
  if (!im.params.salt.empty()) std::memcpy(desc.salt, im.params.salt.data(), im.params.salt.size());
  Digest d;
  d.alg = im.params.alg;
  d.size = im.dsize;
  std::uint8_t raw[sizeof desc];
  std::memcpy(raw, &desc, sizeof desc);
  hash_once(im.params.alg, {}, {raw, sizeof raw}, d.bytes.data());
  return d;
}

Digest digest_bytes(std::span<const std::byte> data, const Params& p) {
  Hasher h(p);
  h.update(data);
  return h.finish();
}

Result<Digest> digest_fd(int fd, const Params& p, const std::string& what, unsigned) {
  CFS_TRY(validate(p));
  Hasher h(p);
  std::vector<std::byte> buf(1 << 18);
  for (;;) {
    auto n = sys::read_full(fd, buf);
    if (!n) return fail(std::move(n).error().with_context(what));
    if (*n == 0) break;
    h.update({buf.data(), *n});
    if (*n < buf.size()) break;
  }
  return h.finish();
}

Result<Digest> digest_file(const std::string& path, const Params& p, unsigned threads) {
  CFS_ASSIGN(UniqueFd fd, sys::open(path, O_RDONLY));
  return digest_fd(fd.get(), p, path, threads);
}

}  // namespace cfs::verity
