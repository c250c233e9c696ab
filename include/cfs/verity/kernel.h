// SPDX-License-Identifier: Apache-2.0
// The kernel's fs-verity interface (Linux >= 5.4; ext4, f2fs, btrfs). Every call reports a
// kernel or filesystem without fs-verity as Errc::kUnsupportedFeature ("fs-verity not
// supported by this kernel/filesystem"), and a file without verity enabled as
// Errc::kObjectMissing ("fs-verity not enabled"), so callers can fall back to userspace.
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::verity {

/// FS_IOC_ENABLE_VERITY. fd must be open read-only with no writers (the kernel refuses with
/// ETXTBSY otherwise). Takes as long as hashing the whole file in the kernel.
Status enable_verity(int fd, const Params& p, const std::string& what);

/// FS_IOC_MEASURE_VERITY: the file digest the kernel holds (O(1), nothing is hashed).
Result<Digest> measure_verity(int fd, const std::string& what);

/// FS_IOC_READ_VERITY_METADATA: the Merkle tree in kernel order (top level first), or the
/// 256-byte fsverity_descriptor (Linux >= 5.12).
Result<std::vector<std::uint8_t>> read_verity_merkle_tree(int fd, const std::string& what);
Result<std::vector<std::uint8_t>> read_verity_descriptor(int fd, const std::string& what);

/// True when `e` means "no fs-verity here" (unsupported or not enabled): use userspace.
bool is_verity_unavailable(const Error& e) noexcept;

/// True when `e` (from measure_verity) means the kernel or the filesystem has no fs-verity at
/// all, not only this file (none enabled, or an algorithm cfs does not know).
bool is_verity_unsupported_here(const Error& e) noexcept;

}  // namespace cfs::verity
