// SPDX-License-Identifier: Apache-2.0
// Image reader over the upstream reference images (made by composefs 1.0.8): random access,
// load_tree() translations and the structural check. Expected values come from the format
// reference (composefs-format.md §6) and the upstream dumps, not from our own output.
#include "cfs/erofs/reader.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cfs/erofs/writer.h"
#include "cfs/util/sys.h"
#include "cfs/util/unique_fd.h"

namespace cfs::erofs {
namespace {

const std::string kRefDir =
    std::string(CFS_SHARED_DIR) + "/compat/composefs-assets/reference-outputs";

std::vector<std::string> reference_images() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kRefDir, ec))
    if (e.path().extension() == ".cfs") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

#define REQUIRE_ASSETS()                                                        \
  do {                                                                          \
    if (reference_images().empty()) GTEST_SKIP() << "no assets in " << kRefDir; \
  } while (0)

TEST(Reader, OpensLoadsAndChecksEveryReferenceImage) {
  REQUIRE_ASSETS();
  for (const auto& path : reference_images()) {
    SCOPED_TRACE(path);
    auto img = Image::open(path);
    ASSERT_TRUE(img) << img.error().message();
    auto tree = load_tree(*img);
    ASSERT_TRUE(tree) << tree.error().message();
    auto st = check_image(*img);
    EXPECT_TRUE(st) << st.error().message();
  }
}

TEST(Reader, SpecialV1RandomAccess) {
  REQUIRE_ASSETS();
  auto img = Image::open(kRefDir + "/special_v1.cfs");
  ASSERT_TRUE(img) << img.error().message();
  EXPECT_EQ(img->root_nid(), 36u);
  EXPECT_EQ(img->format_version(), 1u);
  EXPECT_FALSE(img->has_acl());
  EXPECT_EQ(img->info().inos, 266u);
  EXPECT_EQ(img->info().build_time, 1633950376);

  auto root = img->inode(36);
  ASSERT_TRUE(root);
  EXPECT_TRUE(root->is_dir());
  EXPECT_EQ(root->size, 4096u);
  EXPECT_EQ(root->nlink, 2u);

  auto entries = img->readdir(36);
  ASSERT_TRUE(entries) << entries.error().message();
  EXPECT_EQ(entries->size(), 267u);  // . .. 256 stubs and 9 entries
  EXPECT_EQ((*entries)[0].name, ".");

  auto nid = img->resolve("/blockdev");
  ASSERT_TRUE(nid);
  EXPECT_EQ(*nid, 235u);
  auto blk = img->inode(*nid);
  ASSERT_TRUE(blk);
  EXPECT_EQ(blk->rdev, 107690u);
  auto bx = img->xattrs(*nid);
  ASSERT_TRUE(bx);
  ASSERT_EQ(bx->size(), 1u);
  EXPECT_EQ((*bx)[0].name, "trusted.bar");
  EXPECT_EQ((*bx)[0].value, "bar-2");
  EXPECT_TRUE((*bx)[0].shared);

  auto inl = img->resolve("inline");
  ASSERT_TRUE(inl);
  EXPECT_EQ(*inl, 309u);
  auto data = img->read(*inl, 0, 100);
  ASSERT_TRUE(data);
  EXPECT_EQ(*data, "FOOBAR\nINAFILE\n");
  auto part = img->read(*inl, 7, 3);
  ASSERT_TRUE(part);
  EXPECT_EQ(*part, "INA");

  auto large3 = img->resolve("/inline-large3");
  ASSERT_TRUE(large3);
  auto l3 = img->inode(*large3);
  ASSERT_TRUE(l3);
  EXPECT_TRUE(l3->extended);
  EXPECT_EQ(l3->mtime_sec, 1665486376);
  EXPECT_EQ(l3->data_blocks, 1u);
  EXPECT_EQ(l3->tail_size, 1u);

  auto missing = img->lookup(36, "nope");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  for (const char* stub : {"00", "7f", "bf", "c0", "ff"}) {
    auto s = img->lookup(36, stub);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->has_value()) << stub;
  }
  auto noent = img->resolve("/inline/x");
  EXPECT_FALSE(noent);

  // Root xattrs in image order, escaping intact (format §6).
  auto rx = img->xattrs(36);
  ASSERT_TRUE(rx);
  std::vector<std::string> names;
  for (const auto& x : *rx) names.push_back(x.name);
  EXPECT_EQ(names, (std::vector<std::string>{"trusted.foo1", "trusted.overlay.opaque",
                                             "trusted.overlay.overlay.opaque",
                                             "trusted.overlay.overlay.whiteouts", "user.foo2",
                                             "user.overlay.opaque", "user.overlay.whiteouts"}));
}

TEST(Reader, LoadTreeUndoesTheWriter) {
  REQUIRE_ASSETS();
  auto img = Image::open(kRefDir + "/special_v1.cfs");
  ASSERT_TRUE(img);
  auto tree = load_tree(*img);
  ASSERT_TRUE(tree) << tree.error().message();
  const Node& root = tree->node(tree->root());
  EXPECT_EQ(root.children.size(), 9u);  // stubs skipped
  EXPECT_EQ(root.size, 4096u);
  std::vector<Xattr> want_root = {{"trusted.foo1", "bar-1"},
                                  {"trusted.overlay.opaque", "x"},
                                  {"user.foo2", "bar-2"},
                                  {"user.overlay.opaque", "x"}};
  EXPECT_EQ(root.xattrs, want_root);

  auto wo = tree->lookup("/whiteout");
  ASSERT_TRUE(wo);
  const Node& w = tree->node(*wo);
  EXPECT_EQ(w.mode, S_IFCHR | 0777u);
  EXPECT_EQ(w.rdev, 0u);
  EXPECT_EQ(w.size, 0u);
  EXPECT_EQ(w.xattrs, (std::vector<Xattr>{{"trusted.foo", "bar-2"}}));

  auto esc = tree->lookup("/escaped-xattr");
  ASSERT_TRUE(esc);
  EXPECT_EQ(tree->node(*esc).xattrs, (std::vector<Xattr>{{"trusted.overlay.redirect", "/foo\n"},
                                                         {"user.overlay.redirect", "/foo\n"},
                                                         {"user.foo", "bar-2"}}));
  EXPECT_TRUE(tree->node(*esc).payload.empty());

  auto inl = tree->lookup("/inline");
  ASSERT_TRUE(inl);
  ASSERT_TRUE(tree->node(*inl).content);
  EXPECT_EQ(*tree->node(*inl).content, "FOOBAR\nINAFILE\n");
}

TEST(Reader, FilterLoadsOnlyNamedTopLevelEntries) {
  REQUIRE_ASSETS();
  auto img = Image::open(kRefDir + "/special.cfs");
  ASSERT_TRUE(img);
  auto tree = load_tree(*img, {{"chardev", "inline", "whiteout", "absent"}});
  ASSERT_TRUE(tree);
  std::vector<std::string> names;
  for (const auto& e : tree->node(tree->root()).children) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"chardev", "inline", "whiteout"}));
}

TEST(Reader, HardlinksBecomeHardlinkEntries) {
  REQUIRE_ASSETS();
  auto img = Image::open(kRefDir + "/config-with-hard-link.cfs");
  ASSERT_TRUE(img);
  auto tree = load_tree(*img);
  ASSERT_TRUE(tree) << tree.error().message();
  auto ls = tree->lookup("/usr/bin/ls");
  auto link = tree->lookup("/usr/bin/ls-hardlink");
  ASSERT_TRUE(ls && link);
  EXPECT_EQ(*ls, *link);
  const Entry* e = tree->find_child(*tree->lookup("/usr/bin"), "ls-hardlink");
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->hardlink);
  EXPECT_FALSE(tree->find_child(*tree->lookup("/usr/bin"), "ls")->hardlink);
}

TEST(Reader, RejectsGarbageHeaders) {
  std::vector<std::byte> small(100);
  auto r = Image::from_bytes(small);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Errc::kCorruptImage));
  std::vector<std::byte> zeros(8192);
  r = Image::from_bytes(zeros);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Errc::kCorruptImage));
  EXPECT_NE(r.error().message().find("magic"), std::string::npos);
}

}  // namespace
}  // namespace cfs::erofs

namespace cfs::erofs {
namespace {

// image -> load_tree -> write_image must reproduce the upstream image byte for byte (the
// `composefs-dump` round trip of upstream's check-checksums), with the image's own version.
TEST(Reader, RewriteReproducesEveryReferenceImage) {
  REQUIRE_ASSETS();
  for (const auto& path : reference_images()) {
    SCOPED_TRACE(path);
    auto img = Image::open(path);
    ASSERT_TRUE(img);
    auto tree = load_tree(*img);
    ASSERT_TRUE(tree) << tree.error().message();
    char name[] = "/tmp/cfs-rewrite-XXXXXX";
    int fd = ::mkstemp(name);
    ASSERT_GE(fd, 0);
    ::unlink(name);
    UniqueFd out(fd);
    WriteOptions opts{img->format_version(), img->format_version()};
    auto w = write_image(*tree, opts, out.get());
    ASSERT_TRUE(w) << w.error().message();
    std::vector<std::byte> again(w->size);
    auto n = sys::pread_full(out.get(), again, 0);
    ASSERT_TRUE(n);
    ASSERT_EQ(*n, w->size);
    auto orig = img->bytes();
    ASSERT_EQ(again.size(), orig.size());
    auto mismatch = std::mismatch(again.begin(), again.end(), orig.begin());
    EXPECT_TRUE(mismatch.first == again.end())
        << "first difference at byte " << (mismatch.first - again.begin());
  }
}

}  // namespace
}  // namespace cfs::erofs

namespace cfs::erofs {
namespace {

// composefs 1.0.8's reader appends up to two bytes to redirects whose length is a multiple of 4
// ("a/b" read back as "a/b\xff\xff", or with the next shared entry's header bytes). cfs reads
// the exact length, inline and shared.
// Writes tree with default options through a real fd and opens the result.
Result<Image> write_and_open(const Tree& tree) {
  char path[] = "/tmp/cfs-reader-test-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return fail_errno("mkstemp");
  ::unlink(path);
  UniqueFd out(fd);
  CFS_ASSIGN(WriteResult w, write_image(tree, {}, out.get()));
  std::vector<std::byte> bytes(w.size);
  CFS_TRY(sys::pread_full(out.get(), bytes, 0));
  return Image::from_bytes(std::move(bytes));
}

TEST(Reader, RedirectsReadWithTheirExactLength) {
  Tree tree;
  for (const char* name : {"one", "two", "three"}) {
    Node n;
    n.mode = S_IFREG | 0644;
    n.size = 5000;
    n.payload = std::string(name) == "one" ? "a/b" : "cd/e";  // redirects of 4 and 5 bytes
    tree.link(tree.root(), name, tree.add_node(std::move(n)));
  }
  auto img = write_and_open(tree);
  ASSERT_TRUE(img) << img.error().message();
  auto loaded = load_tree(*img);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->node(*loaded->lookup("/one")).payload, "a/b");
  EXPECT_EQ(loaded->node(*loaded->lookup("/two")).payload, "cd/e");
  EXPECT_EQ(loaded->node(*loaded->lookup("/three")).payload, "cd/e");
  auto x = img->xattrs(*img->resolve("/two"));
  ASSERT_TRUE(x);
  EXPECT_EQ(backing_from_xattrs(*x).payload, "cd/e");
  EXPECT_FALSE(backing_from_xattrs(*x).digest);
}

// metacopy_digest() (the lazy mount's walk of every file) gives the digest each file was written
// with (the writer's input is the oracle), none for a file without one, whatever the other
// xattrs: a user's trusted.overlay.metacopy is stored escaped (trusted.overlay.overlay.metacopy)
// and is not the file's; a digest two files share is stored once in the shared table.
TEST(Reader, MetacopyDigestIsTheOneEachFileWasWrittenWith) {
  auto digest = [](verity::HashAlg alg, std::uint8_t seed) {
    verity::Digest d = verity::Digest::zero(alg);
    for (std::size_t i = 0; i < d.size; ++i) d.bytes[i] = static_cast<std::uint8_t>(seed + i);
    return d;
  };
  struct File {
    const char* name;
    std::optional<verity::Digest> digest;
    bool user_metacopy;
  };
  const std::vector<File> files = {
      {"a", digest(verity::HashAlg::kSha256, 1), false},
      {"b", digest(verity::HashAlg::kSha512, 2), false},
      {"c", digest(verity::HashAlg::kSha256, 1), false},  // a's digest: shared
      {"d", std::nullopt, false},
      {"e", digest(verity::HashAlg::kSha256, 3), true},
      {"f", std::nullopt, true},
  };
  Tree tree;
  for (const auto& f : files) {
    Node n;
    n.mode = S_IFREG | 0644;
    n.size = 5000;
    n.payload = std::string("ab/") + f.name;
    n.digest = f.digest;
    if (f.user_metacopy) n.xattrs.push_back({"trusted.overlay.metacopy", std::string(4, 'x')});
    tree.link(tree.root(), f.name, tree.add_node(std::move(n)));
  }
  auto img = write_and_open(tree);
  ASSERT_TRUE(img) << img.error().message();
  for (const auto& f : files) {
    SCOPED_TRACE(f.name);
    auto nid = img->resolve(f.name);
    ASSERT_TRUE(nid);
    auto ino = img->inode(*nid);
    ASSERT_TRUE(ino);
    auto d = img->metacopy_digest(*ino);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_EQ(*d, f.digest);
  }
  auto root = img->inode(img->root_nid());
  ASSERT_TRUE(root);
  auto none = img->metacopy_digest(*root);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

// Dumps accept nanoseconds up to 2^32-1 and upstream 1.0.8 writes and reads them back as given,
// so an image our writer produces from such a dump must load (and round-trip) unchanged.
TEST(Reader, OutOfRangeNanosecondsRoundTripLikeUpstream) {
  Tree tree;
  tree.node(tree.root()).mtime_nsec = 5;
  Node n;
  n.mode = S_IFREG | 0644;
  n.mtime_sec = 7;
  n.mtime_nsec = 1500000000;
  tree.link(tree.root(), "late", tree.add_node(std::move(n)));
  auto img = write_and_open(tree);
  ASSERT_TRUE(img) << img.error().message();
  auto loaded = load_tree(*img);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->node(*loaded->lookup("/late")).mtime_nsec, 1500000000U);
}

}  // namespace
}  // namespace cfs::erofs

namespace cfs::erofs {
namespace {

// Random access as the FUSE layer uses it: readdir in pages through cookies, and lookup by
// binary search over multi-block directories, checked against a full readdir of every
// directory of a real image.
TEST(Reader, CookiesAndLookupAgreeWithReaddirEverywhere) {
  REQUIRE_ASSETS();
  auto img = Image::open(kRefDir + "/cs9-x86_64-minimal.cfs");
  ASSERT_TRUE(img);
  std::vector<std::uint64_t> dirs{img->root_nid()};
  std::size_t multi_block = 0;
  for (std::size_t i = 0; i < dirs.size(); ++i) {
    auto ino = img->inode(dirs[i]);
    ASSERT_TRUE(ino);
    if (ino->size > kBlockSize) ++multi_block;
    auto all = img->readdir(dirs[i]);
    ASSERT_TRUE(all) << all.error().message();
    std::vector<DirEntry> paged;
    std::uint64_t cookie = 0;
    for (;;) {
      int n = 0;
      auto st = img->iterate_dir(*ino, cookie, [&](const DirentView& e) {
        paged.push_back({std::string(e.name), e.nid, e.file_type});
        cookie = e.next_offset;
        return ++n < 5;
      });
      ASSERT_TRUE(st);
      if (n < 5) break;
    }
    ASSERT_EQ(paged, *all) << "nid " << dirs[i];
    for (const auto& e : *all) {
      auto found = img->lookup(dirs[i], e.name);
      ASSERT_TRUE(found);
      ASSERT_EQ(*found, std::optional<std::uint64_t>(e.nid)) << e.name;
      auto absent = img->lookup(dirs[i], e.name + "~");
      ASSERT_TRUE(absent);
      EXPECT_FALSE(absent->has_value()) << e.name << "~";
      if (e.file_type == FileType::kDirectory && e.name != "." && e.name != "..")
        dirs.push_back(e.nid);
    }
    auto before = img->lookup(dirs[i], "");
    ASSERT_TRUE(before);
    EXPECT_FALSE(before->has_value());
  }
  EXPECT_GT(multi_block, 3u);  // the binary search over blocks was exercised
}

}  // namespace
}  // namespace cfs::erofs
