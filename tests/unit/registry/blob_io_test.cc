// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/blob_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "cfs/util/sys.h"

namespace cfs::registry {
namespace {

namespace fs = std::filesystem;

std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

class Downloads : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cfs-dl-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_;
};

TEST_F(Downloads, PartialSurvivesAndReplaysItsPrefix) {
  auto dir = DownloadDir::open(root_ + "/dl");
  ASSERT_TRUE(dir);
  auto d = oci::sha256_of(std::string_view("hello world"));
  {
    auto p = dir->begin(d);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->size(), 0u);
    ASSERT_TRUE(p->append(bytes("hello ")));
  }  // dropped, as after kill -9: the prefix stays
  EXPECT_TRUE(fs::exists(root_ + "/dl/sha256/" + d.hex + ".partial"));
  auto p = dir->begin(d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->size(), 6u);
  std::string seen;
  ASSERT_TRUE(p->replay([&](std::span<const std::byte> b) {
    seen.append(reinterpret_cast<const char*>(b.data()), b.size());
    return Status{};
  }));
  EXPECT_EQ(seen, "hello ");
  ASSERT_TRUE(p->append(bytes("world")));
  ASSERT_TRUE(p->finish(/*keep=*/true));
  EXPECT_FALSE(fs::exists(root_ + "/dl/sha256/" + d.hex + ".partial"));
  auto done = dir->open_complete(d);
  ASSERT_TRUE(done && *done);
  EXPECT_EQ(sys::read_fd(done->value().get(), "blob").value(), "hello world");
  EXPECT_EQ(dir->complete_path(d), root_ + "/dl/sha256/" + d.hex);
  ASSERT_TRUE(dir->remove(d));
  EXPECT_FALSE(dir->open_complete(d).value().has_value());
  ASSERT_TRUE(dir->remove(d));  // nothing left: still fine
}

TEST_F(Downloads, TruncateAndFinishWithoutKeep) {
  auto dir = DownloadDir::open(root_);
  auto d = oci::sha256_of(std::string_view("x"));
  auto p = dir->begin(d);
  ASSERT_TRUE(p->append(bytes("wrong")));
  ASSERT_TRUE(p->truncate());
  EXPECT_EQ(p->size(), 0u);
  ASSERT_TRUE(p->finish(false));
  EXPECT_TRUE(fs::is_empty(root_ + "/sha256"));
}

TEST_F(Downloads, FdSinkRestartsARegularFile) {
  std::string path = root_ + "/out";
  auto fd = sys::open(path, O_RDWR | O_CREAT, 0644);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(sys::write_all(fd->get(), bytes("head:")));
  FdBlobSink sink(fd->get(), path);
  ASSERT_TRUE(sink.write(bytes("garbage")));
  ASSERT_TRUE(sink.restart());
  ASSERT_TRUE(sink.write(bytes("good")));
  EXPECT_EQ(sys::read_file(path).value(), "head:good");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  FdBlobSink piped(pipefd[1], "pipe");
  ASSERT_TRUE(piped.write(bytes("x")));
  EXPECT_FALSE(piped.restart());
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

TEST_F(Downloads, FileSourceReadsRanges) {
  std::string path = root_ + "/src";
  ASSERT_TRUE(sys::write_file(path, "0123456789"));
  auto src = FileBlobSource::open(path);
  ASSERT_TRUE(src);
  EXPECT_EQ(src->size(), 10u);
  std::byte buf[4];
  auto n = src->read_at(8, buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(static_cast<char>(buf[0]), '8');
  EXPECT_FALSE(FileBlobSource::open(root_));  // a directory
}

}  // namespace
}  // namespace cfs::registry
