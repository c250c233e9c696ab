// SPDX-License-Identifier: Apache-2.0
// hash_leaves (verity/leaves_internal.h), the large-file reader: leaves read from a file in
// pieces on several threads equal the leaves hashed from the same bytes in memory (whose
// digests vectors_test.cc checks against fsverity-utils), at sizes around the read piece and
// the work unit, from an offset; a file that shrinks after its size was taken is an error
// naming the file, on every thread count.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "testutil/temp_dir.h"
#include "verity/leaves_internal.h"

namespace cfs::verity::detail {
namespace {

constexpr std::size_t kBlock = 4096;
constexpr std::size_t kPiece = 192 * 1024;  // leaves.cc's read piece
constexpr std::size_t kUnit = 8 * kPiece;   // and work unit

std::vector<std::uint8_t> file_leaves(const BlockHasher& h, const std::string& path,
                                      std::uint64_t offset, std::uint64_t len, unsigned threads) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  std::vector<std::uint8_t> out((len + kBlock - 1) / kBlock * h.digest_size());
  const Status st = hash_leaves(h, fd, offset, len, out.data(), threads, path);
  ::close(fd);
  EXPECT_TRUE(st) << st.error().message();
  return out;
}

TEST(Leaves, FileLeavesEqualMemoryLeavesAroundPiecesAndUnits) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string data = testutil::random_bytes(2 * kUnit + kPiece + 5, 3);
  const std::string path = dir.write("f", data);
  const BlockHasher h{Params{}};
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(data.data());
  const std::size_t sizes[] = {0,          1,     kBlock,         kPiece - 1, kPiece,
                               kPiece + 1, kUnit, kUnit + kBlock, 2 * kUnit,  data.size()};
  for (const std::size_t offset : {std::size_t{0}, kPiece}) {
    for (std::size_t len : sizes) {
      if (offset + len > data.size()) len = data.size() - offset;
      std::vector<std::uint8_t> want((len + kBlock - 1) / kBlock * h.digest_size());
      hash_leaves_mem(h, bytes + offset, len, want.data(), 1);
      for (const unsigned threads : {1u, 2u, 3u}) {
        SCOPED_TRACE("offset " + std::to_string(offset) + " len " + std::to_string(len) +
                     " threads " + std::to_string(threads));
        EXPECT_EQ(file_leaves(h, path, offset, len, threads), want);
      }
    }
  }
}

TEST(Leaves, FileThatShrankAfterItsSizeWasTakenIsAnErrorNamingIt) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::size_t size = 3 * kUnit + 100;
  const std::string path = dir.write("f", testutil::random_bytes(size, 4));
  const BlockHasher h{Params{}};
  // The size a caller took before the file was cut: to the middle of the second unit, to a
  // block boundary, and by one byte.
  for (const std::size_t cut : {kUnit + kPiece / 2, 2 * kUnit, size - 1}) {
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(cut)), 0);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::vector<std::uint8_t> out((size + kBlock - 1) / kBlock * h.digest_size());
    for (const unsigned threads : {1u, 2u}) {
      SCOPED_TRACE("cut " + std::to_string(cut) + " threads " + std::to_string(threads));
      const Status st = hash_leaves(h, fd, 0, size, out.data(), threads, path);
      ASSERT_FALSE(st);
      EXPECT_NE(st.error().message().find(path), std::string::npos) << st.error().message();
      EXPECT_NE(st.error().message().find("shrank"), std::string::npos) << st.error().message();
    }
    ::close(fd);
  }
}

}  // namespace
}  // namespace cfs::verity::detail
