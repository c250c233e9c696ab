// SPDX-License-Identifier: Apache-2.0
// The filesystem over upstream's reference images (composefs 1.0.8 output). Expected values
// were read off the kernel mount of the same images on Linux 6.18 (`mount -t erofs` + overlay
// `metacopy=on,redirect_dir=on,lowerdir=E::STORE`): stat -c '%i %s %b %h', ls -l, getfattr.
#include "cfs/vfs/filesystem.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>

#include "test_util.h"

namespace cfs::vfs {
namespace {

using testing::TempDir;

std::unique_ptr<Filesystem> open_fs(const std::string& image, const std::string& store,
                                    VerityMode mode = VerityMode::kOn) {
  Options o;
  o.basedirs = {store};
  o.verity = mode;
  auto fs = Filesystem::open(image, o);
  EXPECT_TRUE(fs) << fs.error().message();
  return fs ? std::move(*fs) : nullptr;
}

class SpecialImage : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string img = testing::reference_image("special_v1.cfs");
    if (!std::filesystem::exists(img)) GTEST_SKIP() << "reference image missing: " << img;
    fs_ = open_fs(img, store_.path());
    ASSERT_TRUE(fs_);
  }
  Ino child(const std::string& name) {
    auto st = fs_->lookup(fs_->root(), name);
    EXPECT_TRUE(st) << name;
    return st ? st->st_ino : 0;
  }
  TempDir store_;
  std::unique_ptr<Filesystem> fs_;
};

TEST_F(SpecialImage, RootAttributesMatchKernel) {
  auto st = fs_->getattr(fs_->root());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_ino, 36u);
  EXPECT_EQ(st->st_mode, S_IFDIR | 0555u);
  EXPECT_EQ(st->st_size, 4096);
  EXPECT_EQ(st->st_blocks, 8);
  EXPECT_EQ(st->st_nlink, 2u);
  EXPECT_EQ(st->st_mtim.tv_sec, 1633950376);
}

TEST_F(SpecialImage, LookupGivesKernelInodeNumbersAndSizes) {
  struct Want {
    const char* name;
    Ino ino;
    off_t size;
    blkcnt_t blocks;
    mode_t type;
  } want[] = {
      {"blockdev", 235, 0, 0, S_IFBLK},         {"chardev", 253, 0, 0, S_IFCHR},
      {"escaped-xattr", 287, 0, 0, S_IFREG},    {"fifo", 307, 0, 0, S_IFIFO},
      {"inline", 309, 15, 8, S_IFREG},          {"inline-large1", 311, 4095, 8, S_IFREG},
      {"inline-large2", 312, 4096, 8, S_IFREG}, {"inline-large3", 313, 4097, 16, S_IFREG},
      {"whiteout", 316, 0, 0, S_IFREG},
  };
  for (const auto& w : want) {
    auto st = fs_->lookup(fs_->root(), w.name);
    ASSERT_TRUE(st) << w.name;
    EXPECT_EQ(st->st_ino, w.ino) << w.name;
    EXPECT_EQ(st->st_size, w.size) << w.name;
    EXPECT_EQ(st->st_blocks, w.blocks) << w.name;
    EXPECT_EQ(st->st_mode & S_IFMT, w.type) << w.name;
    EXPECT_EQ(st->st_mode & 07777, 0777u) << w.name;
  }
  auto blk = fs_->lookup(fs_->root(), "blockdev");
  EXPECT_EQ(major(blk->st_rdev), 420u);
  EXPECT_EQ(minor(blk->st_rdev), 170u);
  auto chr = fs_->lookup(fs_->root(), "chardev");
  EXPECT_EQ(major(chr->st_rdev), 42u);
  EXPECT_EQ(minor(chr->st_rdev), 17u);
  auto large3 = fs_->lookup(fs_->root(), "inline-large3");
  EXPECT_EQ(large3->st_mtim.tv_sec, 1665486376);
}

TEST_F(SpecialImage, RootStubsAreInvisible) {
  for (const char* stub : {"00", "7f", "ff", "c0"}) {
    auto st = fs_->lookup(fs_->root(), stub);
    ASSERT_FALSE(st) << stub;
    EXPECT_TRUE(st.error().is_errno(ENOENT));
  }
  std::vector<std::string> names;
  ASSERT_TRUE(fs_->readdir(fs_->root(), 0, [&](const DirItem& d) {
    names.emplace_back(d.name);
    return true;
  }));
  std::vector<std::string> want = {
      ".",       "..",     "blockdev",      "chardev",       "escaped-xattr",
      "fifo",    "inline", "inline-large1", "inline-large2", "inline-large3",
      "whiteout"};
  EXPECT_EQ(names, want);
}

TEST_F(SpecialImage, ReaddirResumesAtAnyCookie) {
  std::vector<std::pair<std::string, std::uint64_t>> all;
  ASSERT_TRUE(fs_->readdir(fs_->root(), 0, [&](const DirItem& d) {
    all.emplace_back(std::string(d.name), d.next_offset);
    return true;
  }));
  for (std::size_t k = 0; k < all.size(); ++k) {
    std::vector<std::string> rest;
    ASSERT_TRUE(fs_->readdir(fs_->root(), all[k].second, [&](const DirItem& d) {
      rest.emplace_back(d.name);
      return true;
    }));
    ASSERT_EQ(rest.size(), all.size() - k - 1);
    for (std::size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], all[k + 1 + i].first);
  }
}

TEST_F(SpecialImage, XattrsAsTheOverlayShowsThem) {
  auto names = fs_->listxattr(fs_->root());
  ASSERT_TRUE(names);
  std::set<std::string> got(names->begin(), names->end());
  std::set<std::string> want = {
      "trusted.foo1", "trusted.overlay.opaque", "trusted.overlay.whiteouts",
      "user.foo2",    "user.overlay.opaque",    "user.overlay.whiteouts"};
  EXPECT_EQ(got, want);
  EXPECT_EQ(*fs_->getxattr(fs_->root(), "trusted.overlay.opaque"), "x");
  EXPECT_EQ(*fs_->getxattr(fs_->root(), "user.foo2"), "bar-2");
  // The private opaque=y of the root is hidden, under either spelling.
  auto hidden = fs_->getxattr(fs_->root(), "trusted.overlay.overlay.opaque");
  ASSERT_FALSE(hidden);
  EXPECT_TRUE(hidden.error().is_errno(ENODATA));

  Ino esc = child("escaped-xattr");
  EXPECT_EQ(*fs_->getxattr(esc, "trusted.overlay.redirect"), "/foo\n");
  EXPECT_EQ(*fs_->getxattr(esc, "user.overlay.redirect"), "/foo\n");
  Ino wh = child("whiteout");
  auto wn = fs_->listxattr(wh);
  std::set<std::string> wgot(wn->begin(), wn->end());
  EXPECT_EQ(wgot, (std::set<std::string>{"trusted.foo", "trusted.overlay.whiteout",
                                         "user.overlay.whiteout"}));
}

TEST_F(SpecialImage, ReadsInlineAndBlockData) {
  ReadBuffer buf;
  auto f = fs_->open_file(child("inline"), O_RDONLY);
  ASSERT_TRUE(f);
  EXPECT_TRUE((*f)->cacheable());
  auto data = fs_->read(**f, 0, 100, buf);
  ASSERT_TRUE(data);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(data->data()), data->size()),
            "FOOBAR\nINAFILE\n");
  auto tail = fs_->read(**f, 7, 3, buf);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(tail->data()), tail->size()), "INA");
  EXPECT_EQ(fs_->read(**f, 15, 10, buf)->size(), 0u);

  auto big = fs_->open_file(child("inline-large3"), O_RDONLY);
  ASSERT_TRUE(big);
  std::string all;
  for (std::uint64_t off = 0;; off += 1000) {
    auto part = fs_->read(**big, off, 1000, buf);
    ASSERT_TRUE(part);
    if (part->empty()) break;
    all.append(reinterpret_cast<const char*>(part->data()), part->size());
  }
  EXPECT_EQ(all.size(), 4097u);
}

TEST_F(SpecialImage, OpenErrors) {
  auto err = [&](Ino ino, int flags) {
    auto f = fs_->open_file(ino, flags);
    return f ? 0 : errno_for(f.error());
  };
  EXPECT_EQ(err(fs_->root(), O_RDONLY), EISDIR);
  EXPECT_EQ(err(child("chardev"), O_RDONLY), EINVAL);
  EXPECT_EQ(err(child("inline"), O_WRONLY), EROFS);
  EXPECT_EQ(err(child("inline"), O_RDWR), EROFS);
  auto rl = fs_->readlink(child("inline"));
  ASSERT_FALSE(rl);
  EXPECT_EQ(errno_for(rl.error()), EINVAL);
  auto nd = fs_->lookup(child("inline"), "x");
  ASSERT_FALSE(nd);
  EXPECT_EQ(errno_for(nd.error()), ENOTDIR);
}

// cs9-x86_64-minimal: metacopy files with redirects and no digests (ostree payloads).
class MetacopyImage : public ::testing::Test {
 protected:
  void SetUp() override {
    img_ = testing::reference_image("cs9-x86_64-minimal.cfs");
    if (!std::filesystem::exists(img_)) GTEST_SKIP() << "reference image missing: " << img_;
  }
  Ino resolve(Filesystem& fs, const std::string& path) {
    Ino cur = fs.root();
    std::size_t pos = 1;
    while (pos < path.size()) {
      auto slash = path.find('/', pos);
      auto name = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      auto st = fs.lookup(cur, name);
      EXPECT_TRUE(st) << path;
      if (!st) return 0;
      cur = st->st_ino;
      if (slash == std::string::npos) break;
      pos = slash + 1;
    }
    return cur;
  }
  std::string img_;
  TempDir store_;
};

TEST_F(MetacopyImage, StatWorksWithoutObjectsOpenIsENOENT) {
  auto fs = open_fs(img_, store_.path(), VerityMode::kOff);
  ASSERT_TRUE(fs);
  Ino bash = resolve(*fs, "/usr/bin/bash");
  auto st = fs->getattr(bash);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_ino, 631u);
  EXPECT_EQ(st->st_size, 1390168);
  EXPECT_EQ(st->st_blocks, 2720);
  auto dir = fs->getattr(resolve(*fs, "/usr/bin"));
  EXPECT_EQ(dir->st_ino, 383u);
  EXPECT_EQ(dir->st_size, 9581);
  EXPECT_EQ(dir->st_blocks, 24);
  auto f = fs->open_file(bash, O_RDONLY);
  ASSERT_FALSE(f);
  EXPECT_EQ(errno_for(f.error()), ENOENT);
}

TEST_F(MetacopyImage, ObjectServedUnlessRequireDemandsADigest) {
  Ino bash;
  std::string redirect;
  {
    auto fs = open_fs(img_, store_.path(), VerityMode::kOff);
    bash = resolve(*fs, "/usr/bin/bash");
    // Find the redirect through the raw image (hidden from listxattr).
    auto xs = fs->image().xattrs(bash);
    ASSERT_TRUE(xs);
    for (const auto& x : *xs)
      if (x.name == "trusted.overlay.redirect") redirect = x.value;
  }
  ASSERT_FALSE(redirect.empty());
  std::string obj = store_.path() + redirect;
  std::filesystem::create_directories(std::filesystem::path(obj).parent_path());
  std::ofstream(obj, std::ios::binary) << "not really bash";
  for (auto mode : {VerityMode::kOff, VerityMode::kOn}) {
    auto fs = open_fs(img_, store_.path(), mode);
    auto f = fs->open_file(bash, O_RDONLY);
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_FALSE((*f)->verified());
    EXPECT_FALSE((*f)->cacheable());
    ReadBuffer buf;
    auto data = fs->read(**f, 0, 4096, buf);
    ASSERT_TRUE(data);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(data->data()), data->size()),
              "not really bash");
  }
  auto fs = open_fs(img_, store_.path(), VerityMode::kRequire);
  auto f = fs->open_file(bash, O_RDONLY);
  ASSERT_FALSE(f);
  EXPECT_EQ(errno_for(f.error()), EIO);
}

}  // namespace
}  // namespace cfs::vfs
