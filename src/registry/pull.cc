// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/pull.h"

#include "cfs/ocirepo/images.h"
#include "cfs/ocirepo/seal.h"
#include "cfs/registry/image_source.h"
#include "cfs/registry/lazy_fill.h"
#include "cfs/registry/lazy_image.h"
#include "cfs/registry/seal.h"
#include "cfs/util/sys.h"

namespace cfs::registry {

Result<RegistryPull> pull_image(repo::Repository& repo, Client& client, std::string_view reference,
                                const RegistryPullOptions& options) {
  CFS_ASSIGN(auto ref, parse_reference(reference));
  CFS_ASSIGN(auto downloads, DownloadDir::open(repo.path() + "/" + std::string(kDownloadsDir)));
  SourceOptions so;
  so.download_dir = &downloads;
  CFS_ASSIGN(auto source, open_registry_source(client, reference, so));
  ocirepo::PullOptions po = options.pull;
  // With a seal to check, the tag is set only once it passed.
  const std::string tag = po.tag.value_or(std::string(reference));
  if (options.verify_seal) po.tag = "";
  RegistryPull out;
  // A lazy mount registered this reference: when it still names the manifest registered, finish
  // that registration's fill (only what is not in the repository crosses the network); the
  // pull below then finds every layer it can rebuild and only merges and tags.
  CFS_ASSIGN(auto lazy, lazy_registration(repo, reference));
  if (lazy) {
    CFS_ASSIGN(auto resolved, oci::resolve_image(*source, po.platform));
    if (resolved.manifest.digest.str() == lazy->source.digest) {
      FillOptions fo;
      fo.fetchers = options.fetchers;
      fo.progress = options.fill_progress;
      CFS_ASSIGN(out.fill, finish_fill(repo, client, *lazy, resolved, fo));
    } else {
      lazy.reset();  // the tag moved on: a normal pull; the lazy registration stays
    }
  }
  CFS_ASSIGN(out.result, ocirepo::pull(repo, *source, po));
  // Where the image came from, so a lazy mount of it can fetch objects that go missing.
  CFS_TRY(record_origin(repo, out.result.image, ref, out.result.manifest));
  // The lazy markers go once the image is complete and tagged (after the seal check, if any).
  auto complete = [&]() -> Status {
    if (lazy && lazy->image == out.result.image && !out.result.tag.empty())
      return forget_lazy_registration(repo, lazy->image, reference);
    return {};
  };
  if (!options.verify_seal) {
    CFS_TRY(complete());
    return out;
  }
  // The seal's subject is the manifest imported (an index's entry for the chosen platform).
  CFS_ASSIGN(auto seal, verify_repository_seal(client, ref.with_digest(out.result.manifest.str()),
                                               repo, out.result.image, options.verify_seal->cert));
  out.seal = seal.artifact;
  // Recorded, so `cfs oci mount --require-seal` can check it later without the registry.
  CFS_TRY(ocirepo::record_seal(repo, seal));
  if (!tag.empty()) {
    CFS_TRY(ocirepo::tag_image(repo, out.result.manifest.str(), tag));
    out.result.tag = tag;
  }
  CFS_TRY(complete());
  return out;
}

Result<SweepReport> sweep_downloads(const repo::Repository& repo, std::chrono::seconds grace,
                                    bool dry_run) {
  const std::string path = repo.path() + "/" + std::string(kDownloadsDir);
  CFS_ASSIGN(auto st, sys::fstatat_if_exists(repo.fd(), std::string(kDownloadsDir), 0));
  if (!st) return SweepReport{};
  CFS_ASSIGN(auto dir, DownloadDir::open(path));
  return dir.sweep(grace, dry_run);
}

}  // namespace cfs::registry
