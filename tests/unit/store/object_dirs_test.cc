// SPDX-License-Identifier: Apache-2.0
// Redirects never leave the object directories: "..", symlinks (final or in the middle),
// directories and special files are refused like the kernel's data-layer lookup does
// (overlayfs.md §3 and §10: EXDEV for "..", ENOENT for a symlink or directory).
#include "cfs/store/object_dirs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "cfs/util/sys.h"
#include "unit/vfs/test_util.h"

namespace cfs::store {
namespace {

using vfs::testing::TempDir;

void write(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string read_all(int fd) { return *sys::read_fd(fd, "object"); }

class ObjectDirsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    write(a_ / "ab/one", "one-in-a");
    write(b_ / "ab/one", "one-in-b");
    write(b_ / "cd/two", "two-in-b");
    write(outside_ / "secret", "secret");
    std::filesystem::create_directories(a_ / "ef");
    std::filesystem::create_symlink(outside_ / "secret", a_ / "ef/link");
    std::filesystem::create_directory_symlink(outside_.path(), a_ / "dirlink");
    std::filesystem::create_directories(a_ / "gh/dir");
    ::mkfifo((a_ / "gh/fifo").c_str(), 0644);
    auto d = ObjectDirs::open({a_.path(), b_.path()});
    ASSERT_TRUE(d) << d.error().message();
    dirs_ = std::move(*d);
    dirs_.set_use_openat2(GetParam());
  }
  int err_of(const std::string& rel) {
    auto r = dirs_.open_object(rel);
    return r ? 0 : r.error().code().value();
  }
  TempDir a_, b_, outside_;
  ObjectDirs dirs_;
};

TEST_P(ObjectDirsTest, FirstDirectoryWins) {
  auto one = dirs_.open_object("ab/one");
  ASSERT_TRUE(one);
  EXPECT_EQ(read_all(one->get()), "one-in-a");
  auto two = dirs_.open_object("cd/two");
  ASSERT_TRUE(two);
  EXPECT_EQ(read_all(two->get()), "two-in-b");
}

TEST_P(ObjectDirsTest, RefusesEscapes) {
  EXPECT_EQ(err_of("missing/x"), ENOENT);
  EXPECT_EQ(err_of("ef/link"), ENOENT);         // final symlink
  EXPECT_EQ(err_of("dirlink/secret"), ENOENT);  // symlink in the middle
  EXPECT_EQ(err_of("gh/dir"), ENOENT);          // not a regular file
  EXPECT_EQ(err_of("gh/fifo"), ENOENT);
  EXPECT_EQ(err_of("../" + std::filesystem::path(outside_.path()).filename().string() + "/secret"),
            EXDEV);
  EXPECT_EQ(err_of("ab/../../x"), EXDEV);
  EXPECT_EQ(err_of(""), ENOENT);
}

// What stands at the path is named, so fsck and the FUSE log can say why.
TEST_P(ObjectDirsTest, SaysWhy) {
  auto msg = [&](const std::string& rel) {
    auto r = dirs_.open_object(rel);
    return r ? std::string() : r.error().message();
  };
  EXPECT_NE(msg("missing/x").find("missing"), std::string::npos) << msg("missing/x");
  EXPECT_NE(msg("ef/link").find("symlink"), std::string::npos) << msg("ef/link");
  EXPECT_NE(msg("dirlink/secret").find("a symlink on the path"), std::string::npos);
  EXPECT_NE(msg("gh/dir").find("not a regular file (a directory)"), std::string::npos)
      << msg("gh/dir");
  EXPECT_NE(msg("gh/fifo").find("not a regular file (a FIFO)"), std::string::npos)
      << msg("gh/fifo");
  EXPECT_NE(msg("ab/../../x").find("leaves the object directory"), std::string::npos);
}

TEST_P(ObjectDirsTest, BackingFollowsTheKernelOrder) {
  const std::string digest_value = std::string("\x00\x24\x00\x01", 4) + std::string(32, 'd');
  // No redirect, or a relative one: EIO (the lookup fails) before anything is opened.
  auto none = dirs_.open_backing(digest_value, std::nullopt, true);
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().is_errno(EIO));
  auto relative = dirs_.open_backing(digest_value, "ab/one", true);
  ASSERT_FALSE(relative);
  EXPECT_TRUE(relative.error().is_errno(EIO));
  // A value of 1..3 bytes fails at lookup, even with the object present.
  auto tiny = dirs_.open_backing(std::string("\x00\x24", 2), "/ab/one", false);
  ASSERT_FALSE(tiny);
  EXPECT_TRUE(tiny.error().is_errno(EIO));
  // A bad header only matters when decoded (verity on): the object is looked up first.
  const std::string bad_version = std::string("\x01\x24\x00\x01", 4) + std::string(32, 'd');
  auto undecoded = dirs_.open_backing(bad_version, "/ab/one", false);
  ASSERT_TRUE(undecoded) << undecoded.error().message();
  EXPECT_EQ(undecoded->object, "ab/one");
  EXPECT_EQ(undecoded->size, 8u);
  EXPECT_FALSE(undecoded->digest);
  auto decoded = dirs_.open_backing(bad_version, "/ab/one", true);
  ASSERT_FALSE(decoded);
  EXPECT_TRUE(decoded.error().is_errno(EIO));
  auto missing = dirs_.open_backing(bad_version, "/no/such", true);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is_errno(ENOENT));
  // An empty component is an invalid redirect for overlayfs (EINVAL), even if it resolves.
  auto invalid = dirs_.open_backing(digest_value, "//ab/one", true);
  ASSERT_FALSE(invalid);
  EXPECT_TRUE(invalid.error().is_errno(EINVAL)) << invalid.error().message();
  auto good = dirs_.open_backing(digest_value, "/ab/one", true);
  ASSERT_TRUE(good) << good.error().message();
  ASSERT_TRUE(good->digest);
  std::string want;
  for (int i = 0; i < 32; ++i) want += "64";  // 'd'
  EXPECT_EQ(good->digest->hex(), want);
  EXPECT_EQ(read_all(good->fd.get()), "one-in-a");
}

INSTANTIATE_TEST_SUITE_P(Resolver, ObjectDirsTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "openat2" : "fallback"; });

}  // namespace
}  // namespace cfs::store
