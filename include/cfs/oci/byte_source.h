// SPDX-License-Identifier: Apache-2.0
// Pull-style byte streams that OCI blobs and layers flow through: files, ranges of a file (a
// member of an archive), memory, and wrappers that decompress (decompress.h) or hash
// (digest.h) what passes. A registry client implements ByteSource for a blob download.
// Thread-safety: one thread per source.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"

namespace cfs::oci {

struct ContentDigest;
class ReadRing;

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  /// Reads up to buf.size() bytes; returns 0 only at the end of the stream.
  virtual Result<std::size_t> read(std::span<std::byte> buf) = 0;
  /// How many bytes the stream holds from where it was opened, when the source knows that
  /// before reading (a regular file, an archive member, memory, a download with a length);
  /// nullopt otherwise. A hint for progress and early checks: readers still count.
  virtual std::optional<std::uint64_t> known_size() const { return std::nullopt; }
  /// The digest this source checks its bytes against before it reports their end (a registry
  /// download verifies what it fetched, and a failed check is a read error, never an end): a
  /// reader that reads to the end need not hash the same bytes again. nullptr (the default):
  /// the source checks nothing. Valid for the source's lifetime.
  virtual const ContentDigest* verified_digest() const { return nullptr; }
  /// The ring this source reads into, when it is one (its consumer may look at the bytes in
  /// place instead of reading copies: split_tar does).
  virtual ReadRing* read_ring() noexcept { return nullptr; }
};

/// Reads until `buf` is full or the stream ends; returns the bytes read.
Result<std::size_t> read_full(ByteSource& src, std::span<std::byte> buf);

/// The whole rest of a stream, refused (kInvalidInput naming `what`) past `max_size` bytes.
Result<std::string> read_all(ByteSource& src, std::uint64_t max_size, const std::string& what);

/// A file read sequentially from its current offset (pipes and stdin too).
std::unique_ptr<ByteSource> fd_source(UniqueFd fd, std::string what);
/// `length` bytes of a file starting at `offset`, read with pread (archive members). The fd
/// is borrowed and must outlive the source. Ends early (kInvalidInput) if the file is shorter.
std::unique_ptr<ByteSource> range_source(int fd, std::uint64_t offset, std::uint64_t length,
                                         std::string what);
std::unique_ptr<ByteSource> memory_source(std::string data);

/// Receives the next bytes of a pushed stream (see push_source).
using PushWrite = std::function<Status(std::span<const std::byte>)>;

/// Turns a producer that pushes bytes (a download that calls a sink, as a registry client's
/// blob fetch does) into a ByteSource to pull from: `produce` runs on a background thread and
/// calls `write` with consecutive pieces, which reads return in order; `write` blocks while
/// more than `max_buffered` bytes wait. The stream ends when `produce` returns: with success,
/// or with its error, which the read reaching it returns. Destroying the source early makes
/// every later `write` fail (kConflict, "reader closed") so the producer stops, and waits for
/// it. This is how a transport whose blobs arrive by callback implements ImageSource::blob().
std::unique_ptr<ByteSource> push_source(std::function<Status(const PushWrite& write)> produce,
                                        std::size_t max_buffered = 8u << 20);

}  // namespace cfs::oci
