// SPDX-License-Identifier: Apache-2.0
#include "repo/reach.h"

namespace cfs::repo::reach {

Result<StreamRefs> stream_refs(const Repository& repo, const verity::Digest& stream) {
  (void)stream;
  return fail(Errc::kUnsupportedFeature, repo.path() + ": splitstreams (module not yet built)");
}

}  // namespace cfs::repo::reach
