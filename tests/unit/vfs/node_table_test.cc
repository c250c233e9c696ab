// SPDX-License-Identifier: Apache-2.0
// The node table of the writable mount: ids stay with names across renames, removed or
// replaced names go stale, and FORGET frees nodes (and parents kept only for them) so the table
// shrinks back when the kernel drops its inodes.
#include "cfs/vfs/node_table.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

namespace cfs::vfs {
namespace {

int error_of(const Result<std::string>& r) { return r ? 0 : r.error().code().value(); }

TEST(NodeTable, LookupsCountAndForgetFrees) {
  NodeTable t;
  EXPECT_EQ(t.path(kMergedRoot), "");
  MergedNode a = t.lookup(kMergedRoot, "a");
  EXPECT_NE(a, kMergedRoot);
  EXPECT_EQ(t.lookup(kMergedRoot, "a"), a);  // same name, same node, two lookups
  MergedNode b = t.lookup(a, "b");
  EXPECT_EQ(t.path(b), "a/b");
  EXPECT_EQ(t.size(), 3u);
  t.forget(a, 2);
  EXPECT_EQ(t.path(a), "a");  // still needed for b's path
  EXPECT_EQ(t.size(), 3u);
  t.forget(b, 1);
  EXPECT_EQ(t.size(), 1u);  // b freed, then a (nothing held it any more)
  EXPECT_EQ(error_of(t.path(b)), ESTALE);
  EXPECT_EQ(error_of(t.path(a)), ESTALE);
  // A later lookup of the same name gets a fresh id (ids are never reused).
  MergedNode a2 = t.lookup(kMergedRoot, "a");
  EXPECT_NE(a2, a);
  EXPECT_NE(a2, b);
  EXPECT_EQ(t.path(a2), "a");
}

TEST(NodeTable, ForgetOfUnknownOrRootIsIgnored) {
  NodeTable t;
  MergedNode a = t.lookup(kMergedRoot, "a");
  t.forget(12345, 1);
  t.forget(kMergedRoot, 100);
  EXPECT_EQ(t.path(kMergedRoot), "");
  t.forget(a, 1000);  // more than it holds: clamps
  EXPECT_EQ(t.size(), 1u);
  t.forget(a, 1);
  EXPECT_EQ(t.size(), 1u);
}

TEST(NodeTable, RemoveMakesTheSubtreeStale) {
  NodeTable t;
  MergedNode d = t.lookup(kMergedRoot, "d");
  MergedNode f = t.lookup(d, "f");
  t.remove(kMergedRoot, "d");
  EXPECT_EQ(error_of(t.path(d)), ESTALE);
  EXPECT_EQ(error_of(t.path(f)), ESTALE);
  MergedNode d2 = t.lookup(kMergedRoot, "d");  // a new entry under the old name
  EXPECT_NE(d2, d);
  EXPECT_EQ(t.path(d2), "d");
  EXPECT_EQ(t.size(), 4u);
  t.forget(d, 1);  // still held by f (stale, but the kernel may still use f's id)
  EXPECT_EQ(t.size(), 4u);
  t.forget(f, 1);
  EXPECT_EQ(t.size(), 2u);
  t.remove(kMergedRoot, "unknown");  // nothing known there: no effect
  EXPECT_EQ(t.path(d2), "d");
}

TEST(NodeTable, MoveCarriesTheSubtreeAndStalesTheReplaced) {
  NodeTable t;
  MergedNode a = t.lookup(kMergedRoot, "a");
  MergedNode x = t.lookup(a, "x");
  MergedNode y = t.lookup(x, "y");
  MergedNode b = t.lookup(kMergedRoot, "b");
  MergedNode old = t.lookup(b, "z");
  t.move(a, "x", b, "z");
  EXPECT_EQ(t.path(x), "b/z");
  EXPECT_EQ(t.path(y), "b/z/y");
  EXPECT_EQ(error_of(t.path(old)), ESTALE);
  EXPECT_EQ(t.lookup(b, "z"), x);
  EXPECT_NE(t.lookup(a, "x"), x);
  // Moving a name nobody looked up still stales what was at the target.
  MergedNode w = t.lookup(kMergedRoot, "w");
  t.move(kMergedRoot, "never-seen", kMergedRoot, "w");
  EXPECT_EQ(error_of(t.path(w)), ESTALE);
  // Onto itself: nothing changes.
  t.move(b, "z", b, "z");
  EXPECT_EQ(t.path(y), "b/z/y");
}

TEST(NodeTable, OldParentIsFreedWhenItsLastChildMovesAway) {
  NodeTable t;
  MergedNode a = t.lookup(kMergedRoot, "a");
  MergedNode x = t.lookup(a, "x");
  t.forget(a, 1);  // held only by x now
  t.move(a, "x", kMergedRoot, "x");
  EXPECT_EQ(error_of(t.path(a)), ESTALE);
  EXPECT_EQ(t.path(x), "x");
  EXPECT_EQ(t.size(), 2u);
}

// The table follows the kernel: after every lookup is forgotten, only the root is left.
TEST(NodeTable, RepeatedWalksLeaveNothingBehind) {
  NodeTable t;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<MergedNode> held;
    for (int i = 0; i < 50; ++i) {
      MergedNode d = t.lookup(kMergedRoot, std::string("d").append(std::to_string(i)));
      held.push_back(d);
      for (int j = 0; j < 20; ++j)
        held.push_back(t.lookup(d, std::string("f").append(std::to_string(j))));
    }
    EXPECT_EQ(t.size(), 1u + 50u * 21u);
    if (pass == 1) t.move(held[0], "f0", kMergedRoot, "moved");
    if (pass == 2) t.remove(kMergedRoot, "d7");
    for (auto n : held) t.forget(n, 1);
    EXPECT_EQ(t.size(), 1u);
  }
}

}  // namespace
}  // namespace cfs::vfs
