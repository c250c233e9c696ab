// SPDX-License-Identifier: Apache-2.0
// The image writer on trees built in C++. Expected numbers come from the worked example and the
// rules of the format specification (docs/format.md §4-§12), and bytes from upstream's
// reference images (CFS_SHARED_DIR/compat/composefs-assets/reference-outputs, when present).
#include "cfs/erofs/writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cfs/erofs/format.h"
#include "cfs/erofs/reader.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"

namespace cfs::erofs {
namespace {

// Writes through a pipe-less temp file so the fd path is exercised.
struct Written {
  WriteResult result;
  std::string bytes;
};

Result<Written> write(const Tree& t, WriteOptions opts = {}) {
  char path[] = "/tmp/cfs-writer-test-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return fail_errno("mkstemp");
  ::unlink(path);
  auto r = write_image(t, opts, fd);
  if (!r) {
    ::close(fd);
    return tl::unexpected(r.error());
  }
  Written w{*r, {}};
  w.bytes.resize(r->size);
  auto n = ::pread(fd, w.bytes.data(), w.bytes.size(), 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(w.bytes.size())) return fail_errno("pread");
  return w;
}

template <typename T>
T at(const std::string& b, std::uint64_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

NodeId add(Tree& t, NodeId dir, const std::string& name, Node n) {
  NodeId id = t.add_node(std::move(n));
  EXPECT_TRUE(t.link(dir, name, id));
  return id;
}

constexpr std::int64_t kT = 1633950376;  // special.dump's mtime

Node make(std::uint32_t mode, std::int64_t mtime = 0) {
  Node n;
  n.mode = mode;
  n.mtime_sec = mtime;
  return n;
}

Node with_content(std::size_t size, std::int64_t mtime = 0) {
  Node n = make(S_IFREG | 0777, mtime);
  n.size = size;
  n.content = std::string(size, 'x');
  return n;
}

// special.dump (composefs-format.md §2.6 and §6) with arbitrary inline bytes.
Tree special_tree() {
  Tree t;
  Node& root = t.node(t.root());
  root.mode = S_IFDIR | 0555;
  root.mtime_sec = kT;
  root.set_xattr("trusted.foo1", "bar-1");
  root.set_xattr("user.foo2", "bar-2");
  Node blk = make(S_IFBLK | 0777, kT);
  blk.rdev = 107690;
  blk.set_xattr("trusted.bar", "bar-2");
  add(t, 0, "blockdev", blk);
  Node chr = make(S_IFCHR | 0777, kT);
  chr.rdev = 10769;
  chr.set_xattr("trusted.foo", "bar-2");
  add(t, 0, "chardev", chr);
  Node esc = make(S_IFREG | 0777, kT);
  esc.set_xattr("trusted.overlay.redirect", "/foo\n");
  esc.set_xattr("user.overlay.redirect", "/foo\n");
  esc.set_xattr("user.foo", "bar-2");
  add(t, 0, "escaped-xattr", esc);
  Node fifo = make(S_IFIFO | 0777, kT);
  fifo.set_xattr("trusted.bar", "bar-2");
  add(t, 0, "fifo", fifo);
  Node in = with_content(15, kT);
  in.set_xattr("user.foo", "bar-2");
  add(t, 0, "inline", in);
  add(t, 0, "inline-large1", with_content(4095, kT));
  add(t, 0, "inline-large2", with_content(4096, kT));
  add(t, 0, "inline-large3", with_content(4097, 1665486376));
  Node wh = make(S_IFCHR | 0777, kT);
  wh.set_xattr("trusted.foo", "bar-2");
  add(t, 0, "whiteout", wh);
  return t;
}

TEST(Writer, WorkedExampleNumbers) {
  auto w = write(special_tree(), {1, 1});
  ASSERT_TRUE(w) << w.error().message();
  const std::string& b = w->bytes;
  EXPECT_EQ(w->result.size, 28672u);
  EXPECT_EQ(w->result.version, 1u);

  auto h = at<ComposefsHeader>(b, 0);
  EXPECT_EQ(h.magic, kComposefsMagic);
  EXPECT_EQ(h.version, 1u);
  EXPECT_EQ(h.flags, 0u);
  EXPECT_EQ(h.composefs_version, 1u);

  auto sb = at<SuperBlock>(b, kSuperOffset);
  EXPECT_EQ(sb.root_nid, 36);
  EXPECT_EQ(sb.inos, 266u);
  EXPECT_EQ(sb.build_time, 1633950376u);
  EXPECT_EQ(sb.blocks, 7u);
  EXPECT_EQ(sb.xattr_blkaddr, 2u);
  EXPECT_EQ(sb.feature_compat, 6u);
  EXPECT_EQ(sb.feature_incompat, 0u);

  // Root: compact dir, FLAT_PLAIN, one full dirent block (block 3), 7 inline xattrs.
  auto root = at<InodeCompact>(b, 1152);
  EXPECT_EQ(root.i_format, 0);
  EXPECT_EQ(root.i_size, 4096u);
  EXPECT_EQ(root.i_u, 3u);
  EXPECT_EQ(root.i_nlink, 2);
  EXPECT_EQ(root.i_xattr_icount, 40);
  EXPECT_EQ(root.i_ino, 0u);
  auto rh = at<XattrIbodyHeader>(b, 1152 + 32);
  EXPECT_EQ(rh.h_name_filter, 0xffefabdfu);
  EXPECT_EQ(rh.h_shared_count, 0);

  // The first stub "00" right after the root (1352 -> slot 1376 = nid 43).
  auto stub = at<InodeCompact>(b, 1376);
  EXPECT_EQ(stub.i_mode, S_IFCHR | 0644);
  EXPECT_EQ(stub.i_ino, 1u);
  EXPECT_EQ(stub.i_u, 0u);

  // blockdev: shared trusted.bar id 510, i_u = rdev.
  auto blk = at<InodeCompact>(b, 235 * 32);
  EXPECT_EQ(blk.i_ino, 193u);
  EXPECT_EQ(blk.i_mode, S_IFBLK | 0777);
  EXPECT_EQ(blk.i_u, 107690u);
  EXPECT_EQ(at<XattrIbodyHeader>(b, 235 * 32 + 32).h_shared_count, 1);
  EXPECT_EQ(at<le32>(b, 235 * 32 + 32 + 12), 510u);
  auto chr = at<InodeCompact>(b, 253 * 32);
  EXPECT_EQ(chr.i_ino, 210u);
  EXPECT_EQ(chr.i_u, 10769u);
  EXPECT_EQ(at<le32>(b, 253 * 32 + 44), 507u);
  auto esc = at<InodeCompact>(b, 287 * 32);
  EXPECT_EQ(esc.i_ino, 243u);
  EXPECT_EQ(esc.i_xattr_icount, 18);
  EXPECT_EQ(at<le32>(b, 287 * 32 + 44), 504u);
  EXPECT_EQ(at<InodeCompact>(b, 307 * 32).i_ino, 260u);  // fifo
  auto in = at<InodeCompact>(b, 309 * 32);
  EXPECT_EQ(in.i_ino, 261u);
  EXPECT_EQ(in.i_format, 2 << 1);  // FLAT_INLINE
  EXPECT_EQ(in.i_size, 15u);
  auto l1 = at<InodeCompact>(b, 311 * 32);
  EXPECT_EQ(l1.i_ino, 262u);
  EXPECT_EQ(l1.i_format, 0);
  EXPECT_EQ(l1.i_u, 4u);
  EXPECT_EQ(at<InodeCompact>(b, 312 * 32).i_u, 5u);
  auto l3 = at<InodeExtended>(b, 313 * 32);
  EXPECT_EQ(l3.i_format, (2 << 1) | 1);  // extended, FLAT_INLINE
  EXPECT_EQ(l3.i_ino, 264u);
  EXPECT_EQ(l3.i_u, 6u);
  EXPECT_EQ(l3.i_size, 4097u);
  EXPECT_EQ(l3.i_mtime, 1665486376u);
  auto wh = at<InodeCompact>(b, 316 * 32);
  EXPECT_EQ(wh.i_ino, 265u);
  EXPECT_EQ(wh.i_mode, S_IFREG | 0777);
  EXPECT_EQ(wh.i_size, 0u);

  // Shared table at inodes_end = 10208: user.foo, trusted.foo, trusted.bar (descending).
  EXPECT_EQ(at<XattrEntry>(b, 10208).e_name_index, 1);
  EXPECT_EQ(b.substr(10208 + 4, 8), "foobar-2");
  EXPECT_EQ(at<XattrEntry>(b, 10220).e_name_index, 4);
  EXPECT_EQ(b.substr(10220 + 4, 8), "foobar-2");
  EXPECT_EQ(b.substr(10232 + 4, 8), "barbar-2");
  EXPECT_TRUE(b.substr(10244, 12288 - 10244).find_first_not_of('\0') == std::string::npos);

  // Digest of the stream = fs-verity of the bytes.
  auto d = verity::digest_bytes(std::as_bytes(std::span(b.data(), b.size())));
  EXPECT_EQ(d, w->result.digest);
}

TEST(Writer, VersionSelection) {
  Tree plain;
  add(plain, 0, "f", make(S_IFIFO | 0644));
  Tree wh;
  add(wh, 0, "w", make(S_IFCHR | 0644));
  auto version = [](const Tree& t, WriteOptions o) {
    auto r = write_image(t, o, -1);
    EXPECT_TRUE(r) << r.error().message();
    return r ? r->version : 99;
  };
  EXPECT_EQ(version(plain, {}), 0u);
  EXPECT_EQ(version(wh, {}), 1u);
  EXPECT_EQ(version(wh, {0, 0}), 0u);
  EXPECT_EQ(version(plain, {1, 0}), 1u);  // max below min is raised to min
  EXPECT_FALSE(write_image(plain, {0, 2}, -1));
  EXPECT_FALSE(write_image(plain, {2, 2}, -1));
}

TEST(Writer, V0AndV1DifferOnlyByOpaqueMarkers) {
  auto v0 = write(special_tree(), {0, 0});
  auto v1 = write(special_tree(), {1, 1});
  ASSERT_TRUE(v0 && v1);
  EXPECT_EQ(v0->result.size, v1->result.size);
  EXPECT_NE(v0->bytes, v1->bytes);
  // v0 root has 5 inline xattrs: 168 - 28 - 20 = 120 bytes, icount 28.
  EXPECT_EQ(at<InodeCompact>(v0->bytes, 1152).i_xattr_icount, 28);
}

TEST(Writer, ComputeOnlyMatchesWrittenStream) {
  Tree t = special_tree();
  auto w = write(t);
  auto c = write_image(t, {}, -1);
  ASSERT_TRUE(w && c);
  EXPECT_EQ(c->digest, w->result.digest);
  EXPECT_EQ(c->size, w->result.size);
}

TEST(Writer, OutputIgnoresInsertionOrder) {
  // Children and xattrs given in another order produce the same bytes.
  auto build = [](bool reverse) {
    Tree t;
    std::vector<std::string> names = {"b", "a", "-x", "00", "zz", ".hidden"};
    if (reverse) std::reverse(names.begin(), names.end());
    for (const auto& n : names) {
      Node f = make(S_IFREG | 0644);
      std::vector<std::pair<std::string, std::string>> xs = {{"user.b", "2"},
                                                             {"security.selinux", "s"},
                                                             {"trusted.overlay.opaque", "y"},
                                                             {"user.a", "1"}};
      if (reverse) std::reverse(xs.begin(), xs.end());
      for (auto& [k, v] : xs) f.set_xattr(k, v);
      add(t, 0, n, f);
    }
    return t;
  };
  auto a = write(build(false));
  auto b = write(build(true));
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->bytes == b->bytes);
}

TEST(Writer, DoesNotModifyTheTree) {
  Tree t = special_tree();
  ASSERT_TRUE(write_image(t, {}, -1));
  const Node& wh = t.node(t.lookup("/whiteout").value());
  EXPECT_EQ(wh.type(), static_cast<std::uint32_t>(S_IFCHR));
  EXPECT_EQ(wh.xattrs.size(), 1u);
  EXPECT_EQ(t.node(t.root()).xattrs.size(), 2u);
  EXPECT_EQ(t.node(t.root()).children.size(), 9u);
  EXPECT_EQ(t.node(t.lookup("/escaped-xattr").value()).xattrs[0].key, "trusted.overlay.redirect");
}

TEST(Writer, ReferenceImageBytes) {
  // Load the upstream special_v1 image with the reader and write it again: same bytes.
  std::string ref =
      std::string(CFS_SHARED_DIR) + "/compat/composefs-assets/reference-outputs/special_v1.cfs";
  if (!std::filesystem::exists(ref)) GTEST_SKIP() << "reference image missing: " << ref;
  auto img = Image::open(ref);
  ASSERT_TRUE(img) << img.error().message();
  auto tree = load_tree(*img);
  ASSERT_TRUE(tree) << tree.error().message();
  auto w = write(*tree);
  ASSERT_TRUE(w) << w.error().message();
  auto want = sys::read_file(ref);
  ASSERT_TRUE(want);
  EXPECT_TRUE(w->bytes == *want);
}

// --- layout rules -------------------------------------------------------------------------

// Offset of the inode for path, from the dirents of its parent (walks the image by hand).
std::uint64_t nid_of(const std::string& b, const std::string& name) {
  // Root is compact at nid 36 in these tests; its dirents are in its first data block.
  auto root = at<InodeCompact>(b, 1152);
  std::uint64_t blk = root.i_u;
  std::uint64_t base = blk * kBlockSize;
  auto first = at<Dirent>(b, base);
  std::uint32_t n = first.nameoff / 12;
  for (std::uint32_t i = 0; i < n; ++i) {
    auto d = at<Dirent>(b, base + 12 * i);
    std::uint32_t end = i + 1 < n
                            ? std::uint32_t{at<Dirent>(b, base + 12 * (i + 1)).nameoff}
                            : static_cast<std::uint32_t>(b.find('\0', base + d.nameoff) - base);
    if (b.substr(base + d.nameoff, end - d.nameoff) == name) return d.nid;
  }
  return 0;
}

TEST(Writer, LongSymlinkTargetMovesToABlockAndInodeIsAligned) {
  // 32 + 4070 >= 4096: the target goes to a data block; the inode is still block-aligned.
  Tree t;
  Node l = make(S_IFLNK | 0777);
  l.payload = std::string(4070, 'a');
  add(t, 0, "l", l);
  auto w = write(t);
  ASSERT_TRUE(w) << w.error().message();
  std::uint64_t nid = nid_of(w->bytes, "l");
  ASSERT_NE(nid, 0u);
  EXPECT_EQ(nid * 32 % kBlockSize, 0u);
  auto ino = at<InodeCompact>(w->bytes, nid * 32);
  EXPECT_EQ(ino.i_format, 0);  // FLAT_PLAIN
  EXPECT_EQ(ino.i_size, 4070u);
  EXPECT_EQ(w->bytes.substr(std::uint64_t{ino.i_u} * kBlockSize, 4070), l.payload);
}

TEST(Writer, SymlinkCrossingABlockIsPaddedToTheNextBlock) {
  // Root 1152 + 32 + 12 + 20 (opaque=y) -> 1216; 256 stubs of 32 bytes end at 9408;
  // a symlink of 32 + 3000 bytes would cross 12288 when placed at 9408.
  Tree t;
  Node l = make(S_IFLNK | 0777);
  l.payload = std::string(3000, 'b');
  add(t, 0, "zz", l);
  auto w = write(t);
  ASSERT_TRUE(w);
  std::uint64_t nid = nid_of(w->bytes, "zz");
  EXPECT_EQ(nid * 32, 12288u);
  auto ino = at<InodeCompact>(w->bytes, nid * 32);
  EXPECT_EQ(ino.i_format, 2 << 1);  // FLAT_INLINE
  EXPECT_EQ(w->bytes.substr(nid * 32 + 32, 3000), l.payload);
}

TEST(Writer, InlineTailShiftsBySlotRoundedRemainder) {
  // A file placed where its 2000-byte tail does not fit in the rest of the block is shifted by
  // round_up(remainder, 32): its inode ends just past the boundary, the tail starts the block.
  Tree t;
  Node f = with_content(2000);
  add(t, 0, "zz", f);
  Node g = with_content(2000);
  add(t, 0, "zzz", g);
  auto w = write(t);
  ASSERT_TRUE(w);
  // Root 1152 + 32 + 32 (opaque=y) = 1216, then 256 stubs: "zz" at 9408; its tail fits
  // (4096 - (9408 + 32) % 4096 = 2848 bytes left) and it ends at 11440.
  EXPECT_EQ(nid_of(w->bytes, "zz") * 32, 9408u);
  // "zzz" at slot 11456: 4096 - (11456 + 32) % 4096 = 800 < 2000, so it shifts by
  // round_up(800, 32) = 800 to 12256; its header ends at 12288 and the tail fills the block.
  EXPECT_EQ(nid_of(w->bytes, "zzz") * 32, 12256u);
  EXPECT_EQ(w->bytes.substr(12288, 2000), std::string(2000, 'x'));
}

TEST(Writer, ExternalFileGetsMetacopyAndRedirect) {
  Tree t;
  Node f = make(S_IFREG | 0644);
  f.size = 4097;
  f.payload = "ab/cdef";
  verity::Digest d = verity::Digest::zero(verity::HashAlg::kSha256);
  for (std::size_t i = 0; i < d.size; ++i) d.bytes[i] = static_cast<std::uint8_t>(i);
  f.digest = d;
  add(t, 0, "f", f);
  auto w = write(t);
  ASSERT_TRUE(w);
  std::uint64_t off = nid_of(w->bytes, "f") * 32;
  auto ino = at<InodeCompact>(w->bytes, off);
  EXPECT_EQ(ino.i_format, 4 << 1);  // CHUNK_BASED
  EXPECT_EQ(ino.i_u, 1u);           // chunkbits 13
  EXPECT_EQ(ino.i_size, 4097u);
  // metacopy sorts before redirect; both inline: header, then the entries, then the table.
  std::uint64_t x = off + 32 + 12;
  auto mc = at<XattrEntry>(w->bytes, x);
  EXPECT_EQ(mc.e_name_index, 4);
  EXPECT_EQ(w->bytes.substr(x + 4, mc.e_name_len), "overlay.metacopy");
  EXPECT_EQ(mc.e_value_size, 36);
  std::string v = w->bytes.substr(x + 4 + mc.e_name_len, 36);
  EXPECT_EQ(v.substr(0, 4), std::string("\x00\x24\x00\x01", 4));
  EXPECT_EQ(static_cast<unsigned char>(v[35]), 31);
  x += 4 + 16 + 36;
  auto rd = at<XattrEntry>(w->bytes, x);
  EXPECT_EQ(w->bytes.substr(x + 4, rd.e_name_len), "overlay.redirect");
  EXPECT_EQ(w->bytes.substr(x + 4 + rd.e_name_len, rd.e_value_size), "/ab/cdef");
  x += (4 + 16 + 8 + 3) / 4 * 4;
  EXPECT_EQ(at<le32>(w->bytes, x), kNullAddr);
}

TEST(Writer, FilesWithEqualDigestsShareXattrs) {
  Tree t;
  for (const char* name : {"a", "b"}) {
    Node f = make(S_IFREG | 0644);
    f.size = 10;
    f.payload = "xx/yy";
    add(t, 0, name, f);
  }
  auto w = write(t);
  ASSERT_TRUE(w);
  std::uint64_t off = nid_of(w->bytes, "a") * 32;
  EXPECT_EQ(at<XattrIbodyHeader>(w->bytes, off + 32).h_shared_count, 2);
  // The shared table holds the redirect first (names descending), then the empty metacopy.
  std::uint64_t table = at<SuperBlock>(w->bytes, kSuperOffset).xattr_blkaddr * kBlockSize;
  std::uint32_t id0 = at<le32>(w->bytes, off + 32 + 12);
  std::uint32_t id1 = at<le32>(w->bytes, off + 32 + 16);
  auto e0 = at<XattrEntry>(w->bytes, table + id0 * 4);
  EXPECT_EQ(w->bytes.substr(table + id0 * 4 + 4, e0.e_name_len), "overlay.metacopy");
  auto e1 = at<XattrEntry>(w->bytes, table + id1 * 4);
  EXPECT_EQ(w->bytes.substr(table + id1 * 4 + 4, e1.e_name_len), "overlay.redirect");
  EXPECT_LT(id1, id0);
}

TEST(Writer, HardlinksPointAtTheTargetInode) {
  Tree t;
  Node f = make(S_IFREG | 0644);
  f.nlink = 2;
  NodeId id = add(t, 0, "a", f);
  ASSERT_TRUE(t.link(0, "b", id, true));
  auto w = write(t);
  ASSERT_TRUE(w);
  EXPECT_EQ(nid_of(w->bytes, "a"), nid_of(w->bytes, "b"));
  EXPECT_EQ(at<SuperBlock>(w->bytes, kSuperOffset).inos, 1u + 1 + 256);
}

TEST(Writer, ExistingStubNamesAreNotDuplicated) {
  Tree t;
  add(t, 0, "00", make(S_IFDIR | 0755));
  add(t, 0, "ff", make(S_IFREG | 0644));
  auto w = write(t);
  ASSERT_TRUE(w);
  EXPECT_EQ(at<SuperBlock>(w->bytes, kSuperOffset).inos, 1u + 2 + 254);
  EXPECT_EQ(at<InodeCompact>(w->bytes, 1152).i_nlink, 3);  // root nlink = 2 + 1 subdir
}

TEST(Writer, CompactOnlyAtMinimumMtime) {
  Tree t;
  t.node(0).mtime_sec = 100;
  add(t, 0, "new", make(S_IFIFO | 0644, 200));
  add(t, 0, "old", make(S_IFIFO | 0644, 100));
  Node big_uid = make(S_IFIFO | 0644, 100);
  big_uid.uid = 70000;
  add(t, 0, "uid", big_uid);
  auto w = write(t);
  ASSERT_TRUE(w);
  EXPECT_EQ(at<InodeCompact>(w->bytes, nid_of(w->bytes, "new") * 32).i_format, 1);
  EXPECT_EQ(at<InodeCompact>(w->bytes, nid_of(w->bytes, "old") * 32).i_format, 0);
  EXPECT_EQ(at<InodeExtended>(w->bytes, nid_of(w->bytes, "uid") * 32).i_uid, 70000u);
  EXPECT_EQ(at<SuperBlock>(w->bytes, kSuperOffset).build_time, 100u);
}

TEST(Writer, EscapesUserOverlayXattrs) {
  Tree t;
  Node f = make(S_IFREG | 0644);
  f.set_xattr("trusted.overlay.overlay.x", "1");
  f.set_xattr("trusted.overlay.x", "2");
  add(t, 0, "f", f);
  auto w = write(t);
  ASSERT_TRUE(w);
  std::uint64_t off = nid_of(w->bytes, "f") * 32 + 32 + 12;
  // Sorted: trusted.overlay.overlay.overlay.x (from the escaped one), trusted.overlay.overlay.x.
  auto e1 = at<XattrEntry>(w->bytes, off);
  EXPECT_EQ(w->bytes.substr(off + 4, e1.e_name_len), "overlay.overlay.overlay.x");
  EXPECT_EQ(w->bytes.substr(off + 4 + e1.e_name_len, 1), "1");
  off += (4u + e1.e_name_len + 1 + 3) / 4 * 4;
  auto e2 = at<XattrEntry>(w->bytes, off);
  EXPECT_EQ(w->bytes.substr(off + 4, e2.e_name_len), "overlay.overlay.x");
  EXPECT_EQ(w->bytes.substr(off + 4 + e2.e_name_len, 1), "2");
}

TEST(Writer, AclSetsHeaderFlag) {
  Tree t;
  t.node(0).set_xattr("system.posix_acl_default", std::string("\x02\x00\x00\x00", 4));
  auto w = write(t);
  ASSERT_TRUE(w);
  EXPECT_EQ(at<ComposefsHeader>(w->bytes, 0).flags, kComposefsFlagHasAcl);
}

// --- errors ---------------------------------------------------------------------------------

void expect_invalid(const Tree& t, const std::string& needle) {
  auto r = write_image(t, {}, -1);
  ASSERT_FALSE(r) << "expected failure mentioning " << needle;
  EXPECT_TRUE(r.error().is(Errc::kInvalidInput)) << r.error().message();
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
}

TEST(WriterErrors, TooManyChunks) {
  Tree t;
  NodeId d = add(t, 0, "d", make(S_IFDIR | 0755));
  Node f = make(S_IFREG | 0644);
  f.size = 9500000000000000ull;
  add(t, d, "big", f);
  expect_invalid(t, "/d/big");
}

TEST(WriterErrors, HardlinkOutsideTheTree) {
  Tree t;
  NodeId orphan = t.add_node(make(S_IFREG | 0644));
  ASSERT_TRUE(t.link(0, "l", orphan, true));
  expect_invalid(t, "hardlink 'l'");
}

TEST(WriterErrors, HardlinkToDirectory) {
  Tree t;
  NodeId d = add(t, 0, "d", make(S_IFDIR | 0755));
  ASSERT_TRUE(t.link(0, "l", d, true));
  expect_invalid(t, "directory");
}

TEST(WriterErrors, BadNodes) {
  {
    Tree t;
    add(t, 0, "x", make(0644));
    expect_invalid(t, "/x");
  }
  {
    Tree t;
    add(t, 0, "l", make(S_IFLNK | 0777));
    expect_invalid(t, "/l: symlink");
  }
  {
    Tree t;
    Node l = make(S_IFLNK | 0777);
    l.payload = std::string(4096, 'a');
    add(t, 0, "l", l);
    expect_invalid(t, "/l");
  }
  {
    Tree t;
    Node f = with_content(10);
    f.size = 11;
    add(t, 0, "f", f);
    expect_invalid(t, "/f");
  }
  {
    Tree t;
    add(t, 0, "f", with_content(5001));
    expect_invalid(t, "exceeds maximum 5000");
  }
  {
    Tree t;
    t.node(0).mode = S_IFREG | 0644;
    expect_invalid(t, "root");
  }
  {
    Tree t;
    NodeId f = add(t, 0, "f", make(S_IFREG | 0644));
    t.node(f).children.push_back({"x", f, true});
    expect_invalid(t, "/f");
  }
  {
    Tree t;
    Node f = make(S_IFREG | 0644);
    f.xattrs.push_back({"", "v"});
    add(t, 0, "f", f);
    expect_invalid(t, "/f");
  }
}

TEST(WriterErrors, XattrBudgetOfWriterAddedXattrs) {
  // composefs accounts 7 + key + value per xattr it sets on its deep clone, whose running
  // total starts at 0; replacing a user's long user.overlay.whiteouts value drives it below
  // zero, which its size_t arithmetic turns into ERANGE (checked against 1.0.8).
  Tree t;
  Node d = make(S_IFDIR | 0755);
  d.set_xattr("user.overlay.whiteouts", std::string(100, 'x'));
  NodeId dir = add(t, 0, "d", d);
  add(t, dir, "w", make(S_IFCHR | 0644));
  expect_invalid(t, "/d: xattr user.overlay.whiteouts");

  Tree ok;
  Node f = make(S_IFREG | 0644);
  f.size = 1;
  f.payload = std::string(4095, 'p');
  add(ok, 0, "ok", f);
  EXPECT_TRUE(write_image(ok, {}, -1));
}

}  // namespace
}  // namespace cfs::erofs
