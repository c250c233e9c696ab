// SPDX-License-Identifier: Apache-2.0
// MappedFile as a source of writes: what the object store relies on when it writes an object
// straight from a mapping of its source (src/store/object_store.cc) — a source truncated under
// the mapping makes the write fail with EFAULT (the kernel's access to the missing pages),
// buffered or O_DIRECT, and never raises SIGBUS in the writer.
#include "cfs/util/mapped_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "testutil/temp_dir.h"

namespace cfs {
namespace {

constexpr std::size_t kPage = 4096;

TEST(MappedFile, BytesAreTheFile) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string data = testutil::random_bytes(3 * kPage + 5, 1);
  auto m = MappedFile::open(dir.write("f", data));
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->size(), data.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->bytes().data()), m->size()), data);
}

TEST(MappedFile, ARangeIsThoseBytesAndNeedsAPageAlignedOffset) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string data = testutil::random_bytes(3 * kPage + 5, 3);
  const std::string path = dir.write("f", data);
  auto fd = sys::open(path, O_RDONLY);
  ASSERT_TRUE(fd) << fd.error().message();
  auto m = MappedFile::map_range(fd->get(), 2 * kPage, kPage + 5, path);
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->size(), kPage + 5);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->bytes().data()), m->size()),
            data.substr(2 * kPage));
  auto bad = MappedFile::map_range(fd->get(), kPage / 2, kPage, path);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find(path), std::string::npos);
}

TEST(MappedFile, WritingFromATruncatedMappingFailsWithEfault) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string src = dir.write("src", testutil::random_bytes(4 * kPage, 2));
  auto m = MappedFile::open(src);
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(::truncate(src.c_str(), static_cast<off_t>(kPage)), 0);
  for (const bool direct : {false, true}) {
    SCOPED_TRACE(direct ? "O_DIRECT" : "buffered");
    const std::string dst = dir / (direct ? "direct" : "buffered");
    const int fd =
        ::open(dst.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600);
    if (fd < 0 && direct) GTEST_SKIP() << "no O_DIRECT here";
    ASSERT_GE(fd, 0);
    // The first page is still there; pages 2-4 are past the new end.
    const Status ok = sys::pwrite_all(fd, m->bytes().first(kPage), 0);
    if (!ok && direct && ok.error().is_errno(EINVAL)) {
      ::close(fd);
      GTEST_SKIP() << "O_DIRECT refused here";
    }
    ASSERT_TRUE(ok) << ok.error().message();
    const Status st = sys::pwrite_all(fd, m->bytes().subspan(kPage, 2 * kPage), kPage);
    ::close(fd);
    ASSERT_FALSE(st);
    EXPECT_TRUE(st.error().is_errno(EFAULT)) << st.error().message();
  }
}

}  // namespace
}  // namespace cfs
