// SPDX-License-Identifier: Apache-2.0
// Where downloaded blob bytes go (BlobSink), where uploaded ones come from (BlobSource), and the
// download directory that makes interrupted downloads resumable (DownloadDir).
//
// Download directory layout (documented in docs/registry.md; the repository keeps one of these
// under its own directory, which its GC and fsck leave alone):
//
//   DIR/<alg>/<hex>.partial   the first N bytes of a blob being downloaded; N is the file size.
//                             An exclusive flock(2) is held on it while a process downloads, so
//                             a second process waits instead of writing the same file.
//   DIR/<alg>/<hex>           a complete blob whose digest was verified (kept on request only).
//
// Bytes reach the .partial file before the sink sees them, so after kill -9 (or a power cut:
// see the client) the file holds a prefix of what was received, and the next fetch replays it
// to its sink, hashes it, and asks the registry for the rest with `Range: bytes=N-`. The hash
// state is never saved: re-hashing the prefix costs less than the network time it saves, and a
// prefix damaged by a crash is then caught by the final digest check, after which the client
// starts that blob over once from byte 0. DIR is laid out like an OCI layout's blobs/ directory.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "cfs/registry/reference.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::registry {

/// How many bytes of a blob the client gathers before it passes them on (BlobSink::gather_bytes):
/// curl hands over a body in 16 KiB pieces whatever its buffer size, and a sink that writes
/// them to a file or hands them to another thread does better with fewer, larger pieces
/// (bench/README.md, session 9).
inline constexpr std::size_t kGatherBytes = 512u << 10;

/// Receives a blob's bytes in order. The bytes are unverified until the fetch returns success:
/// a sink must not publish anything (register a layer, rename an output) before that.
class BlobSink {
 public:
  virtual ~BlobSink() = default;
  /// The next bytes. An error aborts the fetch and is returned by it unchanged.
  virtual Status write(std::span<const std::byte> data) = 0;
  /// At least how many bytes each write() gets (the last one of a response may get fewer):
  /// kGatherBytes by default. A sink that works on the bytes as they arrive (decodes and hashes
  /// them, as a lazy mount's metadata) asks for 0, every piece as it comes: otherwise a blob
  /// smaller than kGatherBytes reaches it whole after its last byte, and its work follows the
  /// transfer instead of overlapping it (bench/README.md, host D, session 20).
  virtual std::size_t gather_bytes() const { return kGatherBytes; }
  /// Everything written so far is void; the blob will be written again from byte 0. Called
  /// only when a resumed download turned out to have a damaged prefix. The default refuses
  /// (the fetch then fails with the digest mismatch).
  virtual Status restart();
};

/// Bytes [offset, offset + length) of a blob, for `sink` (Client::fetch_ranges).
struct BlobRange {
  std::uint64_t offset = 0, length = 0;
  BlobSink* sink = nullptr;
};

/// A sink that drops the bytes: for fetches whose only output is the download directory.
class DiscardSink : public BlobSink {
 public:
  Status write(std::span<const std::byte>) override { return {}; }
  Status restart() override { return {}; }
};

/// A sink that collects a (small) blob in memory.
class StringBlobSink : public BlobSink {
 public:
  Status write(std::span<const std::byte> data) override {
    out.append(reinterpret_cast<const char*>(data.data()), data.size());
    return {};
  }
  Status restart() override {
    out.clear();
    return {};
  }
  std::string out;
};

/// A sink that appends to a file descriptor (stdout, an output file). restart() works only on
/// a regular file (it truncates to the offset the sink started at).
class FdBlobSink : public BlobSink {
 public:
  FdBlobSink(int fd, std::string what);
  Status write(std::span<const std::byte> data) override;
  Status restart() override;

 private:
  int fd_;
  std::string what_;
  std::optional<std::uint64_t> start_;  // offset of the first byte, for restart()
};

/// Random-access bytes of a blob to upload (retries and chunked uploads re-read ranges).
class BlobSource {
 public:
  virtual ~BlobSource() = default;
  virtual std::uint64_t size() const = 0;
  /// Reads up to buf.size() bytes at offset; fewer only at the end.
  virtual Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) = 0;
};

/// Reads a whole source and returns its digest (what an upload must be announced with).
Result<oci::ContentDigest> hash_source(BlobSource& src, const std::string& algorithm = "sha256");

/// A BlobSource over bytes in memory (borrowed: they must outlive the source).
class MemoryBlobSource : public BlobSource {
 public:
  explicit MemoryBlobSource(std::span<const std::byte> bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override;

 private:
  std::span<const std::byte> bytes_;
};

/// A BlobSource over an open regular file (the whole file).
class FileBlobSource : public BlobSource {
 public:
  /// Opens `path` read-only and records its size.
  static Result<FileBlobSource> open(const std::string& path);
  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override;

 private:
  FileBlobSource(UniqueFd fd, std::uint64_t size, std::string path);
  UniqueFd fd_;
  std::uint64_t size_;
  std::string path_;
};

/// One blob being downloaded into a DownloadDir: its .partial file, locked. Move-only; the
/// destructor releases the lock and keeps the partial for a later resume.
class PartialBlob {
 public:
  PartialBlob(PartialBlob&&) noexcept = default;
  PartialBlob& operator=(PartialBlob&&) noexcept = default;
  ~PartialBlob() = default;

  const oci::ContentDigest& digest() const noexcept { return digest_; }
  /// Bytes already in the file.
  std::uint64_t size() const noexcept { return size_; }
  /// Reads the prefix back, in chunks, into `sink` (and whatever the caller hashes).
  Status replay(const std::function<Status(std::span<const std::byte>)>& fn) const;
  Status append(std::span<const std::byte> data);
  /// Drops every byte (the prefix was wrong).
  Status truncate();
  /// The blob is complete and verified: with `keep`, fsync and rename it to DIR/<alg>/<hex>,
  /// else remove it.
  Status finish(bool keep);

 private:
  friend class DownloadDir;
  PartialBlob(UniqueFd dirfd, UniqueFd fd, oci::ContentDigest d, std::uint64_t size);
  UniqueFd dirfd_;  // DIR/<alg>
  UniqueFd fd_;
  oci::ContentDigest digest_;
  std::uint64_t size_;
};

/// What DownloadDir::sweep() found.
struct SweepReport {
  std::size_t removed = 0;      ///< files removed (or, dry run, that would be)
  std::uint64_t bytes = 0;      ///< their size
  std::size_t kept_recent = 0;  ///< younger than the grace period
  std::size_t kept_locked = 0;  ///< a running download holds them
};

class DownloadDir {
 public:
  /// Opens (creating it and DIR/sha256 if needed) a download directory.
  static Result<DownloadDir> open(const std::string& path);

  const std::string& path() const noexcept { return path_; }
  /// DIR/<alg>/<hex>, whether or not it exists.
  std::string complete_path(const oci::ContentDigest& d) const;
  /// The complete blob opened read-only, or nullopt if there is none.
  Result<std::optional<UniqueFd>> open_complete(const oci::ContentDigest& d) const;
  /// Opens or creates DIR/<alg>/<hex>.partial and takes its lock, waiting while another
  /// process holds it.
  Result<PartialBlob> begin(const oci::ContentDigest& d) const;
  /// Removes both files of a digest (missing ones are fine).
  Status remove(const oci::ContentDigest& d) const;
  /// Removes the files of DIR/<alg>/ not modified for `grace` and not locked by a running
  /// download (each is locked while it is unlinked, so a process waiting in begin() for it
  /// reopens a fresh one); anything else in DIR is left alone. Safe against a crash at any
  /// moment: a file is gone or still whole.
  Result<SweepReport> sweep(std::chrono::seconds grace, bool dry_run) const;

 private:
  DownloadDir(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Result<UniqueFd> alg_dir(const oci::ContentDigest& d) const;
  UniqueFd fd_;
  std::string path_;
};

}  // namespace cfs::registry
