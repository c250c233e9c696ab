// SPDX-License-Identifier: Apache-2.0
// Damaged images: random byte flips of a reference image, walked through every operation the
// mount offers. Each call must return a value or an error (EIO for damaged pieces); nothing may
// crash, hang or read out of bounds (the ASan/UBSan CI run executes this too).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "cfs/util/sys.h"
#include "cfs/vfs/filesystem.h"
#include "test_util.h"

namespace cfs::vfs {
namespace {

// Visits every reachable inode once (nids may form loops in a damaged image).
void walk(const Filesystem& fs, Ino dir, std::set<Ino>& seen, int& errors) {
  if (!seen.insert(dir).second || seen.size() > 5000) return;
  ReadBuffer buf;
  std::vector<std::pair<std::string, Ino>> kids;
  auto st = fs.readdir(dir, 0, [&](const DirItem& d) {
    if (d.name != "." && d.name != "..") kids.emplace_back(std::string(d.name), d.ino);
    return kids.size() < 2000;
  });
  if (!st) ++errors;
  for (const auto& [name, ino] : kids) {
    auto a = fs.lookup(dir, name);
    if (!a) {
      ++errors;
      if (errno_for(a.error()) == 0) ADD_FAILURE() << "error without errno";
      continue;
    }
    (void)fs.getattr(ino);
    if (auto names = fs.listxattr(a->st_ino))
      for (const auto& n : *names) (void)fs.getxattr(a->st_ino, n);
    if (S_ISLNK(a->st_mode)) (void)fs.readlink(a->st_ino);
    if (S_ISREG(a->st_mode)) {
      if (auto f = fs.open_file(a->st_ino, O_RDONLY)) {
        (void)fs.read(**f, 0, 8192, buf);
        (void)fs.read(**f, 1u << 20, 8192, buf);
      }
    }
    if (S_ISDIR(a->st_mode)) walk(fs, a->st_ino, seen, errors);
  }
}

TEST(CorruptImage, RandomFlipsNeverCrash) {
  std::string path = testing::reference_image("special_v1.cfs");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "reference image missing";
  auto data = sys::read_file(path);
  ASSERT_TRUE(data);
  testing::TempDir store;
  std::mt19937 rng(20261127);
  int opened = 0, errors = 0;
  for (int round = 0; round < 400; ++round) {
    std::vector<std::byte> bytes(data->size());
    std::memcpy(bytes.data(), data->data(), data->size());
    // Damage the metadata region (superblock, inodes, xattrs, directory blocks).
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i) {
      std::size_t off = 1024 + rng() % (bytes.size() - 1024);
      bytes[off] ^= static_cast<std::byte>(1u << (rng() % 8));
    }
    auto image = erofs::Image::from_bytes(std::move(bytes));
    if (!image) continue;
    Options o;
    o.basedirs = {store.path()};
    auto fs = Filesystem::open(std::move(*image), o);
    if (!fs) continue;
    ++opened;
    std::set<Ino> seen;
    walk(**fs, (*fs)->root(), seen, errors);
  }
  EXPECT_GT(opened, 100);
  EXPECT_GT(errors, 0);  // the damage was noticed somewhere
}

}  // namespace
}  // namespace cfs::vfs
