// SPDX-License-Identifier: Apache-2.0
// Object store: layout, publish protocol (no temp files left, 0644, never rewritten), dedupe
// and parallel adds, path validation.
#include "cfs/store/object_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cfs/tree/object_name.h"
#include "cfs/verity/digest.h"
#include "testutil/temp_dir.h"

namespace cfs::store {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tmp_.ok());
    fs::create_directories(dir_ + "/src");
  }

  ObjectSource add_src(const std::string& name, const std::string& data) {
    std::ofstream(dir_ + "/src/" + name, std::ios::binary) << data;
    auto d = verity::digest_file(dir_ + "/src/" + name);
    EXPECT_TRUE(d);
    ObjectSource s;
    s.digest = *d;
    s.path = name;
    s.size = data.size();
    return s;
  }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::vector<std::string> temp_files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_ + "/store"))
      if (e.path().filename().string().starts_with(".tmp")) out.push_back(e.path());
    return out;
  }

  testutil::TempDir tmp_{"cfs-store-test-"};
  const std::string& dir_ = tmp_.path();
};

TEST_F(StoreTest, ObjectsAre0644UnderARestrictiveUmask) {
  // The store reads the umask when it is opened: open under umask 077, add, restore.
  const mode_t saved = ::umask(077);
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store) << store.error().message();
  const std::string data(5000, 'm');
  auto src = add_src("m", data);
  auto r = store->add_object_bytes(src.digest, std::as_bytes(std::span(data)));
  ::umask(saved);
  ASSERT_TRUE(r) << r.error().message();
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/store/" + tree::object_path(src.digest)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
}

TEST_F(StoreTest, AddsUnderDigestPathWithMode0644) {
  auto store = ObjectStore::open(dir_ + "/store/nested");  // parents created
  ASSERT_TRUE(store) << store.error().message();
  auto src = add_src("a", std::string(100000, 'a'));
  int fd = ::open((dir_ + "/src/a").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  StoreCounters c;
  auto r = store->add_object(src.digest, fd, "a", &c);
  ::close(fd);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, AddOutcome::kAdded);
  std::string obj = dir_ + "/store/nested/" + tree::object_path(src.digest);
  EXPECT_EQ(slurp(obj), std::string(100000, 'a'));
  struct stat st;
  ASSERT_EQ(::stat(obj.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  struct stat dst;
  ASSERT_EQ(
      ::stat((dir_ + "/store/nested/" + tree::object_path(src.digest).substr(0, 2)).c_str(), &dst),
      0);
  EXPECT_TRUE(S_ISDIR(dst.st_mode));
  EXPECT_TRUE(store->has_object(src.digest));
  EXPECT_EQ(c.added.load(), 1U);
  EXPECT_EQ(c.bytes_added.load(), 100000U);
}

TEST_F(StoreTest, ExistingObjectsAreNeverRewritten) {
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  auto src = add_src("a", std::string(5000, 'b'));
  std::string obj = dir_ + "/store/" + tree::object_path(src.digest);
  fs::create_directories(fs::path(obj).parent_path());
  // Of the content's size, so the cheap check cannot tell (no fs-verity on the test's fs).
  std::ofstream(obj) << std::string(5000, 's');
  struct stat before;
  ASSERT_EQ(::stat(obj.c_str(), &before), 0);
  StoreCounters c;
  std::vector<ObjectSource> srcs{src};
  int sfd = ::open((dir_ + "/src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_TRUE(store->add_objects(srcs, sfd, dir_ + "/src", 2, &c));
  ::close(sfd);
  struct stat after;
  ASSERT_EQ(::stat(obj.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(slurp(obj), std::string(5000, 's'));
  EXPECT_EQ(c.existed.load(), 1U);
  EXPECT_EQ(c.added.load(), 0U);
  EXPECT_TRUE(temp_files().empty());
}

// What a crash can leave under the final name (a short file, or something that is not a file)
// is replaced by the next add, by a rename; with set_verify_existing() so is wrong content of
// the right size.
TEST_F(StoreTest, DamagedExistingObjectsAreReplaced) {
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  auto src = add_src("a", std::string(5000, 'b'));
  std::string obj = dir_ + "/store/" + tree::object_path(src.digest);
  fs::create_directories(fs::path(obj).parent_path());
  std::vector<ObjectSource> srcs{src};
  int sfd = ::open((dir_ + "/src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(sfd, 0);
  auto add = [&](StoreCounters& c) { return store->add_objects(srcs, sfd, dir_ + "/src", 2, &c); };

  std::ofstream(obj) << "short";
  StoreCounters c1;
  ASSERT_TRUE(add(c1));
  EXPECT_EQ(slurp(obj), std::string(5000, 'b'));
  EXPECT_EQ(c1.replaced.load(), 1U);

  fs::remove(obj);
  ASSERT_EQ(::mkfifo(obj.c_str(), 0644), 0);
  StoreCounters c2;
  ASSERT_TRUE(add(c2));
  EXPECT_EQ(slurp(obj), std::string(5000, 'b'));
  EXPECT_EQ(c2.replaced.load(), 1U);

  fs::remove(obj);
  std::ofstream(obj) << std::string(5000, 's');
  StoreCounters c3;
  ASSERT_TRUE(add(c3));
  EXPECT_EQ(c3.existed.load(), 1U);
  store->set_verify_existing(true);
  StoreCounters c4;
  ASSERT_TRUE(add(c4));
  EXPECT_EQ(slurp(obj), std::string(5000, 'b'));
  EXPECT_EQ(c4.replaced.load(), 1U);
  ::close(sfd);
  EXPECT_TRUE(temp_files().empty());
}

// The store lists a fan-out directory once and then trusts that a name it has not seen is
// absent (no lookup per new object). An object another writer adds to that directory later is
// still found (linkat fails with EEXIST): theirs stays, the add reports "existed".
TEST_F(StoreTest, AnObjectAddedBySomeoneElseAfterTheListingIsKept) {
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  const std::string first(5000, 'f');
  const auto d1 = verity::digest_bytes(std::as_bytes(std::span(first)));
  ASSERT_TRUE(store->add_object_bytes(d1, std::as_bytes(std::span(first))));
  // A second content whose object goes to the same (now listed) fan-out directory.
  std::string second;
  verity::Digest d2;
  for (int i = 0;; ++i) {
    second = std::string(5000, 's') + std::to_string(i);
    d2 = verity::digest_bytes(std::as_bytes(std::span(second)));
    if (d2.bytes[0] == d1.bytes[0]) break;
  }
  const std::string obj = dir_ + "/store/" + tree::object_path(d2);
  std::ofstream(obj, std::ios::binary) << second;  // the other writer
  struct stat before;
  ASSERT_EQ(::stat(obj.c_str(), &before), 0);
  StoreCounters c;
  auto r = store->add_object_bytes(d2, std::as_bytes(std::span(second)), &c);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, AddOutcome::kExisted);
  EXPECT_EQ(c.existed.load(), 1U);
  EXPECT_EQ(c.added.load(), 0U);
  struct stat after;
  ASSERT_EQ(::stat(obj.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(slurp(obj), second);
  EXPECT_TRUE(temp_files().empty());
  EXPECT_TRUE(store->sync());
}

TEST_F(StoreTest, ParallelAddDedupesAndLeavesNoTempFiles) {
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  std::vector<ObjectSource> srcs;
  for (int i = 0; i < 200; ++i) {
    // 50 distinct contents, each under 4 names.
    std::string data(static_cast<std::size_t>(1000 + (i % 50) * 97),
                     static_cast<char>('a' + (i % 50) % 26));
    data += std::to_string(i % 50);
    // Appended, not "f" + std::to_string(i): GCC 12's -O3 -Wrestrict false positive.
    srcs.push_back(add_src(std::string("f").append(std::to_string(i)), data));
  }
  int sfd = ::open((dir_ + "/src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  StoreCounters c;
  auto st = store->add_objects(srcs, sfd, dir_ + "/src", 4, &c);
  ::close(sfd);
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(c.added.load(), 50U);
  EXPECT_TRUE(temp_files().empty());
  for (const auto& s : srcs) {
    std::string obj = dir_ + "/store/" + tree::object_path(s.digest);
    auto d = verity::digest_file(obj);
    ASSERT_TRUE(d);
    EXPECT_EQ(s.digest, *d);
  }
  EXPECT_TRUE(store->sync());
}

TEST_F(StoreTest, AddsFromMemoryOnceAndLeavesNoTempFiles) {
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  const std::string data(70000, 'm');
  const auto d = verity::digest_bytes(std::as_bytes(std::span(data)));
  const verity::Digest digest = d;
  StoreCounters c;
  auto first = store->add_object_bytes(digest, std::as_bytes(std::span(data)), &c);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(*first, AddOutcome::kAdded);
  const std::string obj = dir_ + "/store/" + tree::object_path(digest);
  EXPECT_EQ(slurp(obj), data);
  auto on_disk = verity::digest_file(obj);
  ASSERT_TRUE(on_disk);
  EXPECT_EQ(*on_disk, d);
  struct stat st;
  ASSERT_EQ(::stat(obj.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  const std::string other(data.size(), 'o');  // same size: the cheap check passes
  auto again = store->add_object_bytes(digest, std::as_bytes(std::span(other)), &c);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, AddOutcome::kExisted);
  EXPECT_EQ(slurp(obj), data);
  EXPECT_EQ(c.added.load(), 1U);
  EXPECT_EQ(c.existed.load(), 1U);
  EXPECT_EQ(c.bytes_added.load(), data.size());
  EXPECT_TRUE(temp_files().empty());
}

TEST_F(StoreTest, LargeObjectsAreCopiedWhole) {
  // From 1 MiB on, objects are written with O_DIRECT in 1 MiB pieces plus a buffered tail:
  // sizes exactly at the threshold, across several pieces, and with a tail.
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  std::uint32_t x = 12345;
  for (std::size_t size :
       {std::size_t{1} << 20, (std::size_t{9} << 20) + 1234, std::size_t{4099}}) {
    std::string data(size, '\0');
    for (char& ch : data) ch = static_cast<char>((x = x * 1103515245 + 12345) >> 24);
    auto src = add_src("big" + std::to_string(size), data);
    int fd = ::open((dir_ + "/src/big" + std::to_string(size)).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    auto r = store->add_object(src.digest, fd, "big", nullptr);
    ::close(fd);
    ASSERT_TRUE(r) << r.error().message();
    const std::string obj = dir_ + "/store/" + tree::object_path(src.digest);
    EXPECT_EQ(slurp(obj), data) << size;
    auto d = verity::digest_file(obj);
    ASSERT_TRUE(d);
    EXPECT_EQ(src.digest, *d) << size;
  }
  EXPECT_TRUE(temp_files().empty());
}

TEST_F(StoreTest, WritebackStartsInTheBackgroundEvery64MiB) {
  // No sync_file_range per object: a background syncfs after each 64 MiB of new data.
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  std::string data(33u << 20, 'a');
  EXPECT_EQ(store->writeback_runs(), 0U);
  for (char fill : {'a', 'b'}) {
    data.front() = fill;
    auto r = store->add_object_bytes(verity::digest_bytes(std::as_bytes(std::span(data))),
                                     std::as_bytes(std::span(data)));
    ASSERT_TRUE(r) << r.error().message();
  }
  for (int i = 0; i < 10000 && store->writeback_runs() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(store->writeback_runs(), 1U);
  EXPECT_TRUE(store->sync());
}

TEST_F(StoreTest, MissingSourceFailsNamingIt) {
  auto store = ObjectStore::open(dir_ + "/store");
  ASSERT_TRUE(store);
  ObjectSource s;
  s.digest = verity::Digest::zero(verity::HashAlg::kSha256);
  s.digest.bytes[0] = 0xab;
  s.path = "does-not-exist";
  int sfd = ::open((dir_ + "/src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  std::vector<ObjectSource> srcs{s};
  auto st = store->add_objects(srcs, sfd, "SRC", 1);
  ::close(sfd);
  ASSERT_FALSE(st);
  EXPECT_TRUE(st.error().is_errno(ENOENT));
  EXPECT_NE(st.error().message().find("SRC/does-not-exist"), std::string::npos);
  EXPECT_TRUE(temp_files().empty());
}

}  // namespace
}  // namespace cfs::store
