// SPDX-License-Identifier: Apache-2.0
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/mapped_file.h"
#include "cfs/util/sys.h"
#include "verity/leaves_internal.h"

namespace cfs::verity::detail {
namespace {

// pread path: 192 KiB reads keep the buffer in L2 while it is hashed (the measured optimum was
// 64 KiB to 256 KiB) and hold 48 blocks of 4 KiB, a
// multiple of every interleave width, so no lane runs idle at the end of a chunk. Work is
// claimed in units of 8 chunks so a thread slowed by other load does not hold up the rest.
constexpr std::size_t kReadChunk = 192 * 1024;
constexpr std::uint64_t kClaim = 8 * kReadChunk;

// Mapped reads: ranges of at least kMapMin bytes are hashed in place from windows of
// kMapWindow bytes mapped with MAP_POPULATE (the window is also the unit of work), which spares
// the copy out of the page cache. 2 MiB measured best on host B (best wall of the 1 GiB digest:
// 512 KiB +10 %, 1 MiB +2 %, 4 MiB +6 %, 8 MiB +2 %); see docs/design.md and bench/README.md.
constexpr std::uint64_t kMapMin = 1ull << 20;
constexpr std::uint64_t kMapWindow = 2ull << 20;

std::atomic<ReadMode>& forced_mode() {
  static std::atomic<ReadMode> m{ReadMode::kAuto};
  return m;
}

ReadMode default_mode() { return mapped_reads_preferred() ? ReadMode::kMap : ReadMode::kPread; }

// SIGBUS recovery. Touching a mapped page that lies wholly past the end of the file (it was
// truncated after its size was taken) raises SIGBUS. The handler, installed once for the
// process, turns a fault inside the window this thread is hashing into a return from
// hash_mapped() with false, through the recovery point hash_mapped() set; any other SIGBUS goes
// to the handler that was there before (or kills the process as the default action would).
// Between sigsetjmp and the fault there are only the SHA-256 kernels (no destructors, locks or
// allocations; the OpenSSL path never reads mapped memory, see hash_leaves) and hash_tail's
// memcpy into a per-thread scratch block.
struct FaultGuard {
  const std::uint8_t* lo;
  const std::uint8_t* hi;
  sigjmp_buf* jb;
};
constinit thread_local FaultGuard* t_guard = nullptr;
struct sigaction g_prev_sigbus;

void on_sigbus(int sig, siginfo_t* si, void* uc) {
  FaultGuard* g = t_guard;
  const auto* a = static_cast<const std::uint8_t*>(si->si_addr);
  if (g != nullptr && si->si_code > 0 && a >= g->lo && a < g->hi) {
    t_guard = nullptr;
    siglongjmp(*g->jb, 1);
  }
  if ((g_prev_sigbus.sa_flags & SA_SIGINFO) != 0) {
    if (g_prev_sigbus.sa_sigaction != nullptr) g_prev_sigbus.sa_sigaction(sig, si, uc);
    return;
  }
  if (g_prev_sigbus.sa_handler != SIG_DFL && g_prev_sigbus.sa_handler != SIG_IGN) {
    g_prev_sigbus.sa_handler(sig);
    return;
  }
  if (g_prev_sigbus.sa_handler == SIG_IGN && si->si_code <= 0) return;  // kill(): ignored
  // Default action (a fault cannot be ignored): the faulting access runs again after the
  // return and the process dies of it; a SIGBUS sent with kill() is raised again, pending until
  // this handler returns.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(SIGBUS, &dfl, nullptr);
  if (si->si_code <= 0) ::raise(SIGBUS);
}

bool install_sigbus_handler() {
  static const bool ok = [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    return ::sigaction(SIGBUS, &sa, &g_prev_sigbus) == 0;
  }();
  return ok;
}

// Hashes n bytes at p, mapped memory within [lo, hi): whole blocks, then a zero-padded tail.
// False when a page faulted (SIGBUS). noinline: the recovery point must be this frame's.
[[gnu::noinline]] bool hash_mapped(const BlockHasher& h, const std::uint8_t* p, std::size_t n,
                                   std::uint8_t* out, const std::uint8_t* lo,
                                   const std::uint8_t* hi) {
  sigjmp_buf jb;
  FaultGuard g{lo, hi, &jb};
  // savemask 1: the handler runs with SIGBUS blocked, and the jump must unblock it again.
  if (sigsetjmp(jb, 1) != 0) return false;
  t_guard = &g;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const std::size_t bs = h.block_size();
  const std::size_t full = n / bs;
  h.hash_blocks(p, full, out);
  if (const std::size_t rest = n - full * bs; rest != 0)
    h.hash_tail(p + full * bs, rest, out + full * h.digest_size());
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_guard = nullptr;
  return true;
}

// One read-only mapping, unmapped at scope exit.
class Window {
 public:
  Window(int fd, std::uint64_t file_off, std::size_t n) {
    static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t start = file_off / page * page;
    len_ = static_cast<std::size_t>(file_off - start) + n;
    void* m =
        ::mmap(nullptr, len_, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, static_cast<off_t>(start));
    if (m != MAP_FAILED) base_ = static_cast<std::uint8_t*>(m);
    data_ = base_ == nullptr ? nullptr : base_ + (file_off - start);
  }
  ~Window() {
    if (base_ != nullptr) ::munmap(base_, len_);
  }
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;
  const std::uint8_t* data() const noexcept { return data_; }
  const std::uint8_t* begin() const noexcept { return base_; }
  const std::uint8_t* end() const noexcept { return base_ + len_; }

 private:
  std::uint8_t* base_ = nullptr;
  const std::uint8_t* data_ = nullptr;
  std::size_t len_ = 0;
};

}  // namespace

void set_read_mode(ReadMode m) noexcept { forced_mode().store(m, std::memory_order_relaxed); }

ReadMode active_read_mode() noexcept {
  const ReadMode m = forced_mode().load(std::memory_order_relaxed);
  if (m != ReadMode::kAuto) return m;
  static const ReadMode def = default_mode();
  return def;
}

unsigned resolve_threads(unsigned threads) {
  return threads == 0 ? sys::available_cpus() : threads;
}

const BlockHasher& cached_hasher(const Params& p) {
  struct Entry {
    Params params;
    Engine engine = Engine::kAuto;
    std::optional<BlockHasher> hasher;
  };
  thread_local Entry e;
  const Engine eng = active_engine();
  if (!e.hasher || e.engine != eng || e.params.alg != p.alg ||
      e.params.block_size != p.block_size || e.params.salt != p.salt) {
    e.params = p;
    e.engine = eng;
    e.hasher.emplace(p);
  }
  return *e.hasher;
}

Status hash_leaves(const BlockHasher& h, int fd, std::uint64_t offset, std::uint64_t len,
                   std::uint8_t* out, unsigned threads, const std::string& what) {
  const std::uint64_t bs = h.block_size();
  const std::size_t ds = h.digest_size();
  // In place only with our own SHA-256 kernels: the SIGBUS recovery jumps out of them, which
  // would not be safe out of OpenSSL (the portable engine, SHA-512).
  const bool map = len >= kMapMin && active_read_mode() == ReadMode::kMap &&
                   h.engine() != Engine::kPortable && install_sigbus_handler();
  const std::uint64_t claim =
      map ? std::max<std::uint64_t>(kMapWindow, bs) : std::max<std::uint64_t>(kClaim, bs);
  const std::size_t chunk = static_cast<std::size_t>(std::max<std::uint64_t>(kReadChunk, bs));
  const std::uint64_t units = (len + claim - 1) / claim;
  threads = static_cast<unsigned>(std::min<std::uint64_t>(resolve_threads(threads), units));

  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex err_mu;
  std::optional<Error> err;
  const auto shrank = [&] {
    std::lock_guard lock(err_mu);
    if (!err) err = Error(Errc::kInvalidInput, what + ": file shrank while being read");
    failed = true;
  };

  auto worker = [&] {
    // Page-aligned: the kernel's copy out of the page cache is ~3x slower into a buffer
    // 16 bytes past a page boundary, which is where a std::vector of this size lands.
    thread_local AlignedBuffer mem;
    const std::span<std::uint8_t> buf = mem.get_u8(chunk);
    for (std::uint64_t u; !failed.load(std::memory_order_relaxed) &&
                          (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const std::uint64_t begin = u * claim;
      const std::uint64_t end = std::min(len, begin + claim);
      if (map) {
        const Window w(fd, offset + begin, static_cast<std::size_t>(end - begin));
        if (w.data() != nullptr) {
          if (!hash_mapped(h, w.data(), static_cast<std::size_t>(end - begin),
                           out + (begin / bs) * ds, w.begin(), w.end())) {
            shrank();
            return;
          }
          continue;
        }
        // Not mappable (e.g. a filesystem without mmap): this window is read instead.
      }
      for (std::uint64_t pos = begin; pos < end;) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, end - pos));
        auto got =
            sys::pread_full(fd, std::as_writable_bytes(std::span(buf.data(), n)), offset + pos);
        if (!got || *got != n) {
          std::lock_guard lock(err_mu);
          if (!err)
            err = got ? Error(Errc::kInvalidInput, what + ": file shrank while being read")
                      : std::move(got).error().with_context(what);
          failed = true;
          return;
        }
        const std::size_t full = n / bs;
        std::uint8_t* o = out + (pos / bs) * ds;
        h.hash_blocks(buf.data(), full, o);
        if (const std::size_t rest = n - full * bs; rest != 0)
          h.hash_tail(buf.data() + full * bs, rest, o + full * ds);
        pos += n;
      }
    }
  };
  if (threads <= 1) {
    worker();
  } else {
    std::vector<std::jthread> pool;
    pool.reserve(threads - 1);
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
  }
  if (err) return fail(std::move(*err));
  if (map) {
    // A cut inside the last page reads as zeros instead of faulting: compare the size.
    CFS_ASSIGN(struct stat st, sys::fstat(fd, what));
    if (static_cast<std::uint64_t>(st.st_size) < offset + len)
      return fail(Errc::kInvalidInput, what + ": file shrank while being read");
  }
  return {};
}

void hash_leaves_mem(const BlockHasher& h, const std::uint8_t* data, std::size_t len,
                     std::uint8_t* out, unsigned threads) {
  const std::size_t bs = h.block_size();
  const std::size_t ds = h.digest_size();
  const std::size_t claim = std::max<std::size_t>(kClaim, bs);
  const std::size_t units = (len + claim - 1) / claim;
  threads = static_cast<unsigned>(std::min<std::size_t>(resolve_threads(threads), units));
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      const std::size_t begin = u * claim;
      const std::size_t n = std::min(len, begin + claim) - begin;
      const std::size_t full = n / bs;
      std::uint8_t* o = out + (begin / bs) * ds;
      h.hash_blocks(data + begin, full, o);
      if (const std::size_t rest = n - full * bs; rest != 0)
        h.hash_tail(data + begin + full * bs, rest, o + full * ds);
    }
  };
  if (threads <= 1) {
    worker();
    return;
  }
  std::vector<std::jthread> pool;
  pool.reserve(threads - 1);
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
}

}  // namespace cfs::verity::detail
