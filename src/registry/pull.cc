// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/pull.h"

#include "cfs/ocirepo/images.h"
#include "cfs/registry/image_source.h"
#include "cfs/registry/seal.h"

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
  CFS_ASSIGN(out.result, ocirepo::pull(repo, *source, po));
  if (!options.verify_seal) return out;
  // The seal's subject is the manifest imported (an index's entry for the chosen platform).
  CFS_ASSIGN(auto seal, verify_repository_seal(client, ref.with_digest(out.result.manifest.str()),
                                               repo, out.result.image, options.verify_seal->cert));
  out.seal = seal.artifact;
  if (!tag.empty()) {
    CFS_TRY(ocirepo::tag_image(repo, out.result.manifest.str(), tag));
    out.result.tag = tag;
  }
  return out;
}

}  // namespace cfs::registry
