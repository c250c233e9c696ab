// SPDX-License-Identifier: Apache-2.0
// The files the dynamic loader opens for an ELF file, resolved inside a merged composefs image
// (the lazy provider's ELF hints, lazy.cc), and the path resolution of an image that the
// provider's --prefetch list and directory walk share: one home, apart from the provider's
// fetching, so that it can be tested on its own and used by anything else that needs it (a
// push-time loader graph was tried in session 12: docs/design.md).
//
// The image and the ELF files are untrusted: paths are resolved as the kernel would inside the
// image (symlinks followed, ".." never above its root, at most 40 links), and the work per ELF
// file is bounded (kMaxLoaderLookups) so that a hostile tree (a DT_RUNPATH of 2,000 directories
// times 1,024 DT_NEEDED names) costs at most that many lookups. Misses are skipped: hints only.
// Thread-safety: functions only; erofs::Image is safe to read concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"
#include "registry/elf.h"

namespace cfs::registry::detail {

/// Most path lookups (follow_path calls) for one ELF file's libraries.
inline constexpr std::size_t kMaxLoaderLookups = 4096;

/// The object a regular file of the image names, if any.
Result<std::optional<verity::Digest>> object_of(const erofs::Image& image, std::uint64_t nid);

/// Resolves `path` in the image as the kernel would inside it (a chroot): symlinks are followed
/// in every component, absolute targets from the image's root, ".." never above it. nullopt
/// when something is missing, is not a directory, or there are more than 40 links.
Result<std::optional<std::uint64_t>> follow_path(const erofs::Image& image, std::string_view path);

/// The objects of the files the dynamic loader will open for an ELF file with `info`, in the
/// order it opens them: its interpreter, /etc/ld.so.cache (glibc), then each DT_NEEDED library
/// found in DT_RUNPATH/DT_RPATH (absolute entries; $ORIGIN needs the file's path, which an
/// object does not have) and the standard directories (multiarch first, as Debian's ld.so.conf
/// orders them). Misses are skipped; at most kMaxLoaderLookups lookups.
std::vector<verity::Digest> loader_objects(const erofs::Image& image, const ElfLoadInfo& info);

}  // namespace cfs::registry::detail
