// SPDX-License-Identifier: Apache-2.0
// What every parsed object index must satisfy, whichever form it was read from (the JSON index
// and the compact one): shared by their fuzz targets.
#pragma once

#include "cfs/ocirepo/object_index.h"
#include "fuzz_target.h"

inline void check_listed_objects(const cfs::ocirepo::ObjectIndex& ix) {
  for (const auto& o : ix.objects) {
    const auto* found = ix.find(o.digest);
    FUZZ_CHECK(found != nullptr && found->offset == o.offset, "a listed object is not found");
    const auto& l = ix.layers.at(o.layer);
    FUZZ_CHECK(l.range_fetchable && o.offset + o.length <= l.size, "a range outside its layer");
  }
}
