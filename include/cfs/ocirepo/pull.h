// SPDX-License-Identifier: Apache-2.0
// Importing an OCI image into a repository: the pipeline behind `cfs oci pull`, for every
// transport. A transport implements oci::ImageSource (cfs/oci/source.h: top(), manifest(),
// blob(), blob_size(); blob() may be called from several threads at once) and calls pull():
//
//   auto src = oci::open_source("oci:/srv/layout:latest");   // or a registry's ImageSource
//   auto r = ocirepo::pull(repo, **src, {});                  // r->image: the merged image id
//
// A transport whose blob bytes arrive by callback (a download writing into a sink) returns
// oci::push_source(...) from blob(): the fetch runs on its own thread, the import pulls.
//
// What pull() does (names: ocirepo/names.h):
//  1. resolves the manifest (platform choice in an index) and config, checked against their
//     descriptors (oci::resolve_image);
//  2. imports the layers, several at once, largest first: a layer whose stream
//     streams/oci-layer-<diff_id> exists is skipped without reading its blob; otherwise the blob
//     is decompressed and split into a splitstream (headers inline, contents over 64 bytes as
//     objects) while both its digest and its diff_id are computed; a mismatch with the manifest
//     or config fails the pull and names nothing; good layers are named by a background
//     thread, each batch after a syncfs that began once they were stored, so an interrupted
//     pull keeps the layers it finished without the pull waiting for their writeback; with
//     keep_blobs, the compressed blob itself is also kept as streams/oci-blob-<digest>
//     (written as it is read, named with the layer), so `cfs oci push` can send the image
//     byte for byte;
//  3. merges the layers in order (oci::Merger), each as soon as it and all before it are
//     stored, on the calling thread while later layers import, and writes the merged image
//     (format 1, the repository's algorithm) as an object;
//  4. writes the config stream (raw JSON, named refs to the layers and composefs.image.v1) and
//     the manifest stream (raw JSON, config:<digest>, the layers, and <blob digest> for each
//     kept blob), syncs once (covering layers the background thread has not synced), names
//     those layers, images/<id>, both streams, and then the tag streams/refs/oci/<tag>.
// A failure at any step leaves no tag and nothing a fsck calls broken (unnamed objects are
// garbage for gc). A file system out of space (ENOSPC or EDQUOT from any write, or the
// free-space reserve, PullOptions::min_free) is an error that says so, names the layer (its
// blob and diff_id) and how much of its tar was decompressed, and that `cfs repo gc` reclaims
// what the pull wrote; its code stays ENOSPC (EDQUOT).
// Thread-safety: one pull per Repository object at a time; several processes may pull into
// one repository at once (objects are content-addressed, names replaced atomically).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/digest.h"
#include "cfs/oci/image.h"
#include "cfs/oci/layer_input.h"
#include "cfs/oci/merge.h"
#include "cfs/oci/source.h"
#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::ocirepo {

/// What a progress callback is told. Calls are serialised (never two at once), from the
/// importing threads.
struct PullEvent {
  enum class Kind { kResolved, kLayerStart, kLayerBytes, kLayerDone, kLayerSkipped, kMerging };
  Kind kind = Kind::kResolved;
  std::size_t layer = 0;    ///< index in the manifest
  std::size_t layers = 0;   ///< how many layers the image has
  std::uint64_t bytes = 0;  ///< kLayerBytes / kLayerDone: blob bytes read so far
  std::uint64_t total = 0;  ///< the layer's blob size (manifest); kResolved: all distinct layers
  std::string diff_id;
  std::string blob;  ///< the layer's blob digest (kLayer*)
};

/// PullOptions::min_free's default (at most a twentieth of the file system).
inline constexpr std::uint64_t kDefaultMinFree = 1ull << 30;

struct PullOptions {
  /// nullopt: the running platform.
  std::optional<oci::Platform> platform;
  /// The tag to set; nullopt: the source's reference as given (composefs-rs' default);
  /// "" : no tag (the image is then garbage for gc unless tagged later).
  std::optional<std::string> tag;
  oci::MergeOptions merge;
  /// Layers imported at once; 0: the number of CPUs.
  unsigned jobs = 0;
  oci::LayerInputOptions input;
  /// Free space the import leaves on the repository's file system: every
  /// input.check_every bytes of a layer's tar (32 MiB), the space available there is read
  /// (fstatvfs), and below this the layer stops (ENOSPC, naming the layer, how much of it was
  /// decompressed and why; see below). nullopt: kDefaultMinFree, or a twentieth of the file
  /// system when that is less; 0: no reserve. A layer's size after decompression is bounded by
  /// nothing in the image (a small blob pinned by the manifest may inflate to terabytes), so
  /// the disk is what bounds it (docs/design.md "A pull keeps free space on the repository's
  /// file system").
  std::optional<std::uint64_t> min_free;
  /// Also keep each compressed layer blob as pulled (streams/oci-blob-<digest>; an
  /// uncompressed layer's blob is its tar, which the layer stream already rebuilds). A layer
  /// already in the repository without its blob is then pulled again.
  bool keep_blobs = false;
  std::function<void(const PullEvent&)> progress;
  /// Called with the name of each step as it happens (where a pull's time goes, e.g.
  /// "layer 0 stored", "merge layer 0 done", "image written"; CFS_PULL_TRACE), from several
  /// threads at once. May be empty.
  std::function<void(std::string_view)> trace;
};

struct PulledLayer {
  oci::ContentDigest diff_id;
  oci::ContentDigest blob;
  std::string compression;  ///< "none", "gzip", "zstd"; "" when skipped
  bool skipped = false;     ///< already in the repository
  std::uint64_t blob_bytes = 0;
  std::uint64_t tar_bytes = 0;
  std::uint64_t objects = 0;                  ///< distinct external objects of its stream
  verity::Digest stream;                      ///< the layer stream object
  std::optional<verity::Digest> blob_stream;  ///< streams/oci-blob-<blob>, when kept
};

struct PullResult {
  oci::ContentDigest manifest;
  oci::ContentDigest config;
  std::string tag;  ///< "" when none was set
  verity::Digest manifest_stream;
  verity::Digest config_stream;
  verity::Digest image;  ///< the merged image (images/<hex>)
  std::vector<PulledLayer> layers;
};

Result<PullResult> pull(repo::Repository& repo, oci::ImageSource& source,
                        const PullOptions& options);

/// `cfs oci import-layer`: one uncompressed layer tar read from `tar`, stored as
/// streams/oci-layer-<diff_id> after its sha256 was checked against `diff_id` (composefs-rs
/// does not check); an existing stream is kept. With `ref`, also streams/refs/REF. Returns the
/// stream object's digest.
Result<verity::Digest> import_layer(repo::Repository& repo, std::unique_ptr<oci::ByteSource> tar,
                                    const oci::ContentDigest& diff_id,
                                    const std::optional<std::string>& ref);

}  // namespace cfs::ocirepo
