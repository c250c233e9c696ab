// SPDX-License-Identifier: Apache-2.0
// Mode <-> file type. The numbers are the kernel's fs_ftype values (FT_REG_FILE = 1 ...
// FT_SYMLINK = 7, include/linux/fs_types.h), which EROFS stores in dirents (EROFS_FT_*).
#include "cfs/overlay/file_type.h"

#include <gtest/gtest.h>

namespace cfs::overlay {
namespace {

TEST(FileType, KernelNumbersBothWays) {
  const struct {
    std::uint32_t mode;
    int number;
  } table[] = {{S_IFREG, 1}, {S_IFDIR, 2},  {S_IFCHR, 3}, {S_IFBLK, 4},
               {S_IFIFO, 5}, {S_IFSOCK, 6}, {S_IFLNK, 7}};
  for (const auto& row : table) {
    EXPECT_EQ(static_cast<int>(file_type(row.mode | 0755)), row.number);
    EXPECT_EQ(mode_type(static_cast<FileType>(row.number)), row.mode);
    EXPECT_TRUE(is_known_type(row.mode));
  }
  EXPECT_EQ(file_type(0), FileType::kUnknown);
  EXPECT_EQ(file_type(0170000), FileType::kUnknown);
  EXPECT_FALSE(is_known_type(0));
  EXPECT_EQ(mode_type(FileType::kUnknown), 0u);
  EXPECT_EQ(mode_type(static_cast<FileType>(9)), 0u);  // out of range (hostile dirent)
}

}  // namespace
}  // namespace cfs::overlay
