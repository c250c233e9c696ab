// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/blob_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/util/sys_link.h"

namespace cfs::registry {
namespace {

constexpr std::size_t kReplayChunk = 1u << 20;

}  // namespace

Status BlobSink::restart() {
  return fail(Errc::kUnsupportedFeature, "this output cannot start over");
}

FdBlobSink::FdBlobSink(int fd, std::string what) : fd_(fd), what_(std::move(what)) {}

Status FdBlobSink::write(std::span<const std::byte> data) {
  if (!start_) {
    // Only a regular file can be rewound; remember where this blob started in it.
    auto st = sys::fstat(fd_, what_);
    start_ = 0;
    if (st && S_ISREG(st->st_mode)) {
      off_t pos = ::lseek(fd_, 0, SEEK_CUR);
      if (pos >= 0) start_ = static_cast<std::uint64_t>(pos);
    } else {
      start_ = UINT64_MAX;  // not rewindable
    }
  }
  return sys::write_all(fd_, data).map_error(
      [&](Error e) { return std::move(e).with_context("write " + what_); });
}

Status FdBlobSink::restart() {
  if (!start_) return {};  // nothing written yet
  if (*start_ == UINT64_MAX) return BlobSink::restart();
  CFS_TRY(sys::ftruncate(fd_, *start_, what_));
  if (::lseek(fd_, static_cast<off_t>(*start_), SEEK_SET) < 0)
    return fail(Errc::kUnsupportedFeature, "cannot rewind " + what_);
  return {};
}

FileBlobSource::FileBlobSource(UniqueFd fd, std::uint64_t size, std::string path)
    : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}

Result<FileBlobSource> FileBlobSource::open(const std::string& path) {
  CFS_ASSIGN(auto fd, sys::open(path, O_RDONLY));
  CFS_ASSIGN(auto st, sys::fstat(fd.get(), path));
  if (!S_ISREG(st.st_mode)) return fail(Errc::kInvalidInput, path + ": not a regular file");
  return FileBlobSource(std::move(fd), static_cast<std::uint64_t>(st.st_size), path);
}

Result<std::size_t> FileBlobSource::read_at(std::uint64_t offset, std::span<std::byte> buf) {
  return sys::pread_full(fd_.get(), buf, offset).map_error([&](Error e) {
    return std::move(e).with_context("read " + path_);
  });
}

Result<std::size_t> MemoryBlobSource::read_at(std::uint64_t offset, std::span<std::byte> buf) {
  if (offset >= bytes_.size()) return std::size_t{0};
  const std::size_t n = std::min<std::uint64_t>(buf.size(), bytes_.size() - offset);
  std::memcpy(buf.data(), bytes_.data() + offset, n);
  return n;
}

Result<oci::ContentDigest> hash_source(BlobSource& src, const std::string& algorithm) {
  oci::ContentHasher hasher(algorithm);
  AlignedBuffer aligned;
  const std::span<std::byte> buf = aligned.get(kReplayChunk);
  for (std::uint64_t off = 0; off < src.size();) {
    CFS_ASSIGN(auto got, src.read_at(off, buf));
    if (got == 0) return fail(Errc::kInvalidInput, "upload source ended early");
    hasher.update(std::span(buf.data(), got));
    off += got;
  }
  return hasher.finish();
}

PartialBlob::PartialBlob(UniqueFd dirfd, UniqueFd fd, oci::ContentDigest d, std::uint64_t size)
    : dirfd_(std::move(dirfd)), fd_(std::move(fd)), digest_(std::move(d)), size_(size) {}

Status PartialBlob::replay(const std::function<Status(std::span<const std::byte>)>& fn) const {
  AlignedBuffer aligned;
  const std::span<std::byte> buf = aligned.get(kReplayChunk);
  for (std::uint64_t off = 0; off < size_;) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - off));
    CFS_ASSIGN(auto got, sys::pread_full(fd_.get(), std::span(buf.data(), want), off));
    if (got != want)
      return fail(Errc::kInvalidInput, "partial download of " + digest_.str() + " shrank");
    CFS_TRY(fn(std::span(buf.data(), got)));
    off += got;
  }
  return {};
}

Status PartialBlob::append(std::span<const std::byte> data) {
  CFS_TRY(sys::pwrite_all(fd_.get(), data, size_));
  size_ += data.size();
  return {};
}

Status PartialBlob::truncate() {
  CFS_TRY(sys::ftruncate(fd_.get(), 0, digest_.hex + ".partial"));
  size_ = 0;
  return {};
}

Status PartialBlob::finish(bool keep) {
  std::string partial = digest_.hex + ".partial";
  if (keep) {
    CFS_TRY(sys::fsync(fd_.get(), partial));
    CFS_TRY(sys::renameat(dirfd_.get(), partial, dirfd_.get(), digest_.hex));
    CFS_TRY(sys::fsync(dirfd_.get(), "download directory"));
  } else {
    CFS_TRY(sys::unlinkat(dirfd_.get(), partial, 0));
  }
  return fd_.close();
}

Result<DownloadDir> DownloadDir::open(const std::string& path) {
  CFS_TRY(sys::mkdirat_p(AT_FDCWD, path + "/sha256", 0755));
  CFS_ASSIGN(auto fd, sys::open(path, O_RDONLY | O_DIRECTORY));
  return DownloadDir(std::move(fd), path);
}

Result<UniqueFd> DownloadDir::alg_dir(const oci::ContentDigest& d) const {
  std::string name(d.algorithm);
  CFS_TRY(sys::mkdirat_p(fd_.get(), name, 0755));
  return sys::openat(fd_.get(), name, O_RDONLY | O_DIRECTORY);
}

std::string DownloadDir::complete_path(const oci::ContentDigest& d) const {
  return path_ + "/" + d.algorithm + "/" + d.hex;
}

Result<std::optional<UniqueFd>> DownloadDir::open_complete(const oci::ContentDigest& d) const {
  auto fd = sys::openat(fd_.get(), d.algorithm + "/" + d.hex, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error().is_errno(ENOENT)) return std::nullopt;
    return fail(std::move(fd).error());
  }
  return std::optional<UniqueFd>(std::move(*fd));
}

Result<PartialBlob> DownloadDir::begin(const oci::ContentDigest& d) const {
  CFS_ASSIGN(auto dir, alg_dir(d));
  std::string name = d.hex + ".partial";
  CFS_ASSIGN(auto fd, sys::openat(dir.get(), name, O_RDWR | O_CREAT | O_NOFOLLOW, 0644));
  CFS_TRY(sys::flock(fd.get(), LOCK_EX, path_ + "/" + name));
  // The holder of the lock before us may have finished and removed or renamed the file we
  // opened; a fresh open after the lock sees the current state.
  CFS_ASSIGN(auto st, sys::fstat(fd.get(), name));
  if (st.st_nlink == 0) return begin(d);
  return PartialBlob(std::move(dir), std::move(fd), d, static_cast<std::uint64_t>(st.st_size));
}

Status DownloadDir::remove(const oci::ContentDigest& d) const {
  std::string dir(d.algorithm);
  for (const auto& name : {dir + "/" + d.hex, dir + "/" + d.hex + ".partial"}) {
    auto st = sys::unlinkat(fd_.get(), name, 0);
    if (!st && !st.error().is_errno(ENOENT)) return st;
  }
  return {};
}

Result<SweepReport> DownloadDir::sweep(std::chrono::seconds grace, bool dry_run) const {
  SweepReport rep;
  const auto now = std::chrono::system_clock::now();
  CFS_ASSIGN(auto algs, sys::read_dir_names(fd_.get(), "."));
  for (const auto& alg : algs) {
    if (alg != "sha256" && alg != "sha512") continue;
    auto dir = sys::openat(fd_.get(), alg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!dir) continue;  // not a directory: not ours
    CFS_ASSIGN(auto names, sys::read_dir_names(dir->get(), "."));
    for (const auto& name : names) {
      // O_NONBLOCK: a FIFO planted here must not hang gc.
      auto fd = sys::openat(dir->get(), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      if (!fd) continue;
      CFS_ASSIGN(auto st, sys::fstat(fd->get(), name));
      if (!S_ISREG(st.st_mode)) continue;
      const auto mtime = std::chrono::system_clock::from_time_t(st.st_mtim.tv_sec);
      if (now - mtime < grace) {
        ++rep.kept_recent;
        continue;
      }
      CFS_ASSIGN(bool locked, sys::flock(fd->get(), LOCK_EX | LOCK_NB, path_ + "/" + name));
      if (!locked) {
        ++rep.kept_locked;
        continue;
      }
      if (!dry_run) {
        auto gone = sys::unlinkat(dir->get(), name, 0);
        if (!gone && !gone.error().is_errno(ENOENT)) return fail(std::move(gone).error());
      }
      ++rep.removed;
      rep.bytes += static_cast<std::uint64_t>(st.st_size);
    }
  }
  return rep;
}

}  // namespace cfs::registry
