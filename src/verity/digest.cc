// SPDX-License-Identifier: Apache-2.0
// fs-verity file digests: the streaming Hasher (bounded memory: one pending block per tree
// level) and digest_fd, which hashes the leaves of large files on several threads segment by
// segment and feeds their hashes to the same upper-level logic.
#include "cfs/verity/digest.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/hex.h"
#include "cfs/util/le.h"
#include "cfs/util/sys.h"
#include "verity/block_hasher_internal.h"
#include "verity/leaves_internal.h"

namespace cfs::verity {
namespace {

struct RawDescriptor {  // struct fsverity_descriptor
  std::uint8_t version;
  std::uint8_t hash_algorithm;
  std::uint8_t log_blocksize;
  std::uint8_t salt_size;
  le32 sig_size;  // __reserved_0x04: zero in the digest
  le64 data_size;
  std::uint8_t root_hash[64];
  std::uint8_t salt[32];
  std::uint8_t reserved[144];
};
static_assert(sizeof(RawDescriptor) == 256);

// Leaves of a large file are hashed one segment at a time, the segment being as much data as
// has this many bytes of leaf hashes (1 GiB for SHA-256/4K); the hashes then go through the
// streaming upper levels. Bounds memory for any file size, while keeping segments long: each
// one ends with a thread join, and with 64 MiB segments those barriers cost 4 % of a 2 GiB
// digest on two cores.
constexpr std::uint64_t kSegmentHashBytes = 8ull << 20;
// Below this, threads cost more than they save.
constexpr std::uint64_t kParallelMin = 4ull << 20;

}  // namespace

namespace detail {

Digest descriptor_digest(const Params& p, std::uint64_t data_size, const std::uint8_t* root_hash) {
  const Descriptor raw = make_descriptor(p, data_size, {root_hash, verity::digest_size(p.alg)});
  Digest d = Digest::zero(p.alg);
  hash_message(p.alg, raw.data(), raw.size(), d.bytes.data());
  return d;
}

}  // namespace detail

Descriptor make_descriptor(const Params& p, std::uint64_t data_size,
                           std::span<const std::uint8_t> root_hash) {
  RawDescriptor desc{};
  desc.version = 1;
  desc.hash_algorithm = static_cast<std::uint8_t>(p.alg);
  desc.log_blocksize = static_cast<std::uint8_t>(__builtin_ctz(p.block_size));
  desc.salt_size = static_cast<std::uint8_t>(p.salt.size());
  desc.data_size = data_size;
  std::memcpy(desc.root_hash, root_hash.data(), std::min(root_hash.size(), sizeof desc.root_hash));
  if (!p.salt.empty())
    std::memcpy(desc.salt, p.salt.data(), std::min(p.salt.size(), sizeof desc.salt));
  Descriptor raw;
  std::memcpy(raw.data(), &desc, sizeof desc);
  return raw;
}

std::vector<std::uint8_t> formatted_digest(const Digest& d) {
  constexpr char kMagic[8] = {'F', 'S', 'V', 'e', 'r', 'i', 't', 'y'};
  std::vector<std::uint8_t> out(sizeof kMagic + 4 + d.size);
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  const le16 alg = static_cast<std::uint16_t>(d.alg);
  const le16 size = static_cast<std::uint16_t>(d.size);
  std::memcpy(out.data() + 8, &alg, 2);
  std::memcpy(out.data() + 10, &size, 2);
  std::memcpy(out.data() + 12, d.bytes.data(), d.size);
  return out;
}

std::string Digest::hex() const { return to_hex(view()); }
std::string Digest::str() const { return std::string(hash_alg_name(alg)) + ":" + hex(); }

const char* hash_alg_name(HashAlg a) noexcept {
  return a == HashAlg::kSha512 ? "sha512" : "sha256";
}

Result<HashAlg> parse_hash_alg(std::string_view name) {
  if (name == "sha256") return HashAlg::kSha256;
  if (name == "sha512") return HashAlg::kSha512;
  return fail(Errc::kUnsupportedFeature,
              "unknown hash algorithm '" + std::string(name) + "' (available: sha256 sha512)");
}

Status validate(const Params& p) {
  if (p.alg != HashAlg::kSha256 && p.alg != HashAlg::kSha512)
    return fail(Errc::kUnsupportedFeature,
                "hash algorithm " + std::to_string(static_cast<int>(p.alg)) + " not supported");
  const std::size_t min_bs = 2 * digest_size(p.alg);
  if (p.block_size < min_bs || p.block_size > kMaxBlockSize ||
      (p.block_size & (p.block_size - 1)) != 0)
    return fail(Errc::kUnsupportedFeature,
                "block size " + std::to_string(p.block_size) + " not supported (must be a power " +
                    "of two from " + std::to_string(min_bs) + " to " +
                    std::to_string(kMaxBlockSize) + " for " + hash_alg_name(p.alg) + ")");
  if (p.salt.size() > kMaxSaltSize)
    return fail(Errc::kInvalidInput,
                "salt of " + std::to_string(p.salt.size()) + " bytes (at most 32)");
  return {};
}

Status validate_for_kernel(const Params& p) {
  CFS_TRY(validate(p));
  if (p.block_size < 1024 || p.block_size > 65536)
    return fail(Errc::kUnsupportedFeature,
                "block size " + std::to_string(p.block_size) +
                    " not supported by the kernel (must be 1024..65536, at most the page size)");
  return {};
}

struct Hasher::Impl {
  Params params;
  detail::BlockHasher bh;
  std::size_t ds;
  std::uint64_t total = 0;
  std::vector<std::uint8_t> data;  // partial data block
  // levels[k]: the partial block of tree level k (k = 0 holds leaf hashes), and how many full
  // blocks of that level were already hashed and passed up.
  struct Level {
    std::vector<std::uint8_t> buf;
    std::uint64_t emitted = 0;
  };
  std::vector<Level> levels;

  explicit Impl(const Params& p) : params(p), bh(p), ds(digest_size(p.alg)) {}

  // Appends `n` consecutive hashes to level k, hashing each block as it fills.
  void add(std::size_t k, const std::uint8_t* h, std::size_t n) {
    const std::size_t bs = params.block_size;
    while (n > 0) {
      if (levels.size() <= k) levels.emplace_back();
      Level& lv = levels[k];
      if (lv.buf.capacity() < bs) lv.buf.reserve(bs);
      const std::size_t take = std::min(n * ds, bs - lv.buf.size());
      lv.buf.insert(lv.buf.end(), h, h + take);
      h += take;
      n -= take / ds;
      if (lv.buf.size() == bs) {
        std::uint8_t up[64];
        bh.hash_blocks(lv.buf.data(), 1, up);
        lv.buf.clear();
        ++lv.emitted;
        add(k + 1, up, 1);
      }
    }
  }

  void add_data(const std::uint8_t* p, std::size_t n) {
    const std::size_t bs = params.block_size;
    total += n;
    if (!data.empty()) {
      const std::size_t take = std::min(n, bs - data.size());
      data.insert(data.end(), p, p + take);
      p += take;
      n -= take;
      if (data.size() < bs) return;
      std::uint8_t h[64];
      bh.hash_blocks(data.data(), 1, h);
      data.clear();
      add(0, h, 1);
    }
    constexpr std::size_t kBatch = 64;
    std::uint8_t hashes[kBatch * 64];
    while (n >= bs) {
      const std::size_t blocks = std::min(kBatch, n / bs);
      bh.hash_blocks(p, blocks, hashes);
      add(0, hashes, blocks);
      p += blocks * bs;
      n -= blocks * bs;
    }
    if (n > 0) {
      data.reserve(bs);
      data.assign(p, p + n);
    }
  }

  // Appends the leaf hashes of one segment: the whole blocks of them (all of them when the
  // level is block-aligned, as it is between segments) are hashed on `threads` threads and
  // several lanes each, instead of one block at a time in add(); on a 1 GiB file that serial
  // tail was 8 MiB of single-lane hashing after the leaves.
  void add_leaves(const std::uint8_t* h, std::size_t n, unsigned threads) {
    const std::size_t per = params.block_size / ds;
    if (levels.empty()) levels.emplace_back();
    const std::size_t whole = levels[0].buf.empty() ? n / per : 0;
    if (whole > 0) {
      std::vector<std::uint8_t> up(whole * ds);
      detail::hash_leaves_mem(bh, h, whole * params.block_size, up.data(), threads);
      levels[0].emitted += whole;
      add(1, up.data(), whole);
    }
    add(0, h + whole * per * ds, n - whole * per);
  }

  Digest finish() {
    std::uint8_t root[64] = {};
    if (total > 0) {
      if (!data.empty()) {
        std::uint8_t h[64];
        bh.hash_tail(data.data(), data.size(), h);
        data.clear();
        add(0, h, 1);
      }
      if (levels[0].emitted == 0 && levels[0].buf.size() == ds) {
        std::memcpy(root, levels[0].buf.data(), ds);  // one data block: its hash is the root
      } else {
        for (std::size_t k = 0;; ++k) {
          Level& lv = levels[k];
          if (!lv.buf.empty()) {
            lv.buf.resize(params.block_size, 0);
            std::uint8_t h[64];
            bh.hash_blocks(lv.buf.data(), 1, h);
            lv.buf.clear();
            ++lv.emitted;
            add(k + 1, h, 1);
          }
          if (levels[k].emitted == 1) {
            std::memcpy(root, levels[k + 1].buf.data(), ds);
            break;
          }
        }
      }
    }
    return detail::descriptor_digest(params, total, root);
  }
};

Hasher::Hasher(const Params& p) : impl_(std::make_unique<Impl>(p)) {}
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
std::uint64_t Hasher::size() const noexcept { return impl_->total; }

void Hasher::update(std::span<const std::byte> data) {
  impl_->add_data(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
}

Digest Hasher::finish() { return impl_->finish(); }

Digest digest_bytes(std::span<const std::byte> data, const Params& p) {
  if (data.size() <= p.block_size) {
    // One leaf: its hash is the root. The per-thread hasher spares many small inputs the
    // setup of a streaming Hasher.
    std::uint8_t root[64] = {};
    if (!data.empty())
      detail::cached_hasher(p).hash_tail(reinterpret_cast<const std::uint8_t*>(data.data()),
                                         data.size(), root);
    return detail::descriptor_digest(p, data.size(), root);
  }
  Hasher h(p);
  h.update(data);
  return h.finish();
}

std::size_t small_many_max(const Params& p) noexcept {
  return std::size_t{p.block_size} * (p.block_size / digest_size(p.alg));
}

void digest_small_many(std::span<const std::span<const std::byte>> inputs, const Params& p,
                       std::span<Digest> out) {
  const std::size_t n = inputs.size();
  if (n > kSmallBatchMax || out.size() < n)
    throw std::invalid_argument("digest_small_many: too many inputs");
  const std::size_t bs = p.block_size;
  const std::size_t ds = digest_size(p.alg);
  const detail::BlockHasher& bh = detail::cached_hasher(p);
  // Every input has at most two tree levels: its leaves, and (from two leaves on) one block of
  // leaf hashes whose hash is the root. Each level is hashed for all inputs at once: whole
  // blocks straight from the inputs, the last partial block of each zero-padded in `tails`.
  thread_local std::vector<std::uint8_t> tails, level1;
  thread_local std::vector<const std::uint8_t*> leaf_in;
  thread_local std::vector<std::uint8_t*> leaf_out;
  tails.resize(kSmallBatchMax * bs);
  level1.resize(kSmallBatchMax * bs);
  leaf_in.clear();
  leaf_out.clear();
  std::size_t nblocks[kSmallBatchMax];
  for (std::size_t i = 0; i < n; ++i) {
    const auto* data = reinterpret_cast<const std::uint8_t*>(inputs[i].data());
    const std::size_t size = inputs[i].size();
    if (size > small_many_max(p)) throw std::invalid_argument("digest_small_many: input too large");
    nblocks[i] = (size + bs - 1) / bs;
    // The level block of leaf hashes is zero-padded after the last hash.
    std::memset(level1.data() + i * bs + nblocks[i] * ds, 0, bs - nblocks[i] * ds);
    for (std::size_t j = 0; j < nblocks[i]; ++j) {
      const std::size_t off = j * bs;
      if (size - off >= bs) {
        leaf_in.push_back(data + off);
      } else {
        std::uint8_t* t = tails.data() + i * bs;
        std::memcpy(t, data + off, size - off);
        std::memset(t + (size - off), 0, bs - (size - off));
        leaf_in.push_back(t);
      }
      leaf_out.push_back(level1.data() + i * bs + j * ds);
    }
  }
  bh.hash_gather(leaf_in.data(), leaf_in.size(), leaf_out.data());
  // Roots: the leaf hash itself for one block, else the hash of the (zero-padded) level block;
  // all zeros for the empty input.
  std::uint8_t roots[kSmallBatchMax][64] = {};
  const std::uint8_t* top_in[kSmallBatchMax];
  std::uint8_t* top_out[kSmallBatchMax];
  std::size_t tops = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (nblocks[i] == 1) {
      std::memcpy(roots[i], level1.data() + i * bs, ds);
    } else if (nblocks[i] > 1) {
      top_in[tops] = level1.data() + i * bs;
      top_out[tops++] = roots[i];
    }
  }
  bh.hash_gather(top_in, tops, top_out);
  // Descriptors, all the same length: hashed interleaved too.
  Descriptor desc[kSmallBatchMax];
  const std::uint8_t* desc_in[kSmallBatchMax];
  std::uint8_t* desc_out[kSmallBatchMax];
  for (std::size_t i = 0; i < n; ++i) {
    desc[i] = make_descriptor(p, inputs[i].size(), {roots[i], ds});
    desc_in[i] = desc[i].data();
    out[i] = Digest::zero(p.alg);
    desc_out[i] = out[i].bytes.data();
  }
  detail::hash_messages(p.alg, desc_in, sizeof(Descriptor), n, desc_out);
}

namespace {

Result<std::optional<Digest>> digest_stream(int fd, const Params& p, const std::string& what) {
  Hasher h(p);
  thread_local AlignedBuffer mem;
  const std::span<std::byte> buf = mem.get(256 * 1024);
  for (;;) {
    CFS_ASSIGN_CTX(std::size_t n, sys::read_full(fd, buf), what);
    h.update({buf.data(), n});
    if (n < buf.size()) break;
  }
  return std::optional(h.finish());
}

}  // namespace

Result<std::optional<std::size_t>> read_one_block(int fd, const Params& p, std::span<std::byte> buf,
                                                  const std::string& what) {
  const std::size_t bs = p.block_size;
  if (buf.size() < bs + 1) throw std::invalid_argument("read_one_block: buffer too small");
  auto got = sys::pread_some(fd, buf.first(bs + 1), 0);
  if (!got) {
    if (got.error().is_errno(ESPIPE)) return fail_errno(what, ESPIPE);
    if (got.error().is_errno(EISDIR)) return fail_errno(what, EISDIR);
    return fail(std::move(got).error().with_context(what));
  }
  if (*got > bs) return std::optional<std::size_t>();
  if (*got > 0) {
    // A short read ends at EOF on disk filesystems, but procfs or FUSE direct I/O may stop
    // early: only a 0-byte read proves EOF.
    std::byte next{};
    CFS_ASSIGN_CTX(std::size_t more, sys::pread_some(fd, std::span(&next, 1), *got), what);
    if (more != 0) return std::optional<std::size_t>();
  }
  return std::optional(*got);
}

Result<std::optional<Digest>> digest_fd_up_to(int fd, const Params& p, std::uint64_t max_size,
                                              const std::string& what, unsigned threads) {
  CFS_TRY(validate(p));
  // First look: most files of a tree fit in a block, and then two preads are all the I/O, so
  // many small files go at the speed of open/read/close. The buffer is per thread, so nothing
  // is allocated per file.
  const std::size_t bs = p.block_size;
  thread_local AlignedBuffer mem;
  const std::span<std::byte> head = mem.get(bs + 1);
  auto small = read_one_block(fd, p, head, what);
  if (!small) {
    if (small.error().is_errno(ESPIPE)) return digest_stream(fd, p, what);  // pipes, sockets
    return fail(std::move(small).error());
  }
  if (*small) return std::optional(digest_bytes(std::span(head.data(), **small), p));

  CFS_ASSIGN(struct stat st, sys::fstat(fd, what));
  // Character devices, and regular files whose size says nothing (procfs) or no longer matches
  // what was read, are read to EOF.
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) <= bs)
    return digest_stream(fd, p, what);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_size) return std::optional<Digest>();

  threads = detail::resolve_threads(threads);
  if (size < kParallelMin) threads = 1;
  Hasher h(p);
  Hasher::Impl& im = *h.impl_;
  const std::uint64_t seg = std::max<std::uint64_t>(kSegmentHashBytes / im.ds, 1) * bs;
  // Not value-initialized: zeroing 8 MiB on this thread before the workers start was 2 % of a
  // 1 GiB digest's CPU, all of it serial; the workers write every hash before it is read.
  const auto hashes = std::make_unique_for_overwrite<std::uint8_t[]>(
      static_cast<std::size_t>(std::min(size, seg) / bs + 1) * im.ds);
  for (std::uint64_t off = 0; off < size; off += seg) {
    const std::uint64_t len = std::min(seg, size - off);
    CFS_TRY(detail::hash_leaves(im.bh, fd, off, len, hashes.get(), threads, what));
    im.add_leaves(hashes.get(), static_cast<std::size_t>((len + bs - 1) / bs), threads);
  }
  im.total = size;
  return std::optional(im.finish());
}

Result<Digest> digest_fd(int fd, const Params& p, const std::string& what, unsigned threads) {
  CFS_ASSIGN(std::optional<Digest> d,
             digest_fd_up_to(fd, p, std::numeric_limits<std::uint64_t>::max(), what, threads));
  return *d;
}

Result<Digest> digest_file(const std::string& path, const Params& p, unsigned threads) {
  CFS_ASSIGN(UniqueFd fd, sys::open(path, O_RDONLY));
  return digest_fd(fd.get(), p, path, threads);
}

}  // namespace cfs::verity
