// SPDX-License-Identifier: Apache-2.0
// Level 0 of a Merkle tree straight from a file: the data blocks of a byte range are hashed in
// place from mapped windows, or read with pread into per-thread buffers, on several threads
// (leaves are independent).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"
#include "verity/block_hasher_internal.h"

namespace cfs::verity::detail {

/// How hash_leaves reads the file: mapped windows hashed in place (ranges of a MiB or more, with
/// the SHA-256 kernels), or pread into per-thread buffers (always for smaller ranges and the
/// OpenSSL path). The default is mapped_reads_preferred() (cfs/util/mapped_file.h: Intel maps,
/// others read; CFS_READ_MODE=map|pread); tests and benchmarks force one with set_read_mode
/// (kAuto restores the default).
enum class ReadMode { kAuto, kPread, kMap };
void set_read_mode(ReadMode m) noexcept;
ReadMode active_read_mode() noexcept;

/// Hashes the blocks of [offset, offset + len) of fd (offset a multiple of the block size; len
/// too unless the range ends at EOF, whose last block is zero-padded) into consecutive digests
/// at out. A short read (the file shrank) is an error naming `what`, also when mapped pages
/// past the new end fault (SIGBUS is caught for the windows being hashed; see leaves.cc).
Status hash_leaves(const BlockHasher& h, int fd, std::uint64_t offset, std::uint64_t len,
                   std::uint8_t* out, unsigned threads, const std::string& what);

/// Same over memory.
void hash_leaves_mem(const BlockHasher& h, const std::uint8_t* data, std::size_t len,
                     std::uint8_t* out, unsigned threads);

/// A per-thread BlockHasher for these parameters, so many small files do not rebuild the
/// salted state for each file. Valid until the next call on the same thread with other params.
const BlockHasher& cached_hasher(const Params& p);

/// 0 -> all available CPUs.
unsigned resolve_threads(unsigned threads);

}  // namespace cfs::verity::detail
