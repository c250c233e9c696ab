// SPDX-License-Identifier: Apache-2.0
// Splitstreams in a repository (format: cfs/splitstream/format.h): reading one back whole.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "cfs/repo/repository.h"
#include "cfs/util/result.h"

namespace cfs::repo {

/// Writes the byte stream the splitstream `name` (a content id, or refs/NAME) stores to
/// out_fd: its inline bytes and the content of each external object, opened as
/// Repository::open_object does (fs-verity checked in a secure repository). The length must
/// be the stream size the splitstream records. Returns the bytes written.
Result<std::uint64_t> cat_stream(const Repository& repo, std::string_view name, int out_fd);

}  // namespace cfs::repo
