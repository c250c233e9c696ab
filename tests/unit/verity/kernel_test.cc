// SPDX-License-Identifier: Apache-2.0
// The kernel interface on files whose filesystem has no fs-verity: tmpfs never has it (on any
// kernel), so these tests are deterministic everywhere; they check the error users will see.
#include "cfs/verity/kernel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "cfs/verity/measure.h"

namespace cfs::verity {
namespace {

class TmpfsFile : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs sfs {};
    if (statfs("/dev/shm", &sfs) != 0 || sfs.f_type != TMPFS_MAGIC)
      GTEST_SKIP() << "/dev/shm is not a tmpfs";
    char name[] = "/dev/shm/cfs-kernel-XXXXXX";
    fd_ = mkstemp(name);
    ASSERT_GE(fd_, 0);
    path_ = name;
    ASSERT_EQ(write(fd_, "hello", 5), 5);
    close(fd_);
    fd_ = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
  }
  static void expect_unsupported(const Error& e) {
    EXPECT_TRUE(e.is(Errc::kUnsupportedFeature)) << e.message();
    EXPECT_NE(e.message().find("fs-verity not supported by this kernel/filesystem"),
              std::string::npos)
        << e.message();
    EXPECT_TRUE(is_verity_unavailable(e));
  }
  int fd_ = -1;
  std::string path_;
};

TEST_F(TmpfsFile, MeasureReportsUnsupported) {
  auto r = measure_verity(fd_, path_);
  ASSERT_FALSE(r);
  expect_unsupported(r.error());
  EXPECT_NE(r.error().message().find(path_), std::string::npos);
}

TEST_F(TmpfsFile, MeasureOrComputeFallsBackToUserspace) {
  // `fsverity digest --compact --hash-alg=ALG` of a file holding "hello" (4 KiB blocks).
  const std::pair<HashAlg, std::string> want[] = {
      {HashAlg::kSha256, "555b589c26ee43b7a2510e6c67ced9fb3190b6da6e9e683984551f5d77a763de"},
      {HashAlg::kSha512,
       "f40c9f595539791d80fdff8f46b9fd3f61d9b5aa12c4c366c296c455f342b7ba5d1f03ffa8290b2f159f44a97e"
       "182ddaf305d97ce86e3713cdf5508da1cef244"}};
  for (const auto& [alg, hex] : want) {
    Params p;
    p.alg = alg;
    auto m = measure_or_compute(fd_, p, path_);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_FALSE(m->from_kernel);
    EXPECT_EQ(m->digest.alg, alg);
    EXPECT_EQ(m->digest.hex(), hex);
  }
}

TEST_F(TmpfsFile, EnableReportsUnsupported) {
  auto r = enable_verity(fd_, Params{}, path_);
  ASSERT_FALSE(r);
  expect_unsupported(r.error());
}

TEST_F(TmpfsFile, ReadMetadataReportsUnsupported) {
  auto t = read_verity_merkle_tree(fd_, path_);
  ASSERT_FALSE(t);
  expect_unsupported(t.error());
  auto d = read_verity_descriptor(fd_, path_);
  ASSERT_FALSE(d);
  expect_unsupported(d.error());
}

TEST_F(TmpfsFile, EnableRejectsParamsTheKernelCannotUse) {
  Params p;
  p.block_size = 512;  // fine for userspace digests, not for the kernel
  auto r = enable_verity(fd_, p, path_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("block size 512"), std::string::npos) << r.error().message();
}

TEST(Kernel, BadFdIsAnErrnoError) {
  auto r = measure_verity(-1, "nothing");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is_errno(EBADF)) << r.error().message();
  EXPECT_FALSE(is_verity_unavailable(r.error()));
}

}  // namespace
}  // namespace cfs::verity
