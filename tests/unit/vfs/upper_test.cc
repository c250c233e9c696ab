// SPDX-License-Identifier: Apache-2.0
// The writable upper layer without FUSE: merge rules (whiteouts, opaque directories), copy-up
// (metacopy with the digest, full data), namespace changes, all checked on the upper directory
// in overlayfs' on-disk format. Expected digests come from the verity module (checked against
// fsverity-utils vectors elsewhere), never from the code under test. Needs root (trusted.*
// xattrs, whiteout device nodes).
#include "cfs/vfs/upper.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "cfs/erofs/writer.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"
#include "test_util.h"
#include "testutil/tree_builder.h"

namespace cfs::vfs {
namespace {

using testing::TempDir;
using testutil::random_bytes;

std::optional<std::string> xattr_of(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

bool is_whiteout(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

class UpperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (trusted.* xattrs, whiteouts)";
    big_ = random_bytes(300000, 1);
    testutil::TreeBuilder b(store_.path());
    auto add_file = [&](NodeId dir, const std::string& name, const std::string& content,
                        bool digest) {
      b.file(dir, name, content, {digest, true});
      if (digest) {
        const verity::Digest d = b.digest_of(content);
        digests_[name] = std::string(reinterpret_cast<const char*>(d.bytes.data()), d.size);
      }
      objects_[name] = b.object_of(content);
    };
    auto add_dir = [&](NodeId parent, const std::string& name) {
      NodeId id = b.dir(parent, name, 0750);
      b.tree().node(id).uid = 7;
      return id;
    };
    add_file(b.root(), "big", big_, true);
    add_file(b.root(), "nodigest", random_bytes(5000, 2), false);
    b.inline_file(b.root(), "inline", "tiny");
    auto d = add_dir(b.root(), "d");
    add_file(d, "f", "hello\n", true);
    auto s = add_dir(d, "s");
    add_file(s, "x", "x\n", true);
    b.symlink(d, "lnk", "f");
    image_ = dir_ / "image.cfs";
    auto fd = sys::open(image_, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_TRUE(fd);
    auto r = erofs::write_image(b.tree(), {}, fd->get());
    if (!r && r.error().is(Errc::kUnsupportedFeature))
      GTEST_SKIP() << "image writer not available: " << r.error().message();
    ASSERT_TRUE(r) << r.error().message();
    std::filesystem::create_directories(upper());
    std::filesystem::create_directories(work());
  }

  std::string upper() { return dir_ / "upper"; }
  std::string work() { return dir_ / "work"; }
  std::string up(const std::string& rel) { return upper() + "/" + rel; }

  std::unique_ptr<MergedFs> mount(VerityMode mode = VerityMode::kOn) {
    Options o;
    o.basedirs = {store_.path()};
    o.verity = mode;
    auto fs = Filesystem::open(image_, o);
    EXPECT_TRUE(fs) << fs.error().message();
    if (!fs) return nullptr;
    auto m = MergedFs::open(std::move(*fs), upper(), work());
    EXPECT_TRUE(m) << m.error().message();
    return m ? std::move(*m) : nullptr;
  }

  // Node of a merged path ("a/b"), or 0.
  MergedNode node(MergedFs& m, const std::string& path) {
    MergedNode n = kMergedRoot;
    std::size_t pos = 0;
    while (pos < path.size()) {
      auto s = path.find('/', pos);
      if (s == std::string::npos) s = path.size();
      auto e = m.lookup(n, path.substr(pos, s - pos));
      if (!e) return 0;
      n = e->node;
      pos = s + 1;
    }
    return n;
  }

  int lookup_errno(MergedFs& m, const std::string& path) {
    auto parent = path.rfind('/');
    MergedNode dir = parent == std::string::npos ? kMergedRoot : node(m, path.substr(0, parent));
    auto e = m.lookup(dir, parent == std::string::npos ? path : path.substr(parent + 1));
    return e ? 0 : errno_for(e.error());
  }

  std::set<std::string> names(MergedFs& m, const std::string& path) {
    std::set<std::string> out;
    auto l = m.list_dir(path.empty() ? kMergedRoot : node(m, path));
    EXPECT_TRUE(l) << l.error().message();
    if (l)
      for (auto& d : *l)
        if (d.name != "." && d.name != "..") out.insert(d.name);
    return out;
  }

  std::string read_all(MergedFs& m, const std::string& path, int* err = nullptr) {
    auto f = m.open(node(m, path), O_RDONLY);
    if (!f) {
      if (err) *err = errno_for(f.error());
      return {};
    }
    std::string out;
    ReadBuffer buf;
    for (;;) {
      auto r = m.read(**f, out.size(), 65536, buf);
      if (!r) {
        if (err) *err = errno_for(r.error());
        return out;
      }
      if (r->empty()) break;
      out.append(reinterpret_cast<const char*>(r->data()), r->size());
    }
    if (err) *err = 0;
    return out;
  }

  TempDir dir_, store_;
  std::string image_, big_;
  std::map<std::string, std::string> digests_, objects_;
};

TEST_F(UpperTest, UpperEntriesWhiteoutsAndOpaqueDirsMerge) {
  ASSERT_EQ(::mkdir(up("d").c_str(), 0755), 0);
  ASSERT_EQ(::mknod(up("d/f").c_str(), S_IFCHR, makedev(0, 0)), 0);
  std::ofstream(up("d/new")) << "new";
  ASSERT_EQ(::mkdir(up("d/s").c_str(), 0755), 0);
  ASSERT_EQ(::lsetxattr(up("d/s").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  std::ofstream(up("d/s/y")) << "y";
  auto m = mount();
  ASSERT_TRUE(m);
  EXPECT_EQ(names(*m, "d"), (std::set<std::string>{"lnk", "new", "s"}));
  EXPECT_EQ(lookup_errno(*m, "d/f"), ENOENT);
  EXPECT_EQ(names(*m, "d/s"), (std::set<std::string>{"y"}));
  EXPECT_EQ(lookup_errno(*m, "d/s/x"), ENOENT);
  EXPECT_EQ(read_all(*m, "d/new"), "new");
  // Without the opaque marker the lower child shows through.
  ASSERT_EQ(::lremovexattr(up("d/s").c_str(), "trusted.overlay.opaque"), 0);
  EXPECT_EQ(names(*m, "d/s"), (std::set<std::string>{"x", "y"}));
  EXPECT_EQ(read_all(*m, "d/s/x"), "x\n");
  // The upper's private xattrs are not visible.
  auto xs = m->listxattr(node(*m, "d"));
  ASSERT_TRUE(xs);
  EXPECT_TRUE(xs->empty());
}

TEST_F(UpperTest, ChmodMakesMetacopyCopyUpWithDigest) {
  auto m = mount();
  ASSERT_TRUE(m);
  auto before = m->getattr(node(*m, "big"));
  ASSERT_TRUE(before);
  SetAttr a;
  a.mode = 0600;
  auto st = m->setattr(node(*m, "big"), a, nullptr);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(st->st_mode & 07777, 0600u);
  EXPECT_EQ(st->st_ino, before->st_ino);  // copy-up keeps the inode number
  auto mc = xattr_of(up("big"), "trusted.overlay.metacopy");
  ASSERT_TRUE(mc);
  EXPECT_EQ(*mc, std::string("\x00\x24\x00\x01", 4) + digests_["big"]);
  EXPECT_EQ(xattr_of(up("big"), "trusted.overlay.redirect"), "/big");
  struct stat ust;
  ASSERT_EQ(::lstat(up("big").c_str(), &ust), 0);
  EXPECT_EQ(ust.st_size, static_cast<off_t>(big_.size()));
  EXPECT_LE(ust.st_blocks, 8);  // sparse: at most an xattr block (ext4)
  EXPECT_EQ(read_all(*m, "big"), big_);
  // The data still comes verified from the object.
  {
    std::fstream obj(objects_["big"], std::ios::in | std::ios::out | std::ios::binary);
    obj.seekp(1000);
    obj.put(static_cast<char>(big_[1000] ^ 1));
  }
  auto m2 = mount();
  int err = 0;
  read_all(*m2, "big", &err);
  EXPECT_EQ(err, EIO);
}

TEST_F(UpperTest, CopyUpOfParentsKeepsTheirMetadata) {
  auto m = mount();
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->setxattr(node(*m, "d/s/x"), "user.k", "v", 0));
  struct stat st;
  ASSERT_EQ(::lstat(up("d/s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFDIR | 0750u);
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_FALSE(xattr_of(up("d/s"), "trusted.overlay.opaque"));
  EXPECT_EQ(xattr_of(up("d/s/x"), "user.k"), "v");
  EXPECT_EQ(m->getxattr(node(*m, "d/s/x"), "user.k"), "v");
  EXPECT_EQ(names(*m, "d"), (std::set<std::string>{"f", "lnk", "s"}));
}

TEST_F(UpperTest, WriteMakesFullCopyUpWithoutMetacopy) {
  auto m = mount();
  ASSERT_TRUE(m);
  SetAttr a;
  a.mode = 0640;
  ASSERT_TRUE(m->setattr(node(*m, "big"), a, nullptr));
  auto f = m->open(node(*m, "big"), O_WRONLY);
  ASSERT_TRUE(f) << f.error().message();
  std::string patch = "PATCH";
  ASSERT_TRUE(m->write(**f, std::as_bytes(std::span(patch.data(), patch.size())), 10));
  f->reset();
  std::string want = big_;
  want.replace(10, 5, patch);
  EXPECT_FALSE(xattr_of(up("big"), "trusted.overlay.metacopy"));
  EXPECT_FALSE(xattr_of(up("big"), "trusted.overlay.redirect"));
  struct stat st;
  ASSERT_EQ(::lstat(up("big").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  auto got = sys::read_file(up("big"));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, want);
  EXPECT_EQ(read_all(*m, "big"), want);
}

TEST_F(UpperTest, RequireWithoutDigestCopiesDataUp) {
  auto m = mount(VerityMode::kOn);
  ASSERT_TRUE(m);
  SetAttr a;
  a.uid = 5;
  ASSERT_TRUE(m->setattr(node(*m, "nodigest"), a, nullptr));
  // verity=on without a digest: a metacopy with an empty value.
  EXPECT_EQ(xattr_of(up("nodigest"), "trusted.overlay.metacopy"), "");
  std::filesystem::remove(up("nodigest"));
  // verity=require refuses the file (EIO), so nothing is copied up.
  auto r = mount(VerityMode::kRequire);
  ASSERT_TRUE(r);
  auto st = r->setattr(node(*r, "nodigest"), a, nullptr);
  ASSERT_FALSE(st);
  EXPECT_EQ(errno_for(st.error()), EIO);
  EXPECT_FALSE(std::filesystem::exists(up("nodigest")));
}

TEST_F(UpperTest, FilesStoredInTheImage) {
  SetAttr a;
  a.mode = 0600;
  {
    // Nothing to record: an empty metacopy, the data still read from the image.
    auto m = mount(VerityMode::kOn);
    ASSERT_TRUE(m);
    ASSERT_TRUE(m->setattr(node(*m, "inline"), a, nullptr));
    EXPECT_EQ(xattr_of(up("inline"), "trusted.overlay.metacopy"), "");
    EXPECT_EQ(read_all(*m, "inline"), "tiny");
  }
  std::filesystem::remove(up("inline"));
  // verity=require: no digest to record, so the data is copied.
  auto m = mount(VerityMode::kRequire);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->setattr(node(*m, "inline"), a, nullptr));
  EXPECT_FALSE(xattr_of(up("inline"), "trusted.overlay.metacopy"));
  EXPECT_EQ(sys::read_file(up("inline")), "tiny");
  EXPECT_EQ(read_all(*m, "inline"), "tiny");
}

TEST_F(UpperTest, UnlinkRmdirLeaveWhiteouts) {
  auto m = mount();
  ASSERT_TRUE(m);
  auto s = node(*m, "d/s");
  EXPECT_EQ(errno_for(m->rmdir(node(*m, "d"), "s").error()), ENOTEMPTY);
  ASSERT_TRUE(m->unlink(s, "x"));
  EXPECT_TRUE(is_whiteout(up("d/s/x")));
  ASSERT_TRUE(m->rmdir(node(*m, "d"), "s"));
  EXPECT_TRUE(is_whiteout(up("d/s")));
  EXPECT_EQ(lookup_errno(*m, "d/s"), ENOENT);
  EXPECT_EQ(names(*m, "d"), (std::set<std::string>{"f", "lnk"}));
  // A new directory over the whiteout must not show the old lower children.
  auto e = m->mkdir(node(*m, "d"), "s", 0755, {});
  ASSERT_TRUE(e);
  EXPECT_EQ(xattr_of(up("d/s"), "trusted.overlay.opaque"), "y");
  EXPECT_TRUE(names(*m, "d/s").empty());
  // A file only in the upper leaves nothing behind.
  std::unique_ptr<MergedFile> f;
  ASSERT_TRUE(m->create(kMergedRoot, "tmp", 0644, O_WRONLY, {}, f));
  f.reset();
  ASSERT_TRUE(m->unlink(kMergedRoot, "tmp"));
  EXPECT_FALSE(std::filesystem::exists(up("tmp")));
  EXPECT_TRUE(std::filesystem::is_symlink(up("d/lnk")) == false);
}

TEST_F(UpperTest, RenameFilesAndUpperDirs) {
  auto m = mount();
  ASSERT_TRUE(m);
  auto big = node(*m, "big");
  ASSERT_TRUE(m->rename(kMergedRoot, "big", node(*m, "d"), "moved", 0));
  EXPECT_TRUE(is_whiteout(up("big")));
  EXPECT_EQ(xattr_of(up("d/moved"), "trusted.overlay.redirect"), "/big");
  EXPECT_EQ(read_all(*m, "d/moved"), big_);
  EXPECT_EQ(m->path_of(big), "d/moved");  // the node moved with the name
  EXPECT_EQ(lookup_errno(*m, "big"), ENOENT);
  // Lower (and merged) directories cannot move; upper-only ones can.
  EXPECT_EQ(errno_for(m->rename(kMergedRoot, "d", kMergedRoot, "e", 0).error()), EXDEV);
  ASSERT_TRUE(m->mkdir(kMergedRoot, "n", 0755, {}));
  std::unique_ptr<MergedFile> f;
  ASSERT_TRUE(m->create(node(*m, "n"), "c", 0644, O_WRONLY, {}, f));
  f.reset();
  ASSERT_TRUE(m->rename(kMergedRoot, "n", kMergedRoot, "n2", 0));
  EXPECT_EQ(names(*m, "n2"), (std::set<std::string>{"c"}));
  EXPECT_FALSE(std::filesystem::exists(up("n")));
  // Onto an existing lower name.
  EXPECT_EQ(errno_for(m->rename(kMergedRoot, "n2", kMergedRoot, "d", RENAME_NOREPLACE).error()),
            EEXIST);
  ASSERT_TRUE(m->rename(node(*m, "n2"), "c", kMergedRoot, "nodigest", 0));
  EXPECT_EQ(read_all(*m, "nodigest"), "");
}

TEST_F(UpperTest, NewEntriesBelongToTheCallerOrTheSetgidGroup) {
  auto m = mount();
  ASSERT_TRUE(m);
  std::unique_ptr<MergedFile> f;
  ASSERT_TRUE(m->create(node(*m, "d"), "mine", 0644, O_WRONLY, {11, 22}, f));
  struct stat st;
  ASSERT_EQ(::lstat(up("d/mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 11u);
  EXPECT_EQ(st.st_gid, 22u);
  SetAttr a;
  a.gid = 33;
  a.mode = 02775;
  ASSERT_TRUE(m->setattr(node(*m, "d/s"), a, nullptr));
  auto e = m->mkdir(node(*m, "d/s"), "sub", 0755, {11, 22});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->st.st_uid, 11u);
  EXPECT_EQ(e->st.st_gid, 33u);
  EXPECT_TRUE(e->st.st_mode & S_ISGID);
}

TEST_F(UpperTest, ChangesPersistAcrossMounts) {
  {
    auto m = mount();
    ASSERT_TRUE(m);
    ASSERT_TRUE(m->symlink(node(*m, "d"), "l2", "target", {}));
    ASSERT_TRUE(m->unlink(node(*m, "d"), "f"));
    ASSERT_TRUE(m->link(node(*m, "big"), node(*m, "d"), "hard"));
  }
  auto m = mount();
  ASSERT_TRUE(m);
  EXPECT_EQ(names(*m, "d"), (std::set<std::string>{"hard", "l2", "lnk", "s"}));
  EXPECT_EQ(m->readlink(node(*m, "d/l2")), "target");
  EXPECT_EQ(read_all(*m, "d/hard"), big_);
  EXPECT_EQ(read_all(*m, "big"), big_);
}

// FORGET gives the kernel's lookups back: nodes nobody holds are freed (parents kept only for
// a child go with it), and a forgotten id is stale.
TEST_F(UpperTest, ForgetShrinksTheNodeTable) {
  auto m = mount();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->node_count(), 1u);
  MergedNode d = node(*m, "d");
  MergedNode s = node(*m, "d/s");
  MergedNode x = node(*m, "d/s/x");
  EXPECT_EQ(m->node_count(), 4u);
  EXPECT_EQ(node(*m, "d/s/x"), x);  // the same names give the same nodes (one more lookup each)
  EXPECT_EQ(m->node_count(), 4u);
  // node() looks every component up: d was looked up 4 times, s 3 times, x twice.
  m->forget(d, 4);
  m->forget(s, 3);
  EXPECT_EQ(m->path_of(x), "d/s/x");  // x still needs its parents
  m->forget(x, 1);
  EXPECT_EQ(m->path_of(x), "d/s/x");
  m->forget(x, 1);
  EXPECT_EQ(m->node_count(), 1u);
  auto st = m->getattr(x);
  ASSERT_FALSE(st);
  EXPECT_EQ(errno_for(st.error()), ESTALE);
  // Creating entries counts lookups too.
  auto e = m->mkdir(kMergedRoot, "new", 0755, {});
  ASSERT_TRUE(e);
  EXPECT_EQ(m->node_count(), 2u);
  m->forget(e->node, 1);
  EXPECT_EQ(m->node_count(), 1u);
  EXPECT_EQ(names(*m, ""), (std::set<std::string>{"big", "d", "inline", "new", "nodigest"}));
}

// Renaming a directory moves the nodes below it with it; the replaced name's node goes stale.
TEST_F(UpperTest, RenameCarriesKnownChildren) {
  auto m = mount();
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->mkdir(kMergedRoot, "a", 0755, {}));
  std::unique_ptr<MergedFile> f;
  auto c = m->create(node(*m, "a"), "c", 0644, O_WRONLY, {}, f);
  ASSERT_TRUE(c);
  f.reset();
  ASSERT_TRUE(m->mkdir(kMergedRoot, "b", 0755, {}));
  MergedNode old_b = node(*m, "b");
  ASSERT_TRUE(m->rename(kMergedRoot, "a", kMergedRoot, "b", 0));
  EXPECT_EQ(m->path_of(c->node), "b/c");
  EXPECT_EQ(read_all(*m, "b/c"), "");
  auto st = m->getattr(old_b);
  ASSERT_FALSE(st);
  EXPECT_EQ(errno_for(st.error()), ESTALE);
  ASSERT_TRUE(m->unlink(node(*m, "b"), "c"));
  EXPECT_FALSE(m->path_of(c->node));
}

// The upper and work directories are held open: moving them away after the mount does not
// redirect the mount to whatever appears at the old paths.
TEST_F(UpperTest, UpperIsHeldOpenNotReachedByPath) {
  auto m = mount();
  ASSERT_TRUE(m);
  std::filesystem::rename(upper(), dir_ / "upper.moved");
  std::filesystem::rename(work(), dir_ / "work.moved");
  std::filesystem::create_directories(upper());
  std::filesystem::create_directories(work() + "/cfs-work");
  SetAttr a;
  a.mode = 0600;
  ASSERT_TRUE(m->setattr(node(*m, "d/f"), a, nullptr));
  std::unique_ptr<MergedFile> f;
  ASSERT_TRUE(m->create(kMergedRoot, "n", 0644, O_WRONLY, {}, f));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "upper.moved/d/f"));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "upper.moved/n"));
  EXPECT_TRUE(std::filesystem::is_empty(upper()));
  EXPECT_TRUE(std::filesystem::is_empty(work() + "/cfs-work"));
}

// chmod of an upper symlink must not follow it (out of the upper, here).
TEST_F(UpperTest, ChmodNeverFollowsAnUpperSymlink) {
  std::string outside = dir_ / "outside";
  std::ofstream(outside) << "x";
  ASSERT_EQ(::chmod(outside.c_str(), 0644), 0);
  auto m = mount();
  ASSERT_TRUE(m);
  auto l = m->symlink(kMergedRoot, "l", outside, {});
  ASSERT_TRUE(l);
  SetAttr a;
  a.mode = 0600;
  auto st = m->setattr(l->node, a, nullptr);
  ASSERT_FALSE(st);
  EXPECT_EQ(errno_for(st.error()), EOPNOTSUPP);
  struct stat ost;
  ASSERT_EQ(::stat(outside.c_str(), &ost), 0);
  EXPECT_EQ(ost.st_mode & 07777, 0644u);
  SetAttr t;
  t.mtime = timespec{1234, 0};
  auto lst = m->setattr(l->node, t, nullptr);
  ASSERT_TRUE(lst) << lst.error().message();
  EXPECT_EQ(lst->st_mtim.tv_sec, 1234);
  ASSERT_EQ(::stat(outside.c_str(), &ost), 0);
  EXPECT_NE(ost.st_mtim.tv_sec, 1234);
}

TEST_F(UpperTest, WorkdirChecksAndScratchCleanup) {
  Options o;
  o.basedirs = {store_.path()};
  auto open_with = [&](const std::string& u, const std::string& w) {
    auto fs = Filesystem::open(image_, o);
    EXPECT_TRUE(fs);
    return MergedFs::open(std::move(*fs), u, w);
  };
  std::filesystem::create_directories(upper() + "/w");
  std::filesystem::create_directories(work() + "/u");
  for (auto [u, w] : {std::pair{upper(), upper()}, std::pair{upper(), upper() + "/w"},
                      std::pair{work() + "/u", work()}}) {
    auto r = open_with(u, w);
    ASSERT_FALSE(r) << u << " " << w;
    EXPECT_NE(r.error().message().find("must not contain each other"), std::string::npos)
        << r.error().message();
  }
  // Through a symlink to the upper: still refused (the check compares inodes, not strings).
  std::filesystem::create_directory_symlink(upper(), dir_ / "alias");
  EXPECT_FALSE(open_with(dir_ / "alias", upper() + "/w"));
  auto notdir = open_with(dir_ / "image.cfs", work());
  ASSERT_FALSE(notdir);
  EXPECT_EQ(errno_for(notdir.error()), ENOTDIR);
  EXPECT_NE(notdir.error().message().find("upperdir"), std::string::npos);
  // Leftovers of a crashed server in the scratch directory are removed at mount.
  std::filesystem::create_directories(work() + "/cfs-work/#3/deep");
  std::ofstream(work() + "/cfs-work/#3/deep/f") << "x";
  std::ofstream(work() + "/cfs-work/#4") << "x";
  std::filesystem::remove_all(upper() + "/w");
  std::filesystem::remove_all(work() + "/u");
  ASSERT_TRUE(open_with(upper(), work()));
  EXPECT_TRUE(std::filesystem::is_empty(work() + "/cfs-work"));
}

}  // namespace
}  // namespace cfs::vfs
