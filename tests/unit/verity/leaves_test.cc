// SPDX-License-Identifier: Apache-2.0
// hash_leaves (verity/leaves_internal.h), the large-file reader: leaves read from a file in
// pieces on several threads equal the leaves hashed from the same bytes in memory (whose
// digests vectors_test.cc checks against fsverity-utils), at sizes around the read piece and
// the work unit, from an offset; a file that shrinks after its size was taken is an error
// naming the file, on every thread count. Each for both ways of reading: mapped windows hashed
// in place and pread; a truncation under a mapping (SIGBUS) is that same error, while a SIGBUS
// that is not from a window being hashed still reaches the handler before ours or kills.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <csignal>
#include <string>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CFS_TEST_SANITIZER_SIGBUS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CFS_TEST_SANITIZER_SIGBUS 1
#endif
#endif
#include <vector>

#include "testutil/temp_dir.h"
#include "verity/leaves_internal.h"

namespace cfs::verity::detail {
namespace {

constexpr std::size_t kBlock = 4096;
constexpr std::size_t kPiece = 192 * 1024;  // leaves.cc's read piece
constexpr std::size_t kUnit = 8 * kPiece;   // and work unit

constexpr ReadMode kModes[] = {ReadMode::kPread, ReadMode::kMap};
const char* mode_name(ReadMode m) { return m == ReadMode::kMap ? "map" : "pread"; }

// Forces a read mode for one scope.
struct ModeScope {
  explicit ModeScope(ReadMode m) { set_read_mode(m); }
  ~ModeScope() { set_read_mode(ReadMode::kAuto); }
  ModeScope(const ModeScope&) = delete;
  ModeScope& operator=(const ModeScope&) = delete;
};

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
      for (const ReadMode mode : kModes) {
        const ModeScope scope(mode);
        for (const unsigned threads : {1u, 2u, 3u}) {
          SCOPED_TRACE("offset " + std::to_string(offset) + " len " + std::to_string(len) +
                       " threads " + std::to_string(threads) + " " + mode_name(mode));
          EXPECT_EQ(file_leaves(h, path, offset, len, threads), want);
        }
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
    for (const ReadMode mode : kModes) {
      const ModeScope scope(mode);
      for (const unsigned threads : {1u, 2u}) {
        SCOPED_TRACE("cut " + std::to_string(cut) + " threads " + std::to_string(threads) + " " +
                     mode_name(mode));
        const Status st = hash_leaves(h, fd, 0, size, out.data(), threads, path);
        ASSERT_FALSE(st);
        EXPECT_NE(st.error().message().find(path), std::string::npos) << st.error().message();
        EXPECT_NE(st.error().message().find("shrank"), std::string::npos) << st.error().message();
      }
    }
    ::close(fd);
  }
}

TEST(Leaves, MappedRangeFromAnOffsetInsideAPage) {
  // 1 KiB blocks: a range may start inside a page, and the window is mapped from the page below.
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string data = testutil::random_bytes(3 * kUnit + 777, 5);
  const std::string path = dir.write("f", data);
  Params p;
  p.block_size = 1024;
  const BlockHasher h{p};
  const std::size_t offset = 3 * 1024;
  const std::size_t len = data.size() - offset;
  std::vector<std::uint8_t> want((len + 1023) / 1024 * h.digest_size());
  hash_leaves_mem(h, reinterpret_cast<const std::uint8_t*>(data.data()) + offset, len, want.data(),
                  1);
  const ModeScope scope(ReadMode::kMap);
  for (const unsigned threads : {1u, 2u}) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::vector<std::uint8_t> got(want.size());
    const Status st = hash_leaves(h, fd, offset, len, got.data(), threads, path);
    ::close(fd);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_EQ(got, want) << "threads " << threads;
  }
}

// A fault on a mapped page past EOF outside any hashing.
void touch_past_eof(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  void* m = ::mmap(nullptr, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) std::_Exit(3);
  static_cast<volatile const char*>(m)[4096];
}

TEST(LeavesDeathTest, SigbusOutsideAHashedWindowStillKills) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string big = dir.write("big", testutil::random_bytes(2 * kUnit, 6));
  const std::string small = dir.write("small", "x");
  const BlockHasher h{Params{}};
  if (h.engine() == Engine::kPortable) GTEST_SKIP() << "no mapped reads with the OpenSSL engine";
  {
    // Installs the SIGBUS handler.
    const ModeScope scope(ReadMode::kMap);
    std::vector<std::uint8_t> out(2 * kUnit / kBlock * h.digest_size());
    const int fd = ::open(big.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const Status st = hash_leaves(h, fd, 0, 2 * kUnit, out.data(), 1, big);
    ::close(fd);
    ASSERT_TRUE(st) << st.error().message();
  }
  // What would happen without our handler: the default action, or, under Address- and
  // ThreadSanitizer, their own SIGBUS handler (installed before ours), which reports and dies.
#ifdef CFS_TEST_SANITIZER_SIGBUS
  EXPECT_DEATH(touch_past_eof(small), "Sanitizer: BUS");
  EXPECT_DEATH(::kill(::getpid(), SIGBUS), "Sanitizer");
#else
  EXPECT_EXIT(touch_past_eof(small), ::testing::KilledBySignal(SIGBUS), "");
  EXPECT_EXIT(::kill(::getpid(), SIGBUS), ::testing::KilledBySignal(SIGBUS), "");
#endif
}

TEST(LeavesDeathTest, AHandlerInstalledBeforeStillGetsOtherFaults) {
  // In a fresh process (threadsafe style re-runs this test alone), so the handler installed
  // here comes before ours.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::size_t size = 2 * kUnit;
  const std::string big = dir.write("big", testutil::random_bytes(size, 7));
  const std::string small = dir.write("small", "x");
  const BlockHasher h{Params{}};
  if (h.engine() == Engine::kPortable) GTEST_SKIP() << "no mapped reads with the OpenSSL engine";
  const auto child = [&] {
    struct sigaction sa {};
    sa.sa_handler = [](int) { std::_Exit(42); };
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);
    const ModeScope scope(ReadMode::kMap);
    std::vector<std::uint8_t> out(2 * size / kBlock * h.digest_size());
    const int fd = ::open(big.c_str(), O_RDONLY | O_CLOEXEC);
    // Twice the file's size: the second half faults in our window, which is an error.
    const Status st = hash_leaves(h, fd, 0, 2 * size, out.data(), 2, big);
    if (st || st.error().message().find("shrank") == std::string::npos) std::_Exit(4);
    touch_past_eof(small);  // not ours: to the handler above
    std::_Exit(5);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(42), "");
}

}  // namespace
}  // namespace cfs::verity::detail
