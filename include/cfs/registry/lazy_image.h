// SPDX-License-Identifier: Apache-2.0
// The image a lazy mount serves (`cfs oci mount --lazy`, docs/lazy.md), and where its missing
// objects come from: the pipeline from a SOURCE to a registered image, so the command only parses
// arguments, mounts and prints.
//
// SOURCE docker://…: the manifest, the merged image and the object index are fetched and checked
// (fetch_lazy_metadata), and the image is registered in the repository (images/<hex>,
// images/refs/lazy/<encoded source>) with the index, the loader graph when the metadata has one,
// and the source beside it (repo/lazy.h), parts
// first and the ref last, so a crash leaves at worst unused parts (gc removes them); a caller
// that serves the checked copy may make the registration later (defer_registration). SOURCE NAME:
// an image registered that way before, or one `cfs oci pull docker://…` pulled whole (its origin
// is recorded): the lazy metadata of exactly the manifest it was pulled as is fetched and must
// describe the same merged image, so objects that went missing are fetched like a lazy image's.
// Thread-safety: functions only; see Client and Repository.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cfs/ocirepo/object_index.h"
#include "cfs/registry/client.h"
#include "cfs/registry/lazy_metadata.h"
#include "cfs/registry/reference.h"
#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::registry {

struct LazyImageOptions {
  /// Platform and seal requirements. A required seal also rules out the offline fallback.
  LazyFetchOptions fetch;
  /// An image without lazy metadata (pushed by another tool) is pulled whole, as `cfs oci pull`
  /// would (seal checks included); false: an error naming `cfs oci pull`.
  bool full_pull = true;
  /// A docker:// SOURCE registered by an earlier lazy mount (and no seal required): give up on
  /// the registry after this many seconds (Client::give_up_at) and serve that registration,
  /// instead of the client's retries (5, 31 s in all by default). The mount passes its
  /// --timeout, the longest a read waits for the registry. 0: the client's retries. Without a
  /// registration to fall back to, the client's retries always.
  double offline_after_s = 0;
  /// One line for the user when a fallback is taken (the full pull, an unreachable registry);
  /// may be empty.
  std::function<void(const std::string&)> notice;
  /// A docker:// SOURCE whose metadata is fetched now: return before the image is registered,
  /// with what registering it needs in LazyImage::pending, for the caller to complete with
  /// complete_registration() once it serves (the registration's fsyncs are then not on the
  /// mount's start-up path). Every check is made before this returns either way.
  bool defer_registration = false;
};

/// A registration open_lazy_image() left to its caller (LazyImageOptions::defer_registration):
/// the checked bytes and the parts, as open_lazy_image() would have written them.
struct PendingRegistration {
  Reference ref;
  std::string source;
  oci::ContentDigest manifest;
  verity::Digest image;
  FetchedErofs erofs;          ///< the bytes whose fs-verity digest is `image` (checked)
  std::string index_json;      ///< the index document as fetched
  bool compact_index = false;  ///< index_json is the compact one (LazyMetadata::compact_index)
  /// The loader graph document as fetched (LazyMetadata::loader_graph_json); empty: none.
  std::string loader_graph_json;
  /// An exclusive flock on REPO/cfs-lazy/<encoded source>.registering, held (across a fork too)
  /// until complete_registration() is done: lazy_registration() of the same source waits for
  /// it, so a `cfs oci pull SOURCE` right after the mount returned finishes the lazy image
  /// rather than pulling it as a new one.
  UniqueFd lock;
};

struct LazyImage {
  verity::Digest image;  ///< the merged image, in the repository
  /// True: every object is in the repository (the image had no lazy metadata and was pulled
  /// whole); source and index are then empty.
  bool pulled_whole = false;
  /// The registry could not be reached: an earlier registration of the source is served.
  bool offline = false;
  Reference source;            ///< the registry repository the objects are fetched from
  ocirepo::ObjectIndex index;  ///< where each object's bytes are
  /// The loader graph of index's objects, when the metadata has one: fetched now, or kept by
  /// the registration beside the index (an earlier registration mounted again, offline or by
  /// NAME). Empty for a registration made by a cfs before session 13's: such a mount learns
  /// each program's libraries as it fetches them.
  LoaderGraph loader_graph;
  /// When this call fetched the image: a sealed memfd holding exactly the bytes whose fs-verity
  /// digest was found to be `image` (and the index's, the annotation's, a seal's). Serving these
  /// needs no second pass over the image (repo::prepare_mount's, or a sealed copy's); the
  /// repository's file may predate them. Closed (-1) for an earlier registration or a full pull.
  UniqueFd erofs;
  /// When this call fetched the metadata: the link as measured meanwhile (else zero).
  LinkEstimate link;
  /// With LazyImageOptions::defer_registration, when the metadata was fetched now: the
  /// registration still to make (the image is not in the repository yet).
  std::optional<PendingRegistration> pending;
};

/// Registers what open_lazy_image() left pending, exactly as it would have: the image object
/// (fsynced before it is named; a file of other bytes under its name replaced atomically), the
/// index and source parts, then images/<hex> and the ref. A crash at any point leaves at worst an
/// unnamed image object or unused parts (gc removes them), as a crash inside open_lazy_image().
/// `trace` (may be empty) gets "registered".
Status complete_registration(repo::Repository& repo, PendingRegistration pending,
                             const std::function<void(std::string_view)>& trace = {});

/// Drops what open_lazy_image() left pending, for a caller that will not serve the image after
/// all (a failure or an interrupt before the mount): removes the .registering file and releases
/// its lock, as complete_registration() does; nothing is registered.
void abandon_registration(repo::Repository& repo, PendingRegistration pending);

/// Records that `image` was pulled from `ref` as `manifest` (REPO/cfs-lazy/<hex>.origin), for
/// open_lazy_image(NAME). Called by pull_image after the image is tagged.
Status record_origin(repo::Repository& repo, const verity::Digest& image, const Reference& ref,
                     const oci::ContentDigest& manifest);

/// The registration an earlier `cfs oci mount --lazy SOURCE` made (its ref, source and index),
/// or nullopt when there is none (never asks the registry). Waits while a lazy mount of SOURCE
/// that already serves is still registering it (PendingRegistration::lock).
Result<std::optional<LazyImage>> lazy_registration(const repo::Repository& repo,
                                                   std::string_view source);
/// Makes a complete lazy registration an ordinary image: removes the lazy markers (the source
/// part first: then fsck treats missing objects as problems again, then the index) and the ref
/// lazy/<SOURCE>; the image stays (a tag or a mount keeps it).
Status forget_lazy_registration(repo::Repository& repo, const verity::Digest& image,
                                std::string_view source);

/// The image SOURCE names, registered (or found registered) in `repo` (opened for writing),
/// with what fetching its objects needs. Errors: those of fetch_lazy_metadata and pull_image;
/// kObjectMissing for a name that is not registered and has no recorded origin, or whose origin
/// has no lazy metadata; kCorruptImage when the origin's lazy metadata describes another image;
/// kUnsupportedFeature when the index's digests are not the repository's algorithm.
Result<LazyImage> open_lazy_image(repo::Repository& repo, Client& client, std::string_view source,
                                  const LazyImageOptions& options = {});

}  // namespace cfs::registry
