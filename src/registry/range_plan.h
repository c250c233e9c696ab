// SPDX-License-Identifier: Apache-2.0
// Which objects of one layer blob a request of several ranges asks for as one range (a loader
// closure, a group of ELF hints; docs/design.md "Objects a header apart share one range"). Pure:
// offsets in, ranges out, so that the rules can be checked against a reference and timed alone;
// the lazy provider (lazy.cc, merge_ranges) gives each range its sinks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace cfs::registry::detail {

struct RangeObject {
  std::uint64_t offset = 0, length = 0;  ///< in the blob
};

struct PlannedRange {
  std::uint64_t lo = 0, hi = 0;      ///< the blob's bytes [lo, hi)
  std::size_t first = 0;             ///< the earliest of its members in the wanted order
  std::vector<std::size_t> members;  ///< indices into the objects, in blob order
};

/// The ranges for `objects` (in the order they are wanted): objects at most `gap` bytes apart in
/// the blob share one range, which goes where the earliest of them was wanted, as long as that
/// brings at most `reorder` bytes of them ahead of an object wanted before them (a member is on
/// time when every object wanted between the range's earliest and it is a member before it in
/// blob order; the others' bytes are "ahead"). The object at `lead` (an index, or objects.size()
/// for none) starts a range of its own. Objects without bytes or overlapping another keep a range
/// of their own. Ranges in the order of their earliest member; O(n log n) in the objects.
std::vector<PlannedRange> plan_ranges(std::span<const RangeObject> objects, std::size_t lead,
                                      std::uint64_t gap, std::uint64_t reorder);

}  // namespace cfs::registry::detail
