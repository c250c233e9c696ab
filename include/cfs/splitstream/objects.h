// SPDX-License-Identifier: Apache-2.0
// How splitstreams reach external objects. The repository implements both interfaces (its
// object writer and its verified object opener); tests implement them in memory.
//
// Thread-safety: ObjectSink::put() and ObjectWriter::commit() are called from the splitstream
// writer's worker threads, concurrently with each other and with begin(); an implementation
// must be thread-safe. Each ObjectWriter is used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::splitstream {

/// An object being written in pieces (one too large to buffer in memory).
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;  ///< without commit(): the object is abandoned
  virtual Status write(std::span<const std::byte> data) = 0;
  /// Computes the fs-verity digest of everything written (4 KiB blocks, no salt, the sink's
  /// algorithm), stores the object under it (an existing object of that name is success) and
  /// returns it. Called once, possibly on another thread than write().
  virtual Result<verity::Digest> commit() = 0;
  /// The same for a caller that computed `digest` over exactly the bytes it wrote (the
  /// splitstream writer hashes a streamed object's pieces as they pass): an implementation may
  /// trust it instead of reading the object back. By default, commit() and a comparison.
  virtual Result<verity::Digest> commit_digested(const verity::Digest& digest) {
    CFS_ASSIGN(verity::Digest d, commit());
    if (d != digest)
      return fail(Errc::kInvalidInput, "splitstream: a streamed object's digest does not match");
    return d;
  }
};

/// Where a splitstream writer puts external objects.
class ObjectSink {
 public:
  virtual ~ObjectSink() = default;
  /// The digest algorithm of every object (and of the splitstream's header).
  virtual verity::HashAlg algorithm() const = 0;
  /// Stores `content`, whose fs-verity digest the caller computed. An existing object of that
  /// name is success (content addressing makes it the same object).
  virtual Status put(const verity::Digest& digest, std::span<const std::byte> content) = 0;
  /// Starts an object whose bytes arrive in pieces; `size` is its exact final size.
  virtual Result<std::unique_ptr<ObjectWriter>> begin(std::uint64_t size) = 0;
};

/// Opens an external object for reading by its digest (read with pread from offset 0 to
/// EOF). A repository checks fs-verity here where it can.
using ObjectOpener = std::function<Result<UniqueFd>(const verity::Digest&)>;

/// Receives reassembled bytes in order.
using ByteOutput = std::function<Status(std::span<const std::byte>)>;

}  // namespace cfs::splitstream
