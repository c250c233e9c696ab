// SPDX-License-Identifier: Apache-2.0
// read_mountinfo: the fields of proc_pid_mountinfo(5) lines, and lines whose numbers do not fit
// (a mount ID past 2^64 - 1, a device number past 32 bits) skipped rather than wrapped into
// another mount's. Oracle: the hand-written lines (their values written out in decimal).
#include "cfs/util/sys_link.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/sysmacros.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace cfs {
namespace {

class MountInfoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cfs-mountinfo-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<sys::MountInfo> parse(const std::string& text) {
    const std::string path = dir_ + "/mountinfo";
    std::ofstream(path) << text;
    auto r = sys::read_mountinfo(path);
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : std::vector<sys::MountInfo>{};
  }

  std::string dir_;
};

TEST_F(MountInfoTest, ReadsTheFieldsOfEachLine) {
  auto m = parse(
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "40 22 0:52 / /mnt/a\\040b rw - fuse.composefs /srv/repo/objects/ab/cd rw\n");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].mount_id, 22u);
  EXPECT_EQ(m[0].dev, makedev(8, 1));
  EXPECT_EQ(m[0].mount_point, "/");
  EXPECT_EQ(m[0].fstype, "ext4");
  EXPECT_EQ(m[0].source, "/dev/sda1");
  EXPECT_EQ(m[1].mount_id, 40u);
  EXPECT_EQ(m[1].dev, makedev(0, 52));
  EXPECT_EQ(m[1].mount_point, "/mnt/a b");
  EXPECT_EQ(m[1].fstype, "fuse.composefs");
}

TEST_F(MountInfoTest, NumbersThatDoNotFitAreRefusedNotWrapped) {
  auto m = parse(
      // 2^64 - 1: the largest mount ID there can be.
      "18446744073709551615 1 8:1 / /max rw - ext4 /dev/a rw\n"
      // 2^64 and 10^20 - 1: 20 digits, past it (wrapped: 0 and 7766279631452241919).
      "18446744073709551616 1 8:1 / /wraps-to-0 rw - ext4 /dev/a rw\n"
      "99999999999999999999 1 8:1 / /wraps rw - ext4 /dev/a rw\n"
      // 21 digits.
      "100000000000000000000 1 8:1 / /long rw - ext4 /dev/a rw\n"
      // A major or minor past 32 bits (makedev would drop the high bits: 8:1 again).
      "50 1 4294967304:1 / /major rw - ext4 /dev/a rw\n"
      "51 1 8:4294967297 / /minor rw - ext4 /dev/a rw\n"
      "52 1 4294967295:4294967295 / /dev-max rw - ext4 /dev/a rw\n");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].mount_point, "/max");
  EXPECT_EQ(m[0].mount_id, UINT64_MAX);
  EXPECT_EQ(m[1].mount_point, "/dev-max");
  EXPECT_EQ(m[1].dev, makedev(4294967295u, 4294967295u));
}

}  // namespace
}  // namespace cfs
