// SPDX-License-Identifier: Apache-2.0
// Finishing a lazily registered image (`cfs oci pull` of an image `cfs oci mount --lazy`
// registered, docs/lazy.md "Finishing the fill"): the repository ends up as a normal pull would
// leave it, while only the bytes not yet in the repository cross the network.
//
//  1. Fetching. A range-fetchable layer's blob is, in order, the objects' ranges and the bytes
//     between them (tar headers, padding, files of 64 bytes or less, objects placed in a lower
//     layer; for zstd:chunked the frames holding them). Each run of consecutive gaps and missing
//     objects (up to an object already in the repository, which is never fetched again, or
//     8 MiB) is fetched with one Range request, `fetchers` runs at a time; the objects in it go
//     through the lazy provider (registry/lazy.h) served from that run in memory: verified
//     against their fs-verity digests before they are committed, whole or not at all. Missing
//     objects over 4 MiB, and those of layers not rebuilt, are fetched by the provider with a
//     Range request each, in reverse index order (a lazy mount's fill runs in index order; an
//     object another process is fetching is waited for, not fetched again: repo::FetchLock).
//  2. Layer streams: each layer tar is rebuilt from the gaps (zstd frames decompressed) and the
//     objects in the repository, and imported as streams/oci-layer-<diff_id> by
//     ocirepo::import_layer, which checks the tar's sha256 against the diff_id of the config
//     (trusted: the config is checked against the manifest digest the lazy registration
//     pinned). A layer that is not range-fetchable (gzip), whose index entries do not tile its
//     blob, or of which more than 7/8 of the blob is still missing (a layer the lazy mount barely
//     touched: one stream through the importer is faster than an object at a time, for at most
//     1/7 more bytes) is left to the pull, which downloads it whole; objects the index places
//     in such a layer are not fetched by ranges.
// The caller (registry::pull_image) then runs the normal pull, which finds every layer stream
// and only merges, writes the config and manifest streams and tags; then forget_lazy() removes
// the lazy markers. An interrupted fill keeps what it committed (objects, named layer streams);
// the lazy markers stay until the end, so fsck calls the missing objects notes, not problems.
// Thread-safety: functions only; see Client and Repository.
#pragma once

#include <cstdint>
#include <functional>

#include "cfs/oci/source.h"
#include "cfs/registry/client.h"
#include "cfs/registry/lazy.h"
#include "cfs/registry/lazy_image.h"
#include "cfs/repo/repository.h"
#include "cfs/util/result.h"

namespace cfs::registry {

struct FillOptions {
  /// Objects (and gaps) fetched at once.
  unsigned fetchers = 4;
  /// After each object or gap (serialised); may be empty. Totals cover both.
  std::function<void(const FillProgress&)> progress;
};

struct FillResult {
  std::uint64_t objects_fetched = 0;  ///< by this call (not found present)
  std::uint64_t object_bytes = 0;     ///< blob bytes of the objects fetched
  std::uint64_t gap_bytes = 0;        ///< blob bytes between objects fetched for layer streams
  std::uint64_t runs = 0;             ///< Range requests of gaps and the objects between them
  std::uint64_t layers_rebuilt = 0;   ///< layer streams imported from ranges
};

/// Steps 1 and 2 above for `lazy` (a registration, registered_lazy_image()), whose manifest is
/// `image` (resolved from lazy.source, which pins the manifest digest). Errors: the first
/// object that failed (EIO naming it; nothing stored for it), a gap fetch, a rebuilt tar whose
/// sha256 is not the diff_id (kDigestMismatch; no stream named).
Result<FillResult> finish_fill(repo::Repository& repo, Client& client, const LazyImage& lazy,
                               const oci::ResolvedImage& image, const FillOptions& options = {});

}  // namespace cfs::registry
