// SPDX-License-Identifier: Apache-2.0
// The fan-out index: "known absent" only for names that neither the directory (listed once)
// nor an earlier probe had; directories made 0755 when missing; everything else "may exist".
// Names on disk are written by the test itself (hex of the digest bytes), not by the store.
#include "cfs/store/fanout_dirs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "testutil/temp_dir.h"

namespace cfs::store {
namespace {

namespace fs = std::filesystem;

verity::Digest digest(std::uint8_t first, std::uint8_t fill, std::uint8_t last = 0) {
  auto d = verity::Digest::zero(verity::HashAlg::kSha256);
  d.bytes.fill(0);
  for (std::size_t i = 0; i < d.size; ++i) d.bytes[i] = fill;
  d.bytes[0] = first;
  d.bytes[d.size - 1] = last;
  return d;
}

// "ab" and the 62 hex digits after it, spelled here rather than by the store's codec.
std::pair<std::string, std::string> name_of(const verity::Digest& d) {
  std::string hex;
  char b[3];
  for (std::size_t i = 0; i < d.size; ++i) {
    std::snprintf(b, sizeof b, "%02x", d.bytes[i]);
    hex += b;
  }
  return {hex.substr(0, 2), hex.substr(2)};
}

class FanoutDirsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tmp_.ok());
    fs::create_directories(store_);
    fd_ = ::open(store_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override { ::close(fd_); }

  testutil::TempDir tmp_{"cfs-fanout-test-"};
  std::string store_ = tmp_.path() + "/store";
  int fd_ = -1;
};

TEST_F(FanoutDirsTest, NewDirectoryIsMadeAndEachDigestIsAbsentOnce) {
  ::umask(022);
  FanoutDirs dirs(fd_, "store");
  const auto d = digest(0xab, 0x11);
  auto p = dirs.probe(d);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_TRUE(p->known_absent);
  struct stat st;
  ASSERT_EQ(::stat((store_ + "/ab").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755U);
  // The descriptor is that directory.
  struct stat fst;
  ASSERT_EQ(::fstat(p->dirfd, &fst), 0);
  EXPECT_EQ(fst.st_ino, st.st_ino);
  // A second probe of the same digest (a duplicate, or another thread's) must look.
  auto again = dirs.probe(d);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->known_absent);
  EXPECT_EQ(again->dirfd, p->dirfd);
  // Another digest in the same directory is still absent.
  auto other = dirs.probe(digest(0xab, 0x22));
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->known_absent);
}

TEST_F(FanoutDirsTest, NamesInAnExistingDirectoryMayExist) {
  const auto present = digest(0x3c, 0x44);
  const auto absent = digest(0x3c, 0xcd);  // letters, so capitals differ
  auto [dir, name] = name_of(present);
  fs::create_directories(store_ + "/" + dir);
  std::ofstream(store_ + "/" + dir + "/" + name) << "whatever it holds";
  // Not object names: a temp file, and a name in capitals (object names are lowercase).
  std::ofstream(store_ + "/" + dir + "/.tmpXYZ") << "t";
  auto [adir, aname] = name_of(absent);
  std::string upper = aname;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::ofstream(store_ + "/" + dir + "/" + upper) << "u";

  FanoutDirs dirs(fd_, "store");
  auto p = dirs.probe(present);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_FALSE(p->known_absent);
  auto q = dirs.probe(absent);
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->known_absent);
}

// Only bytes 1-8 are kept: a digest sharing them with an earlier one (which an attacker could
// craft) is "may exist", never "absent" by mistake.
TEST_F(FanoutDirsTest, ASharedKeyMeansMayExist) {
  FanoutDirs dirs(fd_, "store");
  auto a = dirs.probe(digest(0x07, 0x99, 0x01));
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->known_absent);
  auto b = dirs.probe(digest(0x07, 0x99, 0x02));
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->known_absent);
  // The all-zero key is a key like any other.
  auto z = dirs.probe(digest(0x07, 0x00, 0x01));
  ASSERT_TRUE(z);
  EXPECT_TRUE(z->known_absent);
  auto z2 = dirs.probe(digest(0x07, 0x00, 0x02));
  ASSERT_TRUE(z2);
  EXPECT_FALSE(z2->known_absent);
}

// Many keys in one directory (the table grows): each is absent exactly once.
TEST_F(FanoutDirsTest, ManyDigestsInOneDirectory) {
  FanoutDirs dirs(fd_, "store");
  for (int round = 0; round < 2; ++round) {
    for (unsigned i = 0; i < 5000; ++i) {
      auto d = digest(0x42, 0);
      d.bytes[1] = static_cast<std::uint8_t>(i >> 8);
      d.bytes[8] = static_cast<std::uint8_t>(i);
      auto p = dirs.probe(d);
      ASSERT_TRUE(p);
      EXPECT_EQ(p->known_absent, round == 0) << i;
    }
  }
}

// dir() opens without listing: a name that appears before the first probe() is still seen.
TEST_F(FanoutDirsTest, DirOpensWithoutListing) {
  const auto d = digest(0x5e, 0xaa);
  auto [dir, name] = name_of(d);
  fs::create_directories(store_ + "/" + dir);
  FanoutDirs dirs(fd_, "store");
  auto fd = dirs.dir(d);
  ASSERT_TRUE(fd) << fd.error().message();
  std::ofstream(store_ + "/" + dir + "/" + name) << "added after dir()";
  auto p = dirs.probe(d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->dirfd, *fd);
  EXPECT_FALSE(p->known_absent);
}

// A large fan-out directory (a store of about a million objects) is not listed: nothing in it
// is known absent, so every add there looks its name up as before.
TEST_F(FanoutDirsTest, LargeDirectoriesAreNotListed) {
  fs::create_directories(store_ + "/9a");
  struct stat st {};
  for (int i = 0; i < 200000; ++i) {
    std::ofstream(store_ + "/9a/" + std::string(60, 'b') + std::to_string(i));
    if (i % 256 == 0) {
      ASSERT_EQ(::stat((store_ + "/9a").c_str(), &st), 0);
      if (st.st_size > 256 * 1024) break;
    }
  }
  ASSERT_GT(st.st_size, 256 * 1024);
  FanoutDirs dirs(fd_, "store");
  auto p = dirs.probe(digest(0x9a, 0x01));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_FALSE(p->known_absent);
  // A small one next to it still is.
  auto q = dirs.probe(digest(0x9b, 0x01));
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->known_absent);
}

TEST_F(FanoutDirsTest, UnwritableStoreFailsNamingIt) {
  if (::geteuid() == 0) GTEST_SKIP() << "root may write anywhere";
  ASSERT_EQ(::chmod(store_.c_str(), 0555), 0);
  FanoutDirs dirs(fd_, "object store " + store_);
  auto p = dirs.probe(digest(0x10, 0x01));
  ::chmod(store_.c_str(), 0755);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message().find(store_), std::string::npos) << p.error().message();
}

}  // namespace
}  // namespace cfs::store
