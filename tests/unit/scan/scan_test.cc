// SPDX-License-Identifier: Apache-2.0
// Directory scan: every field of every node against lstat/readlink of the source, inlining
// rules, hardlinks, options, determinism across thread counts, and errors.
#include "cfs/scan/scan.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "cfs/overlay/xattr.h"
#include "cfs/verity/digest.h"
#include "testutil/temp_dir.h"

namespace cfs::scan {
namespace {

namespace fs = std::filesystem;

class TempTree : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  std::string p(const std::string& rel) const { return root_ + "/" + rel; }
  void write(const std::string& rel, const std::string& data) const {
    std::ofstream(p(rel), std::ios::binary) << data;
  }
  const Node* find(const ScanResult& r, const std::string& path) const {
    auto id = r.tree.lookup(path);
    return id ? &r.tree.node(*id) : nullptr;
  }

  testutil::TempDir dir_{"cfs-scan-test-"};
  const std::string& root_ = dir_.path();
};

TEST_F(TempTree, RecordsEveryTypeAndField) {
  fs::create_directories(p("dir/sub"));
  write("empty", "");
  write("small", "hello\n");
  write("edge64", std::string(64, 'x'));
  write("edge65", std::string(65, 'y'));
  write("dir/big", std::string(3 << 20, 'z'));  // deferred-digest path (>= 1 MiB)
  ASSERT_EQ(::symlink("../some/target", p("link").c_str()), 0);
  ASSERT_EQ(::mkfifo(p("fifo").c_str(), 0640), 0);
  ASSERT_EQ(::chmod(p("small").c_str(), 04755), 0);
  struct timespec ts[2] = {{1, 0}, {1234567890, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p("small").c_str(), ts, AT_SYMLINK_NOFOLLOW), 0);

  auto r = scan_directory(root_, {.threads = 2});
  ASSERT_TRUE(r) << r.error().message();

  for (const char* name :
       {"empty", "small", "edge64", "edge65", "dir", "dir/sub", "dir/big", "link", "fifo"}) {
    const Node* n = find(*r, std::string("/") + name);
    ASSERT_NE(n, nullptr) << name;
    struct stat st;
    ASSERT_EQ(::lstat(p(name).c_str(), &st), 0);
    EXPECT_EQ(n->mode, st.st_mode) << name;
    EXPECT_EQ(n->uid, st.st_uid) << name;
    EXPECT_EQ(n->gid, st.st_gid) << name;
    EXPECT_EQ(n->mtime_sec, st.st_mtim.tv_sec) << name;
    EXPECT_EQ(n->mtime_nsec, static_cast<std::uint32_t>(st.st_mtim.tv_nsec)) << name;
    if (!S_ISDIR(st.st_mode)) {
      EXPECT_EQ(n->nlink, 1U) << name;
      EXPECT_EQ(n->size, static_cast<std::uint64_t>(st.st_size)) << name;
    }
  }
  EXPECT_EQ(find(*r, "/small")->mtime_nsec, 123456789U);
  EXPECT_FALSE(find(*r, "/empty")->content);
  EXPECT_TRUE(find(*r, "/empty")->payload.empty());
  EXPECT_FALSE(find(*r, "/empty")->digest);
  EXPECT_EQ(find(*r, "/small")->content, "hello\n");
  EXPECT_FALSE(find(*r, "/small")->digest);
  EXPECT_EQ(find(*r, "/edge64")->content, std::string(64, 'x'));
  EXPECT_FALSE(find(*r, "/edge65")->content);
  for (const char* name : {"/edge65", "/dir/big"}) {
    const Node* n = find(*r, name);
    ASSERT_TRUE(n->digest) << name;
    auto expect = verity::digest_file(root_ + name);
    ASSERT_TRUE(expect);
    EXPECT_EQ(*n->digest, *expect);
    std::string hex = expect->hex();
    EXPECT_EQ(n->payload, hex.substr(0, 2) + "/" + hex.substr(2)) << name;
  }
  EXPECT_EQ(find(*r, "/link")->payload, "../some/target");
  ASSERT_EQ(r->external_files.size(), 2U);
  // Sorted depth-first: "dir" < "edge65".
  EXPECT_EQ(r->external_files[0].node, r->tree.lookup("/dir/big"));
  EXPECT_EQ(r->external_files[1].node, r->tree.lookup("/edge65"));
  EXPECT_EQ(r->external_files[0].size, 3U << 20);
}

TEST_F(TempTree, RootMetadataComesFromTheSourceDirectory) {
  ASSERT_EQ(::chmod(root_.c_str(), 0711), 0);
  struct timespec ts[2] = {{1, 0}, {1700000000, 42}};
  ASSERT_EQ(::utimensat(AT_FDCWD, root_.c_str(), ts, 0), 0);
  auto r = scan_directory(root_);
  ASSERT_TRUE(r);
  const Node& root = r->tree.node(r->tree.root());
  EXPECT_EQ(root.mode, S_IFDIR | 0711U);
  EXPECT_EQ(root.mtime_sec, 1700000000);
  EXPECT_EQ(root.mtime_nsec, 42U);
}

TEST_F(TempTree, UseEpochZeroesEveryMtime) {
  write("f", "data");
  fs::create_directories(p("d"));
  auto r = scan_directory(root_, {.use_epoch = true});
  ASSERT_TRUE(r);
  for (std::size_t i = 0; i < r->tree.size(); ++i) {
    EXPECT_EQ(r->tree.node(static_cast<NodeId>(i)).mtime_sec, 0);
    EXPECT_EQ(r->tree.node(static_cast<NodeId>(i)).mtime_nsec, 0U);
  }
}

TEST_F(TempTree, NamesAreSortedBytewise) {
  for (const char* n : {"b", "a", "B", "-x", "\xff", "a.b", "a-b", ".hidden"}) write(n, "1");
  auto r = scan_directory(root_);
  ASSERT_TRUE(r);
  const auto& kids = r->tree.node(r->tree.root()).children;
  ASSERT_EQ(kids.size(), 8U);
  for (std::size_t i = 1; i < kids.size(); ++i) EXPECT_LT(kids[i - 1].name, kids[i].name);
}

TEST_F(TempTree, XattrsOfFilesAndOfSymlinksThemselves) {
  write("f", "x");
  ASSERT_EQ(::symlink("f", p("l").c_str()), 0);
  if (::setxattr(p("f").c_str(), "user.a", "1", 1, 0) != 0) GTEST_SKIP() << "no user xattrs";
  ASSERT_EQ(::setxattr(p("f").c_str(), "trusted.overlay.x", "v", 1, 0), 0);
  // Symlinks cannot carry user.* xattrs; trusted.* works as root.
  bool symlink_xattr = ::lsetxattr(p("l").c_str(), "trusted.t", "s", 1, 0) == 0;

  auto r = scan_directory(root_);
  ASSERT_TRUE(r);
  const Node* f = find(*r, "/f");
  ASSERT_NE(f->find_xattr("user.a"), nullptr);
  EXPECT_EQ(f->find_xattr("user.a")->value, "1");
  EXPECT_EQ(f->find_xattr("trusted.overlay.x")->value, "v");  // as given: the writer escapes
  if (symlink_xattr) {
    const Node* l = find(*r, "/l");
    ASSERT_NE(l->find_xattr("trusted.t"), nullptr);
    EXPECT_EQ(l->find_xattr("user.a"), nullptr);  // not the target's
  }

  auto u = scan_directory(root_, {.user_xattrs = true});
  ASSERT_TRUE(u);
  EXPECT_NE(find(*u, "/f")->find_xattr("user.a"), nullptr);
  EXPECT_EQ(find(*u, "/f")->find_xattr("trusted.overlay.x"), nullptr);

  auto s = scan_directory(root_, {.skip_xattrs = true});
  ASSERT_TRUE(s);
  EXPECT_TRUE(find(*s, "/f")->xattrs.empty());

  auto both = scan_directory(root_, {.skip_xattrs = true, .user_xattrs = true});
  ASSERT_FALSE(both);
  EXPECT_TRUE(both.error().is(Errc::kInvalidInput));
}

TEST_F(TempTree, SkipDevicesDropsDevicesAndWhiteouts) {
  if (::geteuid() != 0) GTEST_SKIP() << "mknod needs root";
  ASSERT_EQ(::mknod(p("wh").c_str(), S_IFCHR | 0644, makedev(0, 0)), 0);
  ASSERT_EQ(::mknod(p("blk").c_str(), S_IFBLK | 0600, makedev(8, 1)), 0);
  ASSERT_EQ(::mknod(p("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  auto r = scan_directory(root_);
  ASSERT_TRUE(r);
  EXPECT_EQ(find(*r, "/blk")->rdev, makedev(8, 1));
  EXPECT_EQ(find(*r, "/null")->rdev, makedev(1, 3));
  EXPECT_TRUE(overlay::is_whiteout(find(*r, "/wh")->mode, find(*r, "/wh")->rdev));
  auto s = scan_directory(root_, {.skip_devices = true});
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->tree.node(s->tree.root()).children.empty());
}

TEST_F(TempTree, HardlinksIgnoredByDefaultKeptOnRequest) {
  fs::create_directories(p("a"));
  write("z", std::string(100, 'q'));
  ASSERT_EQ(::link(p("z").c_str(), p("a/y").c_str()), 0);
  ASSERT_EQ(::link(p("z").c_str(), p("m").c_str()), 0);

  auto plain = scan_directory(root_);
  ASSERT_TRUE(plain);
  EXPECT_EQ(find(*plain, "/z")->nlink, 1U);
  EXPECT_EQ(plain->external_files.size(), 3U);
  EXPECT_EQ(plain->tree.size(), 5U);  // root, a, a/y, m, z

  auto r = scan_directory(root_, {.hardlinks = true});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tree.size(), 3U);  // root, a, one file
  // The owner is the first path in sorted depth-first order: /a/y.
  const Entry* owner = r->tree.find_child(*r->tree.lookup("/a"), "y");
  ASSERT_NE(owner, nullptr);
  EXPECT_FALSE(owner->hardlink);
  EXPECT_EQ(r->tree.node(owner->node).nlink, 3U);
  for (const char* n : {"m", "z"}) {
    const Entry* e = r->tree.find_child(r->tree.root(), n);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->hardlink);
    EXPECT_EQ(e->node, owner->node);
  }
  ASSERT_EQ(r->external_files.size(), 1U);
  EXPECT_EQ(r->external_files[0].node, owner->node);  // the owner, "a/y"
}

TEST_F(TempTree, SameTreeForEveryThreadCount) {
  for (int d = 0; d < 20; ++d) {
    // Appended, not "d" + std::to_string(d): GCC 12's -O3 -Wrestrict false positive.
    const std::string e = std::string("d").append(std::to_string(d)).append("/e");
    fs::create_directories(p(e));
    for (int f = 0; f < 15; ++f)
      write(std::string(e).append("/f").append(std::to_string(f)),
            std::string(static_cast<std::size_t>(f * 37), static_cast<char>('a' + f)));
  }
  auto flatten = [](const ScanResult& r) {
    std::string out;
    for (std::size_t i = 0; i < r.tree.size(); ++i) {
      const Node& n = r.tree.node(static_cast<NodeId>(i));
      out += std::to_string(n.mode) + " " + n.payload + " " + n.content.value_or("-") + "|";
      for (const auto& c : n.children) out += c.name + "," + std::to_string(c.node) + ";";
      out += "\n";
    }
    return out;
  };
  auto one = scan_directory(root_, {.threads = 1});
  ASSERT_TRUE(one);
  for (unsigned t : {2U, 3U, 8U}) {
    auto many = scan_directory(root_, {.threads = t});
    ASSERT_TRUE(many);
    EXPECT_EQ(flatten(*one), flatten(*many)) << t << " threads";
  }
}

// composefs 1.0.8 reads a directory's xattrs through lcfs_node_set_xattr(), the same budget a
// dump gets: 12 + sum(7 + key + value) <= 32767 (composefs-format.md §2.1). The values come from
// that rule. Big xattrs need tmpfs (ext4 keeps them within one block), so /dev/shm is used.
TEST(XattrBudget, DirectoryScanAcceptsWhatComposefsAccepts) {
  if (!testutil::on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs";
  testutil::TempDir tmp("cfs-scan-xattr-", "/dev/shm");
  ASSERT_TRUE(tmp.ok());
  const std::string& root = tmp.path();
  struct Case {
    std::vector<std::pair<std::string, std::size_t>> xattrs;  // key, value size
    bool fits;
  };
  const std::size_t one = 32767 - 12 - 7 - 6;  // "user.a" alone: 32742
  const std::string k255 = "user." + std::string(250, 'k');
  const std::size_t two = 32767 - 12 - (7 + 255 + 20000) - 7 - 6;
  const std::size_t three = 32767 - 12 - 2 * (7 + 6 + 10000) - 7 - 6;
  const Case cases[] = {
      {{{"user.a", 32700}}, true},
      {{{"user.a", 32740}}, true},  // issue 11: mkcomposefs 1.0.8 builds this one
      {{{"user.a", one}}, true},
      {{{"user.a", one + 1}}, false},
      {{{k255, 20000}, {"user.b", two}}, true},
      {{{k255, 20000}, {"user.b", two + 1}}, false},
      {{{"user.a", 10000}, {"user.b", 10000}, {"user.c", three}}, true},  // exactly 32767
      {{{"user.a", 10000}, {"user.b", 10000}, {"user.c", three + 1}}, false},
  };
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const std::string dir = root + "/" + std::to_string(i);
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    const std::string f = dir + "/f";
    std::ofstream(f) << "x";
    for (const auto& [key, size] : cases[i].xattrs) {
      const std::string value(size, 'v');
      ASSERT_EQ(::setxattr(f.c_str(), key.c_str(), value.data(), value.size(), 0), 0) << key;
    }
    auto r = scan_directory(dir, {.threads = 1});
    EXPECT_EQ(r.has_value(), cases[i].fits) << "case " << i;
    if (!r) {
      EXPECT_NE(r.error().message().find("32767"), std::string::npos);
    }
  }
}

TEST_F(TempTree, ErrorsNameThePath) {
  auto missing = scan_directory(root_ + "/nope");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is_errno(ENOENT));
  EXPECT_NE(missing.error().message().find(root_ + "/nope"), std::string::npos);

  write("file", "x");
  auto notdir = scan_directory(p("file"));
  ASSERT_FALSE(notdir);
  EXPECT_TRUE(notdir.error().is_errno(ENOTDIR));
}

}  // namespace
}  // namespace cfs::scan
