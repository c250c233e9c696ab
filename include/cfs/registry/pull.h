// SPDX-License-Identifier: Apache-2.0
// `cfs oci pull docker://...`: a registry image imported into a repository by the same pipeline
// as every other transport (ocirepo::pull over open_registry_source), with what only a registry
// adds: downloads that survive the process (REPO/cfs-downloads, a DownloadDir: kill -9 in the
// middle of a blob, run again, and the blob continues with a Range request; blobs finished
// before are not fetched again because their layers are already in the repository), and the
// seal check (--verify-seal): the merged image must be the one a seal attached to the pulled
// manifest names, its signature verified against a certificate when one is given, before the
// tag is set, and the seal is recorded in the repository (ocirepo/seal.h) for
// `cfs oci mount --require-seal`. A failed check leaves no tag (the imported objects are
// garbage for gc). A reference `cfs oci mount --lazy` registered, still naming the manifest it
// pinned, is finished instead of downloaded (lazy_fill.h): only missing objects and the bytes
// between them are fetched, and once tagged the image is no longer lazy.
// Thread-safety: as ocirepo::pull.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cfs/ocirepo/pull.h"
#include "cfs/registry/blob_io.h"
#include "cfs/registry/client.h"
#include "cfs/registry/lazy_fill.h"
#include "cfs/repo/repository.h"

namespace cfs::registry {

/// Below the repository: resumable downloads (blob_io.h layout). Not a composefs-rs name; the
/// repository's gc and fsck leave it alone, `cfs repo gc` sweeps it (sweep_downloads).
inline constexpr std::string_view kDownloadsDir = "cfs-downloads";

/// Removes the partial downloads of REPO/cfs-downloads older than `grace` that no running pull
/// holds (DownloadDir::sweep); nothing when the directory does not exist.
Result<SweepReport> sweep_downloads(const repo::Repository& repo, std::chrono::seconds grace,
                                    bool dry_run);

struct SealCheck {
  /// The certificate the seal's signature must verify with; nullopt: an unsigned seal (or a
  /// signed one, unverified) whose digest matches is enough.
  std::optional<std::string> cert;
};

struct RegistryPullOptions {
  ocirepo::PullOptions pull;
  std::optional<SealCheck> verify_seal;
  /// Finishing a lazy registration (lazy_fill.h): objects and gaps fetched at once, progress.
  unsigned fetchers = 4;
  std::function<void(const FillProgress&)> fill_progress;
};

struct RegistryPull {
  ocirepo::PullResult result;
  /// Set when the reference was registered by `cfs oci mount --lazy` and its fill was finished.
  std::optional<FillResult> fill;
  std::optional<oci::ContentDigest> seal;  ///< the seal artifact that vouched for the image
};

Result<RegistryPull> pull_image(repo::Repository& repo, Client& client, std::string_view reference,
                                const RegistryPullOptions& options);

}  // namespace cfs::registry
