// SPDX-License-Identifier: Apache-2.0
// The lazy object provider: a vfs::ObjectProvider that serves a repository's objects and fetches a
// missing one from a registry the first time a file needs it (cfs oci mount --lazy, docs/lazy.md).
//
// Trust chain. The merged image (EROFS) is trusted: it was fetched by digest and checked against
// its fs-verity digest before the mount (and a seal, when one was asked for). It holds the
// fs-verity digest of every file. The object index (where each object's bytes are: a byte range of
// a layer blob, raw or one zstd frame) is only a hint: nothing it says is believed. A fetched
// object is decompressed into an unnamed file in the repository while its fs-verity digest is
// computed, and it is committed (Repository::commit_object: named objects/XX/<rest>, visible to gc
// and fsck) only when that digest is the one the image records. Anything else (a tampered blob, a
// wrong index entry, a short or long range, a broken frame) leaves nothing behind and fails the
// open with EIO. A partial object is never visible: the file has no name until it is whole and
// verified (the opens waiting for it are served from that verified unnamed file while it is made
// durable and committed: by its fetch for the fill and the prefetch list, by a committer thread
// once the mount is quiet for opens and ELF hints, LazyOptions::commit_quiet_s). The vfs layer then
// verifies the object again at open and every block at read, as for any object.
//
// Fetching. Opens of a missing object wait for it at most LazyOptions::timeout_s, then fail with
// EIO (the fetch goes on and a later open may find the object). One object is fetched once however
// many opens wait for it (single flight). A fetch brings along, in the same Range request, the
// missing objects stored next to its object in the layer (LazyOptions::batch_bytes), each
// verified against its own digest and committed or dropped alone. Fetches run on `fetchers`
// threads, opens first, then the objects of the interpreter and libraries a fetched ELF file will
// load (with LazyOptions::image; registry/elf.h), then the prefetch list, then the background fill
// (every object of the index not yet present). A failed background fetch is logged and not retried
// by the fill; the next open of that file tries again. Each fetch opens the repository for the
// duration of the fetch and the commit only (shared lock), so `cfs repo gc` can run while the
// mount lives (the mount lease keeps the image's objects).
//
// Stopping. Destroying the provider (the mount's server stops: SIGTERM, umount) cancels its range
// source first (the registry client: Client::cancel), so fetches in flight, their transfers and
// their retry waits end at once whatever the registry does (down, hung, slow), then joins the
// fetch threads, then names the verified objects still waiting for their commit. A fetch cut short
// commits nothing: its objects stay unnamed files and are dropped.
//
// Thread-safety: open_object() from any thread; start() once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/ocirepo/object_index.h"
#include "cfs/registry/blob_io.h"
#include "cfs/registry/client.h"
#include "cfs/registry/loader_graph.h"
#include "cfs/registry/reference.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"
#include "cfs/vfs/object_provider.h"

namespace cfs::registry {

/// LazyOptions::batch_bytes by default, and a lazy mount's when the link was not measured.
inline constexpr std::uint64_t kDefaultBatchBytes = 64 << 10;
/// The most a measured budget (batch_budget) gives: the neighbours before the object asked for
/// are held in memory, up to the budget, on each fetch thread.
inline constexpr std::uint64_t kMaxBatchBytes = 1 << 20;
/// LazyOptions::directory_batch_bytes of a lazy mount whose budget was not given: a program reads
/// the small files of a directory one after another (glibc's locale data: dpkg's first batch is
/// 117 KB, `LC_IDENTIFICATION` and its directory), so those are worth their request whatever the
/// link measured; the measured budget (batch_budget) swung 31-295 KB between runs and split the
/// directory in some. Other neighbours are opened next far less often: a floor for them too
/// (128 KiB, or 4 ms of the link) cost apt-get --version 15-34 ms (same-run medians of 4 A/Bs,
/// session 14) for its bigger batches of other directories' objects.
inline constexpr std::uint64_t kDirectoryBatchBytes = 128 << 10;
/// In a request of several ranges (a loader closure, a group of ELF hints), objects of one layer
/// blob at most this many bytes apart are asked for as one range over them, the bytes between
/// them skipped as they arrive (never more than LazyOptions::batch_bytes: `--batch-bytes 0` asks
/// for each object's range alone). docker-registry 2.8 spends ~0.45 ms of CPU per further range
/// of a request (a seek of its 4 MiB buffered reader), on the cores the program waits on; a gap
/// byte costs the link and nothing else (the bytes are skipped, not hashed or written). 4 KiB is
/// what that CPU is worth on a 100 Mbit/s link (0.45 ms ≈ 5.6 KB; 33 µs of a 1 Gbit/s link), and
/// it covers a tar header with its padding and PAX records between two files of an uncompressed
/// layer; zstd:chunked puts 110-170 bytes of header frames between two files. In the Debian
/// image the gaps between a closure's objects are either such headers or ≥ 19 KB (files not in
/// the closure): any bound from 256 B to 16 KiB merges apt-get's 20 ranges to 12, 18 with
/// kRangeReorderBytes (session 15).
inline constexpr std::uint64_t kRangeGapBytes = 4 << 10;
/// A range over several objects brings its objects in blob order, not in the order they are
/// wanted (a loader closure: the order the loader opens them), so it may bring some ahead of
/// others wanted before them: at most this many bytes of them per range. 64 KiB is what a range
/// saves (~0.45 ms of registry CPU) on a 1 Gbit/s link. Unbounded, apt-get's 20 ranges became
/// 12 but the loader waited for its next library while 1.4 MB of its last ones came first:
/// apt-get --version +10 ms median over 21 same-run pairs (faster in 9) for 5.4 ms less registry
/// CPU (session 15).
inline constexpr std::uint64_t kRangeReorderBytes = 64 << 10;
/// Most objects one open queues from the loader graph (LazyOptions::loader_graph): apt-get's
/// closure is 19.
inline constexpr std::size_t kMaxLoaderClosure = 128;

/// The neighbour budget (LazyOptions::batch_bytes) a link is worth: a neighbour fetched along
/// may save a later request, one round trip, and costs the time its bytes take on the link, so
/// batching pays up to the bytes that arrive in one round trip: round_trip_s × bytes_per_s
/// (to the nearest byte), at most kMaxBatchBytes. nullopt when either is not a positive finite
/// number (not measured). A zero-latency link gives ~0 (one object per request), a WAN link a large
/// one.
std::optional<std::uint64_t> batch_budget(double round_trip_s, double bytes_per_s);

/// How far a fill is (the background fill of a lazy mount, or `cfs oci pull` finishing one).
/// Bytes are blob bytes as the object index places them (compressed for zstd:chunked frames).
struct FillProgress {
  std::uint64_t objects = 0;  ///< objects finished: fetched, found present or failed
  std::uint64_t objects_total = 0;
  std::uint64_t bytes = 0;  ///< of the objects finished
  std::uint64_t bytes_total = 0;
  std::uint64_t failed = 0;
};

struct LazyOptions {
  /// The repository: objects are looked up in and committed to REPO/objects.
  std::string repo_path;
  /// The registry repository the blobs are fetched from.
  Reference source;
  /// Where each object's bytes are (the image's object index). Objects it does not place cannot be
  /// fetched (ENOENT, as without a provider).
  ocirepo::ObjectIndex index;
  /// Longest an open waits for its object before failing with EIO.
  double timeout_s = 30;
  /// Fetch every missing object in the background once serving.
  bool fill = true;
  /// Fetched first, in this order, once serving (before the fill).
  std::vector<verity::Digest> prefetch;
  /// Fetch threads for everything; opens and ELF hints have 4 more of their own.
  unsigned fetchers = 4;
  /// The merged image. With it and elf_prefetch, fetching a dynamically linked ELF file also
  /// queues the objects of its interpreter and libraries (resolved in this tree), ahead of the
  /// prefetch list and the fill. With it and batch_bytes, the first open of a missing file under
  /// /usr/lib/locale queues glibc's gconv-modules.cache the same way (glibc opens it next).
  std::optional<erofs::Image> image;
  bool elf_prefetch = true;
  /// What the loader opens for each ELF object of the index (the lazy artifact's config, computed
  /// at push). With it (and image, elf_prefetch), the first open of a missing object the graph
  /// lists queues its whole closure (breadth first, at most kMaxLoaderClosure objects) as ELF
  /// hints at once, before its own bytes arrive, and fetched objects are not parsed for hints:
  /// one request of several ranges per layer blob brings a program's libraries and theirs,
  /// instead of one request per level as each fetched library is parsed. Empty: the levels.
  LoaderGraph loader_graph;
  /// The ELF hints queued together of one layer blob (one fetched ELF file's libraries) are
  /// fetched with one request of several ranges (RangeSource::fetch_ranges).
  bool multirange = true;
  /// A fetch also brings the missing objects stored next to the one asked for in its layer, in
  /// the same Range request, while the whole request is at most this many bytes longer than that
  /// object's own (programs open files of one directory one after another: locale data, modules;
  /// with `image`, the files of the asked object's directory are taken before nearer others).
  /// Each is verified against its own digest and stored alone; one with bad bytes is dropped
  /// without affecting the others. 0: one object per request.
  std::uint64_t batch_bytes = kDefaultBatchBytes;
  /// With `image`: the neighbours in the asked object's directory may grow the request by up to
  /// this many bytes when batch_bytes is less (0: batch_bytes for all). A lazy mount whose budget
  /// was not given sets kDirectoryBatchBytes.
  std::uint64_t directory_batch_bytes = 0;
  /// Merkle trees of fetched objects kept for their opens (LazyProvider::take_tree), in bytes;
  /// each kept tree counts at least kKeptTreeEntryBytes (small objects' trees are empty, and a
  /// fill that fetches every object of a large image would otherwise keep one entry each).
  /// Over it, the oldest go first (their opens build the tree again from the object file).
  std::size_t kept_tree_bytes = std::size_t{8} << 20;
  static constexpr std::size_t kKeptTreeEntryBytes = 1024;
  /// Progress and failures of background fetches (one line each, no newline); may be empty.
  std::function<void(const std::string&)> log;
  /// fsync each fetched object before it is named (a lazy mount: its image is named already and
  /// nothing syncs later). false: the caller syncs the filesystem before it names anything that
  /// needs the objects (`cfs oci pull` finishing a fill, as a normal pull's objects).
  bool sync_each_object = true;
  /// The objects an open or an ELF hint fetched (verified, served from their unnamed files) are
  /// made durable and named once the mount has been quiet this long (no open waiting, no such
  /// fetch queued or running), not right after their fetch: on a program's path the fsyncs and
  /// links compete with the registry and the program for the CPUs. Also when
  /// kMaxPendingCommitObjects or kMaxPendingCommitBytes wait, when the oldest has waited
  /// commit_max_wait_s, and when the provider stops. Negative: each fetch commits its own
  /// objects at once (as the fill and --prefetch always do). Only once started (start()).
  /// 100 ms: on a loaded two-CPU host the pauses of a running program between its opens (its
  /// loader relocating a library; the command's return and the program's exec before its first
  /// open) reach 20-80 ms, and each one longer than this started the commits or the
  /// registration beside the program (bench/README.md, host D, session 18).
  double commit_quiet_s = 0.1;
  double commit_max_wait_s = 2;
  static constexpr std::size_t kMaxPendingCommitObjects = 256;
  static constexpr std::uint64_t kMaxPendingCommitBytes = std::uint64_t{64} << 20;
  /// The background fill's progress: once when it starts, then after each of its objects
  /// (serialised; from fetch threads); may be empty.
  std::function<void(const FillProgress&)> progress;
  /// Fetch events ("open", "range", "verified", … with the object's name), for timing what a
  /// workload waits for (CFS_LAZY_TRACE, docs/lazy.md); from fetch threads; may be empty.
  std::function<void(std::string_view)> trace;
};

/// Where a lazy provider's bytes come from: byte ranges of the layer blobs of LazyOptions::source
/// (the registry client; tests use a fake). Called from several fetch threads at once.
class RangeSource {
 public:
  virtual ~RangeSource() = default;
  virtual Status fetch_range(const oci::ContentDigest& blob, std::uint64_t offset,
                             std::uint64_t length, BlobSink& sink) = 0;
  /// Several ranges of one blob, each to its own sink, in the order given (one request of several
  /// ranges: Client::fetch_ranges). The default fetches them one at a time.
  virtual Status fetch_ranges(const oci::ContentDigest& blob, std::span<const BlobRange> ranges) {
    for (const auto& r : ranges) CFS_TRY(fetch_range(blob, r.offset, r.length, *r.sink));
    return {};
  }
  /// The provider is stopping: fetch_range calls in flight, and any later ones, should end soon
  /// (with an error). The registry client's cancels the client it owns; a borrowed one is left.
  virtual void cancel() {}
};

class LazyProvider final : public vfs::ObjectProvider {
 public:
  /// Opens the repository's object directory; no network I/O, no threads yet. The first form
  /// fetches from options.source with `client`.
  static Result<std::shared_ptr<LazyProvider>> create(Client client, LazyOptions options);
  static Result<std::shared_ptr<LazyProvider>> create(std::unique_ptr<RangeSource> source,
                                                      LazyOptions options);
  ~LazyProvider() override;
  LazyProvider(const LazyProvider&) = delete;
  LazyProvider& operator=(const LazyProvider&) = delete;

  /// The object from the repository, fetched first when it is missing and the index lists `digest`.
  /// Errors: ENOENT (missing and not fetchable: no digest or not in the index), EIO (the fetch
  /// failed, timed out, or brought bytes that are not the object: nothing stored).
  Result<UniqueFd> open_object(std::string_view rel,
                               const std::optional<verity::Digest>& digest) const override;
  /// The Merkle tree a fetch built of `digest` while it received the bytes, once; no tree when
  /// none is kept (not fetched by this provider, taken already, or dropped: at most 8 MiB of
  /// trees wait for their opens). With it the bytes themselves, when an open or an ELF hint asked
  /// for the object (or a neighbour of it), it is at most 8 MiB and they were not dropped (at
  /// most 16 MiB of bytes wait for their opens, the oldest dropped first).
  vfs::Prebuilt take_tree(const verity::Digest& digest) const override;
  /// With LazyOptions::trace: every read served of an object, traced as `read <hex> OFF LEN`
  /// (what a workload reads of what was fetched whole; docs/lazy.md).
  bool wants_reads() const override;
  void on_read(const verity::Digest& digest, std::uint64_t off, std::size_t len) const override;
  /// Starts the fetch threads, the prefetch and (with LazyOptions::fill) the fill.
  void start() override;
  /// Work that need not run while a program waits for its files (the lazy mount's registration
  /// of its image: ~2 ms of CPU and an fsync, session 15): run once, on the committer's thread,
  /// when the mount is next quiet as for the commits (LazyOptions::commit_quiet_s, no commit
  /// waiting), at the latest LazyOptions::commit_max_wait_s after this call, and when the
  /// provider stops if not before (its destructor returns after it). Without a committer
  /// (commit_quiet_s < 0, !sync_each_object, or not started) it runs at once on this thread.
  /// Once per provider.
  void when_quiet(std::function<void()> task);

  struct Impl;

 private:
  explicit LazyProvider(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The objects regular files at `paths` (absolute paths in the image, symlinks followed inside it)
/// name, in order, duplicates and files without an object skipped. Errors name a path that is
/// missing.
Result<std::vector<verity::Digest>> objects_of_paths(const erofs::Image& image,
                                                     const std::vector<std::string>& paths);

}  // namespace cfs::registry
