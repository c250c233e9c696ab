// SPDX-License-Identifier: Apache-2.0
#include "registry/range_plan.h"

#include <algorithm>

namespace cfs::registry::detail {
namespace {

/// The current range's members by wanted position, as the first position at or after x that is
/// not one (a member points past itself; path halving, so O(log n) amortized per lookup). Only
/// members' entries ever change, so clearing a range's members restores the empty set exactly.
class Members {
 public:
  explicit Members(std::size_t n) : next_(n + 1) {
    for (std::size_t i = 0; i < next_.size(); ++i) next_[i] = i;
  }
  void add(std::size_t i) { next_[i] = i + 1; }
  void remove(std::size_t i) { next_[i] = i; }
  std::size_t first_missing(std::size_t x) {
    while (next_[x] != x) {
      next_[x] = next_[next_[x]];
      x = next_[x];
    }
    return x;
  }

 private:
  std::vector<std::size_t> next_;
};

}  // namespace

// Incremental: an object is only ever added at the end of a range (in blob order), so its turn
// is decided once, when it comes:
// - wanted after the range's earliest member (`lo`): it is on time when every position from lo
//   up to it is already a member (the first one missing from lo on is itself); the members
//   before it keep their turns (it cannot come before them);
// - wanted before lo: it becomes the earliest and is on time, and every member before it in the
//   range is now ahead of it: all their bytes.
// O(log n) amortized per object instead of recounting the range's members pairwise for each
// (cubic).
std::vector<PlannedRange> plan_ranges(std::span<const RangeObject> objects, std::size_t lead,
                                      std::uint64_t gap, std::uint64_t reorder) {
  std::vector<std::size_t> by_offset(objects.size());
  for (std::size_t i = 0; i < by_offset.size(); ++i) by_offset[i] = i;
  std::stable_sort(by_offset.begin(), by_offset.end(), [&](std::size_t a, std::size_t b) {
    return objects[a].offset < objects[b].offset;
  });
  std::vector<PlannedRange> out;
  out.reserve(objects.size());
  Members members(objects.size());
  std::uint64_t bytes = 0, ahead = 0;  // of the last range's members, and those ahead of turn
  for (std::size_t i : by_offset) {
    const RangeObject& l = objects[i];
    PlannedRange* cur = out.empty() ? nullptr : &out.back();
    if (cur && i != lead && l.length > 0 && cur->hi > cur->lo && l.offset >= cur->hi &&
        l.offset - cur->hi <= gap) {
      const std::size_t lo = cur->first;
      const std::uint64_t with =
          i < lo ? bytes : ahead + (members.first_missing(lo) == i ? 0 : l.length);
      if (with <= reorder) {
        cur->hi = l.offset + l.length;
        cur->first = std::min(lo, i);
        cur->members.push_back(i);
        members.add(i);
        bytes += l.length;
        ahead = with;
        continue;
      }
    }
    if (cur)
      for (std::size_t m : cur->members) members.remove(m);
    PlannedRange& r = out.emplace_back();
    r.lo = l.offset;
    r.hi = l.offset + l.length;
    r.first = i;
    r.members.push_back(i);
    members.add(i);
    bytes = l.length;
    ahead = 0;
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PlannedRange& a, const PlannedRange& b) { return a.first < b.first; });
  return out;
}

}  // namespace cfs::registry::detail
