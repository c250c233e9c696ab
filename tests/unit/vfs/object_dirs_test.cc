// SPDX-License-Identifier: Apache-2.0
// Redirects never leave the object directories: "..", symlinks (final or in the middle),
// directories and special files are refused like the kernel's data-layer lookup does
// (overlayfs.md §3 and §10: EXDEV for "..", ENOENT for a symlink or directory).
#include "cfs/vfs/object_dirs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "cfs/util/sys.h"
#include "test_util.h"

namespace cfs::vfs {
namespace {

using testing::TempDir;

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

INSTANTIATE_TEST_SUITE_P(Resolver, ObjectDirsTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "openat2" : "fallback"; });

}  // namespace
}  // namespace cfs::vfs
