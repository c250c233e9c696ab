// SPDX-License-Identifier: Apache-2.0
// The fd-relative wrappers of the sys layer: each call acts on the entry named relative to a
// directory fd, never follows a final symlink where the name says so, and reports errors with
// the errno and the path. Oracles are the plain libc calls on absolute paths.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"

namespace cfs {
namespace {

// The value of a find_xattr_at answer ("<error>" for an error).
std::optional<std::string> value_of(const Result<std::optional<std::string>>& r) {
  return r ? *r : std::optional<std::string>("<error " + r.error().message() + ">");
}

class SysAtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cfs-sys-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    auto fd = sys::open(root_, O_PATH | O_DIRECTORY);
    ASSERT_TRUE(fd) << fd.error().message();
    dir_ = std::move(*fd);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  std::string abs(const std::string& rel) const { return root_ + "/" + rel; }
  void write(const std::string& rel, const std::string& data) {
    std::ofstream(abs(rel), std::ios::binary) << data;
  }
  static struct stat lstat_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st;
  }

  std::string root_;
  UniqueFd dir_;
};

TEST_F(SysAtTest, StatIfExistsTellsAbsentFromErrors) {
  write("f", "x");
  auto st = sys::fstatat_if_exists(dir_.get(), "f", AT_SYMLINK_NOFOLLOW);
  ASSERT_TRUE(st);
  ASSERT_TRUE(*st);
  EXPECT_EQ((*st)->st_size, 1);
  auto missing = sys::fstatat_if_exists(dir_.get(), "nope", AT_SYMLINK_NOFOLLOW);
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);
  auto under_file = sys::fstatat_if_exists(dir_.get(), "f/x", AT_SYMLINK_NOFOLLOW);
  ASSERT_TRUE(under_file);
  EXPECT_FALSE(*under_file);
  auto bad = sys::fstatat_if_exists(-1, "f", 0);  // not a directory fd: a real error
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is_errno(EBADF));
}

TEST_F(SysAtTest, CreatesEntriesRelativeToTheDirectory) {
  ASSERT_TRUE(sys::mkdirat(dir_.get(), "d", 0750));
  EXPECT_EQ(lstat_of(abs("d")).st_mode, S_IFDIR | 0750u);
  auto again = sys::mkdirat(dir_.get(), "d", 0750);
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is_errno(EEXIST));
  EXPECT_NE(again.error().message().find("mkdir d"), std::string::npos);

  ASSERT_TRUE(sys::mknodat(dir_.get(), "d/fifo", S_IFIFO | 0600, 0));
  EXPECT_TRUE(S_ISFIFO(lstat_of(abs("d/fifo")).st_mode));
  ASSERT_TRUE(sys::symlinkat("../target", dir_.get(), "d/l"));
  char buf[64];
  ssize_t n = ::readlink(abs("d/l").c_str(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "../target");
  EXPECT_EQ(sys::readlinkat(dir_.get(), "d/l"), "../target");

  write("f", "data");
  ASSERT_TRUE(sys::linkat(dir_.get(), "f", dir_.get(), "d/hard"));
  EXPECT_EQ(lstat_of(abs("f")).st_nlink, 2u);
  EXPECT_EQ(lstat_of(abs("d/hard")).st_ino, lstat_of(abs("f")).st_ino);
  auto exists = sys::linkat(dir_.get(), "f", dir_.get(), "d/hard");
  ASSERT_FALSE(exists);
  EXPECT_TRUE(exists.error().is_errno(EEXIST));
}

TEST_F(SysAtTest, OwnerModeAndTimes) {
  write("f", "data");
  ASSERT_TRUE(sys::symlinkat("f", dir_.get(), "l"));
  ASSERT_TRUE(sys::fchmodat(dir_.get(), "f", 0604));
  EXPECT_EQ(lstat_of(abs("f")).st_mode & 07777, 0604u);
  const struct timespec ts[2] = {{1000, 5}, {2000, 7}};
  ASSERT_TRUE(sys::utimensat(dir_.get(), "l", ts, AT_SYMLINK_NOFOLLOW));
  EXPECT_EQ(lstat_of(abs("l")).st_mtim.tv_sec, 2000);
  EXPECT_EQ(lstat_of(abs("l")).st_mtim.tv_nsec, 7);
  EXPECT_NE(lstat_of(abs("f")).st_mtim.tv_sec, 2000);  // the link itself, not its target
  const struct timespec omit_atime[2] = {{0, UTIME_OMIT}, {3000, 0}};
  ASSERT_TRUE(sys::utimensat(dir_.get(), "f", omit_atime, 0));
  EXPECT_EQ(lstat_of(abs("f")).st_mtim.tv_sec, 3000);
  if (::geteuid() == 0) {
    ASSERT_TRUE(sys::fchownat(dir_.get(), "l", 12, 34, AT_SYMLINK_NOFOLLOW));
    EXPECT_EQ(lstat_of(abs("l")).st_uid, 12u);
    EXPECT_EQ(lstat_of(abs("l")).st_gid, 34u);
    EXPECT_EQ(lstat_of(abs("f")).st_uid, 0u);
    ASSERT_TRUE(sys::fchownat(dir_.get(), "f", static_cast<uid_t>(-1), 56, 0));
    EXPECT_EQ(lstat_of(abs("f")).st_uid, 0u);
    EXPECT_EQ(lstat_of(abs("f")).st_gid, 56u);
  }
  auto missing = sys::fchmodat(dir_.get(), "nope", 0600);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is_errno(ENOENT));
}

TEST_F(SysAtTest, TruncateAndStatfs) {
  write("f", "0123456789");
  auto fd = sys::openat(dir_.get(), "f", O_WRONLY);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(sys::ftruncate(fd->get(), 3, "f"));
  EXPECT_EQ(lstat_of(abs("f")).st_size, 3);
  ASSERT_TRUE(sys::ftruncate(fd->get(), 1 << 20, "f"));
  EXPECT_EQ(lstat_of(abs("f")).st_size, 1 << 20);
  auto sv = sys::fstatvfs(dir_.get(), "root");  // works on an O_PATH fd
  ASSERT_TRUE(sv) << sv.error().message();
  struct statvfs want {};
  ASSERT_EQ(::statvfs(root_.c_str(), &want), 0);
  EXPECT_EQ(sv->f_fsid, want.f_fsid);
  EXPECT_EQ(sv->f_bsize, want.f_bsize);
}

// Xattrs of a symlink are its own: the /proc/self/fd route must not read or change the
// target's (the bug a l*xattr call on the magic link would have: it sees the link in /proc).
TEST_F(SysAtTest, XattrsOfASymlinkAreItsOwn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (trusted.* xattrs on symlinks)";
  write("f", "data");
  ASSERT_EQ(::setxattr(abs("f").c_str(), "trusted.target", "t", 1, 0), 0);
  ASSERT_TRUE(sys::symlinkat("f", dir_.get(), "l"));
  ASSERT_TRUE(sys::set_xattr_at(dir_.get(), "l", "trusted.mine", "v1", 0, "l"));
  char buf[16];
  ssize_t n = ::lgetxattr(abs("l").c_str(), "trusted.mine", buf, sizeof buf);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "v1");
  EXPECT_LT(::getxattr(abs("f").c_str(), "trusted.mine", buf, sizeof buf), 0);

  EXPECT_EQ(value_of(sys::find_xattr_at(dir_.get(), "l", "trusted.mine", "l")),
            std::optional<std::string>("v1"));
  EXPECT_EQ(value_of(sys::find_xattr_at(dir_.get(), "l", "trusted.target", "l")),
            std::optional<std::string>());
  EXPECT_EQ(sys::list_xattrs_at(dir_.get(), "l", "l"), std::vector<std::string>{"trusted.mine"});
  // The O_PATH fallback used where the *xattrat syscalls are missing.
  auto fd = sys::openat(dir_.get(), "l", O_PATH | O_NOFOLLOW);
  ASSERT_TRUE(fd);
  EXPECT_EQ(sys::list_xattrs(fd->get(), "l"), std::vector<std::string>{"trusted.mine"});
  EXPECT_EQ(sys::get_xattr(fd->get(), "trusted.mine", "l"), "v1");

  auto create = sys::set_xattr_at(dir_.get(), "l", "trusted.mine", "v2", XATTR_CREATE, "l");
  ASSERT_FALSE(create);
  EXPECT_TRUE(create.error().is_errno(EEXIST));
  ASSERT_TRUE(sys::set_xattr_at(dir_.get(), "l", "trusted.mine", std::string_view("a\0b", 3),
                                XATTR_REPLACE, "l"));
  EXPECT_EQ(sys::get_xattr_at(dir_.get(), "l", "trusted.mine", "l"), std::string("a\0b", 3));
  ASSERT_TRUE(sys::remove_xattr_at(dir_.get(), "l", "trusted.mine", "l"));
  EXPECT_TRUE(sys::list_xattrs_at(dir_.get(), "l", "l")->empty());
  auto gone = sys::remove_xattr_at(dir_.get(), "l", "trusted.mine", "l");
  ASSERT_FALSE(gone);
  EXPECT_TRUE(gone.error().is_errno(ENODATA));
  auto missing = sys::find_xattr_at(dir_.get(), "nope", "trusted.mine", "nope");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is_errno(ENOENT));
}

// Kernels before 6.13 have no getxattrat/listxattrat: the fallback must give the same answers
// (it used to call llistxattr on /proc/self/fd/N, which lists the magic link's own, empty set).
TEST_F(SysAtTest, XattrFallbackWithoutXattrat) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (trusted.* xattrs on symlinks)";
  sys::disable_xattrat_for_testing();
  write("f", "data");
  ASSERT_EQ(::setxattr(abs("f").c_str(), "user.k", "file", 4, 0), 0);
  ASSERT_TRUE(sys::symlinkat("f", dir_.get(), "l"));
  ASSERT_EQ(::lsetxattr(abs("l").c_str(), "trusted.k", "link", 4, 0), 0);
  EXPECT_EQ(sys::list_xattrs_at(dir_.get(), "f", "f"), std::vector<std::string>{"user.k"});
  EXPECT_EQ(sys::get_xattr_at(dir_.get(), "f", "user.k", "f"), "file");
  EXPECT_EQ(sys::list_xattrs_at(dir_.get(), "l", "l"), std::vector<std::string>{"trusted.k"});
  EXPECT_EQ(sys::get_xattr_at(dir_.get(), "l", "trusted.k", "l"), "link");
  EXPECT_EQ(value_of(sys::find_xattr_at(dir_.get(), "l", "user.k", "l")),
            std::optional<std::string>());
}

TEST_F(SysAtTest, ReadDirNamesDoesNotFollowSymlinks) {
  ASSERT_TRUE(sys::mkdirat(dir_.get(), "d", 0755));
  std::set<std::string> want;
  for (int i = 0; i < 3000; ++i) {  // more than one getdents buffer
    std::string name = "entry-with-a-long-name-" + std::to_string(i);
    write("d/" + name, "");
    want.insert(name);
  }
  auto names = sys::read_dir_names(dir_.get(), "d");
  ASSERT_TRUE(names) << names.error().message();
  EXPECT_EQ(std::set<std::string>(names->begin(), names->end()), want);
  EXPECT_EQ(names->size(), want.size());
  ASSERT_TRUE(sys::symlinkat("d", dir_.get(), "l"));
  auto via_link = sys::read_dir_names(dir_.get(), "l");
  ASSERT_FALSE(via_link);
  EXPECT_TRUE(via_link.error().is_errno(ELOOP) || via_link.error().is_errno(ENOTDIR));
}

TEST_F(SysAtTest, RemoveTreeStaysInsideTheTree) {
  std::filesystem::create_directories(abs("outside/keep"));
  write("outside/keep/file", "keep");
  std::filesystem::create_directories(abs("t/a/b/c"));
  write("t/a/b/c/f", "x");
  write("t/a/g", "y");
  ASSERT_EQ(::mkfifo(abs("t/a/fifo").c_str(), 0600), 0);
  ASSERT_EQ(::symlink(abs("outside/keep").c_str(), abs("t/a/b/link").c_str()), 0);
  ASSERT_TRUE(sys::remove_tree_at(dir_.get(), "t"));
  EXPECT_FALSE(std::filesystem::exists(abs("t")));
  EXPECT_TRUE(std::filesystem::exists(abs("outside/keep/file")));
  EXPECT_TRUE(sys::remove_tree_at(dir_.get(), "t"));  // absent: fine
  write("plain", "z");
  ASSERT_TRUE(sys::remove_tree_at(dir_.get(), "plain"));
  EXPECT_FALSE(std::filesystem::exists(abs("plain")));
}

}  // namespace
}  // namespace cfs
