// SPDX-License-Identifier: Apache-2.0
// detail::plan_ranges (registry/range_plan.h) against a brute-force reference written here from
// the rules as docs/design.md states them ("Objects a header apart share one range, unless that
// reorders the loader's objects"): in blob order, an object joins the range before it when it is
// not the lead, has bytes, starts at or after that range's end and at most `gap` bytes after it,
// and the range with it brings at most `reorder` bytes ahead of their turn. A range's bytes come
// in blob order from where its earliest wanted member is; a member is on time when every object
// wanted from that earliest one up to it has already come (a member before it in the range);
// the others' bytes are ahead. Ranges go in the order of their earliest member. The reference
// checks that set by set, member by member (cubic); the plan must be the same, range for range.
#include "registry/range_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

namespace cfs::registry::detail {
namespace {

constexpr std::uint64_t kGap = 4096, kReorder = 65536;

std::uint64_t ahead_bytes(std::span<const RangeObject> objects,
                          const std::vector<std::size_t>& members) {
  const std::size_t earliest = *std::min_element(members.begin(), members.end());
  std::uint64_t bytes = 0;
  std::set<std::size_t> come;
  for (std::size_t m : members) {
    bool on_time = true;
    for (std::size_t w = earliest; w < m; ++w) on_time = on_time && come.count(w) > 0;
    if (!on_time) bytes += objects[m].length;
    come.insert(m);
  }
  return bytes;
}

std::vector<PlannedRange> reference(std::span<const RangeObject> objects, std::size_t lead,
                                    std::uint64_t gap, std::uint64_t reorder) {
  std::vector<std::size_t> blob_order(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i) blob_order[i] = i;
  std::stable_sort(blob_order.begin(), blob_order.end(), [&](std::size_t a, std::size_t b) {
    return objects[a].offset < objects[b].offset;
  });
  std::vector<PlannedRange> out;
  for (std::size_t i : blob_order) {
    const RangeObject& o = objects[i];
    if (!out.empty()) {
      PlannedRange& r = out.back();
      std::vector<std::size_t> with = r.members;
      with.push_back(i);
      if (i != lead && o.length > 0 && r.hi > r.lo && o.offset >= r.hi && o.offset - r.hi <= gap &&
          ahead_bytes(objects, with) <= reorder) {
        r.members = with;
        r.hi = o.offset + o.length;
        r.first = *std::min_element(with.begin(), with.end());
        continue;
      }
    }
    out.push_back({o.offset, o.offset + o.length, i, {i}});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PlannedRange& a, const PlannedRange& b) { return a.first < b.first; });
  return out;
}

void expect_same(const std::vector<PlannedRange>& got, const std::vector<PlannedRange>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].lo, want[k].lo) << "range " << k;
    EXPECT_EQ(got[k].hi, want[k].hi) << "range " << k;
    EXPECT_EQ(got[k].first, want[k].first) << "range " << k;
    EXPECT_EQ(got[k].members, want[k].members) << "range " << k;
  }
}

/// `n` objects laid out one after another in the blob with gaps of up to `max_gap` bytes (some
/// over kGap), each of `min_len`..`max_len` bytes, wanted in a random order that keeps runs of
/// the blob order (a loader's closure is partly in blob order).
std::vector<RangeObject> layout(std::mt19937_64& rng, std::size_t n, std::uint64_t min_len,
                                std::uint64_t max_len, std::uint64_t max_gap) {
  std::vector<RangeObject> blob;
  std::uint64_t at = 512;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t len = std::uniform_int_distribution<std::uint64_t>(min_len, max_len)(rng);
    blob.push_back({at, len});
    at += len + std::uniform_int_distribution<std::uint64_t>(0, max_gap)(rng);
  }
  std::vector<RangeObject> wanted;
  while (!blob.empty()) {  // runs of 1-8 objects taken from random places of the blob
    std::size_t from = std::uniform_int_distribution<std::size_t>(0, blob.size() - 1)(rng);
    std::size_t run = std::min<std::size_t>(blob.size() - from,
                                            std::uniform_int_distribution<std::size_t>(1, 8)(rng));
    wanted.insert(wanted.end(), blob.begin() + static_cast<std::ptrdiff_t>(from),
                  blob.begin() + static_cast<std::ptrdiff_t>(from + run));
    blob.erase(blob.begin() + static_cast<std::ptrdiff_t>(from),
               blob.begin() + static_cast<std::ptrdiff_t>(from + run));
  }
  return wanted;
}

TEST(RangePlanTest, AHandWrittenClosure) {
  // prog (wanted first, the lead) | interp a header after it | libc right after (wanted 4th,
  // 100 KB: ahead of the cache, wanted 3rd, so it starts a range) | the cache far away | two
  // small libraries a header apart wanted out of their blob order (8 KB ahead: one range).
  const std::vector<RangeObject> objects = {
      {1000, 50000},          // 0 prog
      {51512, 200000},        // 1 interp
      {1000000, 60000},       // 2 cache
      {252024, 100000},       // 3 libc
      {400000 + 9000, 5000},  // 4 libb
      {400000, 8000},         // 5 liba, before libb in the blob
  };
  const auto got = plan_ranges(objects, 0, kGap, kReorder);
  const std::vector<PlannedRange> want = {
      {1000, 251512, 0, {0, 1}},
      {1000000, 1060000, 2, {2}},
      {252024, 352024, 3, {3}},
      {400000, 414000, 4, {5, 4}},
  };
  expect_same(got, want);
  expect_same(reference(objects, 0, kGap, kReorder), want);  // the reference agrees by hand
}

TEST(RangePlanTest, HundredsOfMembersAgreeWithTheReference) {
  std::mt19937_64 rng(15);
  for (const std::size_t n : {std::size_t{200}, std::size_t{300}}) {
    // Small objects a header apart: ranges of hundreds of members (in blob order they are all
    // on time: one range), and a random wanted order that the reorder bound cuts up.
    std::vector<RangeObject> in_order;
    for (std::size_t i = 0; i < n; ++i) in_order.push_back({512 + 1536 * i, 1000});
    const auto one = plan_ranges(in_order, n, kGap, kReorder);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].members.size(), n);
    expect_same(one, reference(in_order, n, kGap, kReorder));
    for (const std::uint64_t reorder : {std::uint64_t{0}, kReorder, std::uint64_t{1} << 40}) {
      const auto objects = layout(rng, n, 200, 3000, 600);
      const auto got = plan_ranges(objects, 0, kGap, reorder);
      expect_same(got, reference(objects, 0, kGap, reorder));
      std::size_t most = 0;
      for (const auto& r : got) most = std::max(most, r.members.size());
      if (reorder > kReorder) {
        EXPECT_GT(most, 100u) << "a range of hundreds of members";
      }
    }
  }
}

TEST(RangePlanTest, RandomisedCasesAgreeWithTheReference) {
  std::mt19937_64 rng(1515);
  for (int round = 0; round < 400; ++round) {
    const std::size_t n = std::uniform_int_distribution<std::size_t>(1, 60)(rng);
    auto objects = layout(rng, n, 1, 40000, 6000);
    // Broken indexes too: an object without bytes, overlapping ones, equal offsets.
    for (auto& o : objects) {
      const int kind = std::uniform_int_distribution<int>(0, 19)(rng);
      if (kind == 0) o.length = 0;
      if (kind == 1) o.offset = objects[0].offset;
      if (kind == 2 && o.offset > 100) o.offset -= 100;
    }
    const std::size_t lead = std::uniform_int_distribution<std::size_t>(0, n)(rng);
    const std::uint64_t gap = std::uniform_int_distribution<int>(0, 1)(rng) ? kGap : 0;
    const std::uint64_t reorder =
        std::uniform_int_distribution<std::uint64_t>(0, 4 * kReorder)(rng);
    SCOPED_TRACE(::testing::Message() << "round " << round << " n " << n << " lead " << lead
                                      << " gap " << gap << " reorder " << reorder);
    expect_same(plan_ranges(objects, lead, gap, reorder), reference(objects, lead, gap, reorder));
  }
}

TEST(RangePlanTest, NoObjects) { EXPECT_TRUE(plan_ranges({}, 0, kGap, kReorder).empty()); }

}  // namespace
}  // namespace cfs::registry::detail
