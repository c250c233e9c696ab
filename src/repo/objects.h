// SPDX-License-Identifier: Apache-2.0
// The listing of objects/ (internal; gc and fsck): objects, temporary files, and anything else.
#pragma once

#include <string>
#include <vector>

#include "cfs/repo/repository.h"
#include "cfs/util/result.h"

namespace cfs::repo::objects {

struct Entry {
  std::string name;        ///< "ab/cdef…" (the object name) or a path below objects/
  unsigned char type = 0;  ///< d_type (DT_UNKNOWN when the filesystem does not say)
};

struct Listing {
  std::vector<Entry> objects;  ///< names of the repository's algorithm, any file type
  std::vector<Entry> temps;    ///< ".tmp-*" files, in objects/ or a fan-out directory
  std::vector<Entry> strays;   ///< anything else (other names, other algorithms' names)
};

/// Lists objects/ (a missing directory is an empty listing), fan-out directories on
/// `threads` threads.
Result<Listing> list(const Repository& repo, unsigned threads);

}  // namespace cfs::repo::objects
