// SPDX-License-Identifier: Apache-2.0
#include <algorithm>

#include "cfs/splitstream/reader.h"
#include "repo/reach.h"

namespace cfs::repo::reach {

Result<StreamRefs> stream_refs(const Repository& repo, const verity::Digest& stream) {
  CFS_ASSIGN(auto fd, repo.open_object(stream));
  splitstream::ReaderOptions o;
  o.algorithm = repo.algorithm();
  CFS_ASSIGN(auto reader, splitstream::Reader::open(
                              std::move(fd), repo.path() + "/" + repo.object_path(stream), o));
  StreamRefs refs;
  refs.objects = reader.object_refs();
  refs.streams = reader.stream_refs();
  // Named references point into stream_refs; a writer that did not list a target there still
  // keeps it alive.
  for (const auto& [name, d] : reader.named_refs())
    if (std::find(refs.streams.begin(), refs.streams.end(), d) == refs.streams.end())
      refs.streams.push_back(d);
  return refs;
}

}  // namespace cfs::repo::reach
