// SPDX-License-Identifier: Apache-2.0
// registry::LazyProvider alone, with a fake range source instead of a registry: one fetch for
// many concurrent opens, a bounded wait (EIO), and bytes that are not the object (EIO, nothing
// left in the repository). The objects' digests are the fs-verity digests of the bytes the test
// wrote; the layer is their concatenation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cfs/registry/lazy.h"
#include "cfs/repo/repository.h"
#include "cfs/tree/object_name.h"
#include "testutil/temp_dir.h"

namespace cfs::registry {
namespace {

/// Serves byte ranges of one in-memory layer; can hold every fetch until released, and flip a
/// byte of what it sends.
class FakeRanges final : public RangeSource {
 public:
  struct State {
    std::string layer;
    std::atomic<int> calls{0};
    std::mutex mu;
    std::condition_variable cv;
    bool held = false;
    bool flip = false;
    void release() {
      std::lock_guard l(mu);
      held = false;
      cv.notify_all();
    }
  };
  explicit FakeRanges(std::shared_ptr<State> s) : s_(std::move(s)) {}
  Status fetch_range(const oci::ContentDigest&, std::uint64_t offset, std::uint64_t length,
                     BlobSink& sink) override {
    ++s_->calls;
    {
      std::unique_lock l(s_->mu);
      s_->cv.wait(l, [&] { return !s_->held; });
    }
    std::string bytes = s_->layer.substr(offset, length);
    if (s_->flip) bytes[bytes.size() / 2] ^= 0x20;
    return sink.write(std::as_bytes(std::span(bytes)));
  }

 private:
  std::shared_ptr<State> s_;
};

verity::Digest digest_of(const std::string& data) {
  verity::Hasher h;
  h.update(std::as_bytes(std::span(data)));
  return h.finish();
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

class LazyProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tmp.ok());
    repo::InitOptions io;
    io.algorithm = verity::HashAlg::kSha256;
    io.insecure = true;
    auto r = repo::Repository::init(tmp / "repo", io);
    ASSERT_TRUE(r) << r.error().message();
    a = std::string(9000, 'a') + "end of a";
    b = std::string(5000, 'b') + "end of b";
    state->layer = a + b;
    da = digest_of(a);
    db = digest_of(b);
    opts.repo_path = tmp / "repo";
    opts.source = *parse_reference("docker://127.0.0.1:1/test/lazy:1");
    opts.fill = false;
    opts.index.algorithm = verity::HashAlg::kSha256;
    ocirepo::IndexedLayer layer;
    layer.digest = *oci::ContentDigest::parse(
        "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    layer.diff_id = layer.digest;
    layer.size = state->layer.size();
    opts.index.layers.push_back(layer);
    ocirepo::ObjectLocation la{da, 0, 0, a.size(), a.size()};
    ocirepo::ObjectLocation lb{db, 0, a.size(), b.size(), b.size()};
    opts.index.objects = da < db ? std::vector{la, lb} : std::vector{lb, la};
  }

  std::shared_ptr<LazyProvider> provider() {
    auto p = LazyProvider::create(std::make_unique<FakeRanges>(state), opts);
    EXPECT_TRUE(p) << p.error().message();
    (*p)->start();
    return *p;
  }

  /// Regular files under objects/ (committed objects and any named leftovers).
  std::size_t stored() const {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(tmp / "repo/objects"))
      if (e.is_regular_file()) ++n;
    return n;
  }

  /// Opens are served from the verified object before it is committed: it appears shortly after.
  std::size_t stored_soon(std::size_t want) const {
    for (int i = 0; i < 500 && stored() < want; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return stored();
  }

  testutil::TempDir tmp{"cfs-lazy-provider-"};
  std::shared_ptr<FakeRanges::State> state = std::make_shared<FakeRanges::State>();
  std::string a, b;
  verity::Digest da, db;
  LazyOptions opts;
};

TEST_F(LazyProviderTest, ConcurrentOpensFetchOnce) {
  state->held = true;
  auto p = provider();
  std::vector<std::string> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got)
    threads.emplace_back([&] {
      auto fd = p->open_object(tree::object_path(da), da);
      if (fd) g = read_all(fd->get());
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all four are waiting
  state->release();
  for (auto& t : threads) t.join();
  EXPECT_EQ(state->calls.load(), 1);
  for (const auto& g : got) EXPECT_EQ(g, a);
  EXPECT_EQ(stored_soon(1), 1u);
  // Present now: no further fetch.
  ASSERT_TRUE(p->open_object(tree::object_path(da), da));
  EXPECT_EQ(state->calls.load(), 1);
}

TEST_F(LazyProviderTest, AnOpenWaitsAtMostTheTimeoutThenEio) {
  state->held = true;
  opts.timeout_s = 0.2;
  auto p = provider();
  auto start = std::chrono::steady_clock::now();
  auto fd = p->open_object(tree::object_path(db), db);
  ASSERT_FALSE(fd);
  EXPECT_TRUE(fd.error().is_errno(EIO)) << fd.error().message();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  // The fetch goes on: once the source answers, a later open finds the object.
  state->release();
  auto again = p->open_object(tree::object_path(db), db);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(read_all(again->get()), b);
}

TEST_F(LazyProviderTest, BytesThatAreNotTheObjectAreEioAndStoreNothing) {
  state->flip = true;
  auto p = provider();
  auto fd = p->open_object(tree::object_path(da), da);
  ASSERT_FALSE(fd);
  EXPECT_TRUE(fd.error().is_errno(EIO)) << fd.error().message();
  EXPECT_NE(fd.error().message().find("nothing stored"), std::string::npos);
  EXPECT_EQ(stored(), 0u);
  // The next open tries again (and good bytes are stored).
  state->flip = false;
  auto again = p->open_object(tree::object_path(da), da);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(read_all(again->get()), a);
  EXPECT_EQ(stored_soon(1), 1u);
}

TEST_F(LazyProviderTest, ObjectsOutsideTheIndexAreNotFetched) {
  auto p = provider();
  auto other = digest_of("not in the index");
  auto fd = p->open_object(tree::object_path(other), other);
  ASSERT_FALSE(fd);
  EXPECT_TRUE(fd.error().is_errno(ENOENT)) << fd.error().message();
  // A redirect that is not the digest's own name is not fetched either.
  fd = p->open_object(tree::object_path(db), da);
  ASSERT_FALSE(fd);
  EXPECT_TRUE(fd.error().is_errno(ENOENT));
  EXPECT_EQ(state->calls.load(), 0);
}

}  // namespace
}  // namespace cfs::registry
