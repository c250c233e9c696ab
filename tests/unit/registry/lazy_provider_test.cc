// SPDX-License-Identifier: Apache-2.0
// registry::LazyProvider alone, with a fake range source instead of a registry: one fetch for
// many concurrent opens, a bounded wait (EIO), and bytes that are not the object (EIO, nothing
// left in the repository). The objects' digests are the fs-verity digests of the bytes the test
// wrote; the layer is their concatenation.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
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
    /// Flips the layer byte at this offset in the next response that holds it (once).
    std::optional<std::uint64_t> flip_at;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // offset, length of each call
    /// A response stops before this layer offset until resume() (at most 10 s), then sends the
    /// rest; `stalled` is true until then.
    std::optional<std::uint64_t> stall_at;
    /// A response fails (EIO) at this layer offset, after the bytes before it.
    std::optional<std::uint64_t> fail_at;
    bool stalled = false;
    /// When set, a response is written in pieces of at most this many bytes (as a network
    /// delivers it).
    std::size_t piece = 0;
    /// `ranges` as of now, read under the lock: a fetch thread may still append (the tests that
    /// wait for stored files have no other ordering with it; ThreadSanitizer found the read).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges_now() {
      std::lock_guard l(mu);
      return ranges;
    }
    void release() {
      std::lock_guard l(mu);
      held = false;
      cv.notify_all();
    }
    void resume() {
      std::lock_guard l(mu);
      stall_at.reset();
      cv.notify_all();
    }
  };
  explicit FakeRanges(std::shared_ptr<State> s) : s_(std::move(s)) {}
  Status fetch_range(const oci::ContentDigest&, std::uint64_t offset, std::uint64_t length,
                     BlobSink& sink) override {
    ++s_->calls;
    std::string bytes = s_->layer.substr(offset, length);
    {
      std::unique_lock l(s_->mu);
      s_->cv.wait(l, [&] { return !s_->held; });
      s_->ranges.emplace_back(offset, length);
      if (s_->flip_at && *s_->flip_at >= offset && *s_->flip_at < offset + length) {
        bytes[*s_->flip_at - offset] ^= 0x20;
        s_->flip_at.reset();
      }
    }
    if (s_->flip) bytes[bytes.size() / 2] ^= 0x20;
    auto all = std::as_bytes(std::span(bytes));
    std::size_t cut = 0;
    {
      std::lock_guard l(s_->mu);
      if (s_->fail_at && *s_->fail_at > offset && *s_->fail_at < offset + length) {
        const auto n = static_cast<std::size_t>(*s_->fail_at - offset);
        CFS_TRY(sink.write(all.first(n)));
        return fail_errno("fake registry: connection reset", ECONNRESET);
      }
      if (s_->stall_at && *s_->stall_at > offset && *s_->stall_at < offset + length)
        cut = static_cast<std::size_t>(*s_->stall_at - offset);
    }
    if (cut == 0 && s_->piece != 0) {
      for (std::size_t at = 0; at < all.size(); at += s_->piece)
        CFS_TRY(sink.write(all.subspan(at, std::min(s_->piece, all.size() - at))));
      return {};
    }
    if (cut == 0) return sink.write(all);
    {
      std::lock_guard l(s_->mu);
      s_->stalled = true;  // from the first byte on: the rest has not been sent
    }
    CFS_TRY(sink.write(all.first(cut)));
    {
      std::unique_lock l(s_->mu);
      s_->cv.wait_for(l, std::chrono::seconds(10), [&] { return !s_->stall_at; });
      s_->stalled = false;
    }
    return sink.write(all.subspan(cut));
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
    opts.batch_bytes = 0;  // one object per request, but in the Batch tests
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

TEST_F(LazyProviderTest, FillCompleteWaitsForTheCommitsOfAnOpensObjects) {
  // The fill's first object (the index's first) stalls in the middle of its response; meanwhile
  // an open fetches the other object, whose commit waits for a quiet mount that does not come in
  // an hour. When the fill's fetch resumes, the fill finds the open's object claimed and is done:
  // "fill complete" must come only once that object is named too (its commit is forced then),
  // not while it is still an unnamed file (the deferred commits of session 14).
  opts.fill = true;
  opts.fetchers = 1;  // one fill thread: the index's objects in order
  opts.commit_quiet_s = 3600;
  opts.commit_max_wait_s = 3600;
  const bool a_first = da < db;
  const verity::Digest other = a_first ? db : da;
  state->stall_at = (a_first ? 0 : a.size()) + 100;
  struct Complete {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<std::size_t> named;  // objects named when "fill complete" was logged
  };
  auto complete = std::make_shared<Complete>();
  opts.log = [complete, this](const std::string& line) {
    if (!line.starts_with("fill complete")) return;
    std::lock_guard l(complete->mu);
    complete->named = stored();
    complete->cv.notify_all();
  };
  auto p = provider();
  auto stalled = [&] {
    std::lock_guard l(state->mu);
    return state->stalled;
  };
  for (int i = 0; i < 1000 && !stalled(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(stalled());
  auto fd = p->open_object(tree::object_path(other), other);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), a_first ? b : a);
  EXPECT_EQ(stored(), 0u);  // served from its verified unnamed file; the fill's still stalls
  state->resume();
  std::unique_lock l(complete->mu);
  ASSERT_TRUE(complete->cv.wait_for(l, std::chrono::seconds(60),
                                    [&] { return complete->named.has_value(); }));
  EXPECT_EQ(*complete->named, 2u) << "fill complete before the open's object was named";
  l.unlock();
  p.reset();
  EXPECT_EQ(stored(), 2u);
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

/// A layer of small files, each after a 512-byte "tar header" of its own, as in a tar layer.
class LazyBatchTest : public LazyProviderTest {
 protected:
  void SetUp() override {
    LazyProviderTest::SetUp();
    state->layer.clear();
    opts.index.objects.clear();
    for (std::size_t i = 0; i < 6; ++i) {
      files.push_back("file " + std::to_string(i) + ": " + std::string(1000 + 300 * i, 'x'));
      state->layer += std::string(512, 'h');
      offsets.push_back(state->layer.size());
      state->layer += files.back();
      digests.push_back(digest_of(files.back()));
      opts.index.objects.push_back(ocirepo::ObjectLocation{
          digests.back(), 0, offsets.back(), files.back().size(), files.back().size()});
    }
    opts.index.layers[0].size = state->layer.size();
    ocirepo::sort_and_dedup(opts.index.objects);  // the index is sorted by digest
    opts.batch_bytes = 64 << 10;
  }
  Result<UniqueFd> open(int i) {
    return provider_->open_object(tree::object_path(digests[static_cast<std::size_t>(i)]),
                                  digests[static_cast<std::size_t>(i)]);
  }
  /// The objects the provider verifies, in order (the short names of its "verified" trace
  /// events); set before provider().
  struct Verified {
    std::mutex mu;
    std::vector<std::string> names;
  };
  std::shared_ptr<Verified> record_verified() {
    auto v = std::make_shared<Verified>();
    opts.trace = [v](std::string_view event) {
      std::lock_guard l(v->mu);
      if (event.starts_with("verified ")) v->names.emplace_back(event.substr(9));
    };
    return v;
  }
  /// Files `first` to the last: each opened and read back whole.
  void expect_served_from(int first) {
    for (int i = first; i < static_cast<int>(files.size()); ++i) {
      auto f = open(i);
      ASSERT_TRUE(f) << f.error().message();
      EXPECT_EQ(read_all(f->get()), files[static_cast<std::size_t>(i)]);
    }
  }
  std::shared_ptr<LazyProvider> provider_;
  std::vector<std::string> files;
  std::vector<std::uint64_t> offsets;
  std::vector<verity::Digest> digests;
};

TEST_F(LazyBatchTest, NeighboursComeInTheSameRequestEachStoredWhole) {
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), files[2]);
  // One request, from the first file's first byte to the last file's last (the headers between
  // them dropped), and every file stored as its own object.
  const auto ranges = state->ranges_now();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].first, offsets[0]);
  EXPECT_EQ(ranges[0].first + ranges[0].second, state->layer.size());
  EXPECT_EQ(stored_soon(files.size()), files.size());
  expect_served_from(0);
  EXPECT_EQ(state->calls.load(), 1);
}

TEST_F(LazyBatchTest, EachObjectIsServedAsSoonAsItsOwnBytesArrive) {
  // The span runs from file 0 to file 5; the response stalls right after file 2's last byte.
  state->stall_at = offsets[3];
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  bool stalled;
  {
    std::lock_guard l(state->mu);
    stalled = state->stalled;
  }
  EXPECT_TRUE(stalled) << "the open waited for the neighbours after its object";
  EXPECT_EQ(read_all(fd->get()), files[2]);
  // A neighbour before it (complete too) is served while the response still stalls.
  auto one = open(1);
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_EQ(read_all(one->get()), files[1]);
  state->resume();
  // The rest arrives, every object is stored whole, and one request brought them all.
  EXPECT_EQ(stored_soon(files.size()), files.size());
  expect_served_from(3);
  EXPECT_EQ(state->calls.load(), 1);
}

TEST_F(LazyBatchTest, TheObjectAskedForGoesAheadOfTheNeighboursBeforeIt) {
  // Files 0 and 1 come before file 2 in the span: file 2 is verified (and served) first, then
  // they are, from the bytes held meanwhile; all three are stored whole.
  auto verified = record_verified();
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), files[2]);
  const auto ranges = state->ranges_now();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].first, offsets[0]);
  EXPECT_EQ(stored_soon(files.size()), files.size());
  {
    // Released before the opens below: they trace too.
    std::lock_guard l(verified->mu);
    ASSERT_EQ(verified->names.size(), files.size());
    auto name = [&](std::size_t i) { return digests[i].hex().substr(0, 12); };
    EXPECT_EQ(verified->names[0], name(2));
    // The others in span order, file 0 first.
    EXPECT_EQ(verified->names[1], name(0));
    EXPECT_EQ(verified->names[2], name(1));
  }
  expect_served_from(0);
}

TEST_F(LazyBatchTest, APrefetchNobodyWaitsForKeepsTheSpanOrder) {
  // The same span, fetched for --prefetch of file 2 with no open waiting: the neighbours before
  // it are not held back (one of them may be what is opened next).
  auto verified = record_verified();
  opts.prefetch = {digests[2]};
  provider_ = provider();
  EXPECT_EQ(stored_soon(files.size()), files.size());
  const auto ranges = state->ranges_now();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].first, offsets[0]);
  std::lock_guard l(verified->mu);
  ASSERT_EQ(verified->names.size(), files.size());
  for (std::size_t i = 0; i < files.size(); ++i)
    EXPECT_EQ(verified->names[i], digests[i].hex().substr(0, 12)) << i;
}

std::string str(const HugeBytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// The bytes an open's fetch hands over with each tree (take_tree) are those hashed into it:
/// the content the test wrote (for zstd, what libzstd compressed), of the file asked for and of
/// its neighbours, once each.
void expect_trees_with_bytes(LazyProvider& p, const std::vector<std::string>& files,
                             const std::vector<verity::Digest>& digests) {
  for (std::size_t i = 0; i < files.size(); ++i) {
    vfs::Prebuilt got = p.take_tree(digests[i]);
    ASSERT_TRUE(got.tree) << i;
    EXPECT_EQ(got.tree->digest, digests[i]) << i;
    ASSERT_TRUE(got.bytes) << i;
    EXPECT_EQ(str(*got.bytes), files[i]) << i;
    vfs::Prebuilt again = p.take_tree(digests[i]);
    EXPECT_FALSE(again.tree) << i;
    EXPECT_FALSE(again.bytes) << i;
  }
}

TEST_F(LazyBatchTest, AnOpenTakesTheTreeWithTheBytesHashedIntoIt) {
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(stored_soon(files.size()), files.size());
  expect_trees_with_bytes(*provider_, files, digests);
}

TEST_F(LazyBatchTest, APrefetchKeepsTheTreesButNotTheBytes) {
  // Nobody asked for them (no open, no ELF hint): they may never be opened.
  opts.prefetch = {digests[2]};
  provider_ = provider();
  EXPECT_EQ(stored_soon(files.size()), files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    vfs::Prebuilt got = provider_->take_tree(digests[i]);
    ASSERT_TRUE(got.tree) << i;
    EXPECT_FALSE(got.bytes) << i;
  }
}

TEST_F(LazyBatchTest, KeptTreesAreBoundedByCountNotOnlyByTheirBytes) {
  // The six files are one block each: their trees are empty, and without a cost per entry a
  // fill of a large image would keep one entry per object for the mount's life. With room for
  // four entries, the two oldest are dropped (their opens build the tree from the object file).
  opts.prefetch = digests;
  opts.batch_bytes = 0;  // one object per request: kept in the prefetch's order
  opts.kept_tree_bytes = 4 * LazyOptions::kKeptTreeEntryBytes;
  provider_ = provider();
  EXPECT_EQ(stored_soon(files.size()), files.size());
  std::size_t kept = 0;
  for (const auto& d : digests)
    if (provider_->take_tree(d).tree) ++kept;
  EXPECT_EQ(kept, 4u);
  // Every file is still served whole (its tree built from the object file).
  expect_served_from(0);
}

TEST_F(LazyBatchTest, ObjectsVerifiedBeforeTheTransferBrokeOffAreKept) {
  // Every byte after file 2's end is lost: the response fails there.
  state->fail_at = offsets[3];
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), files[2]);
  // Files 0-2 arrived whole and are stored; 3-5 are not (and are fetched on their own later).
  EXPECT_EQ(stored_soon(3), 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(stored(), 3u);
  state->fail_at.reset();
  auto four = open(4);
  ASSERT_TRUE(four) << four.error().message();
  EXPECT_EQ(read_all(four->get()), files[4]);
}

TEST_F(LazyBatchTest, TheBudgetBoundsTheRequest) {
  // Room for file 2 and one neighbour: file 1 (shorter than file 3, so it adds fewer bytes).
  opts.batch_bytes = files[3].size() + 512;
  provider_ = provider();
  ASSERT_TRUE(open(2));
  const auto ranges = state->ranges_now();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], std::make_pair(offsets[1], offsets[2] + files[2].size() - offsets[1]));
  EXPECT_EQ(stored_soon(2), 2u);
  ASSERT_TRUE(open(1));
  EXPECT_EQ(state->calls.load(), 1);
}

TEST_F(LazyBatchTest, AnOpensObjectsAreNamedOnlyOnceTheMountIsQuiet) {
  // Never quiet long enough, and no age limit: the objects wait for the provider's stop.
  opts.commit_quiet_s = 3600;
  opts.commit_max_wait_s = 3600;
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), files[2]);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(stored(), 0u) << "named while the mount was not quiet";
  // The neighbours are served from their verified unnamed files meanwhile, not fetched again.
  expect_served_from(0);
  EXPECT_EQ(state->calls.load(), 1);
  EXPECT_EQ(stored(), 0u);
  // Stopping the provider names them all, each whole.
  provider_.reset();
  EXPECT_EQ(stored(), files.size());
  provider_ = provider();
  expect_served_from(0);
  EXPECT_EQ(state->calls.load(), 1);
}

TEST_F(LazyBatchTest, AnOpensObjectsAreNamedOnceNothingWasAskedForAWhile) {
  opts.commit_quiet_s = 0.05;
  opts.commit_max_wait_s = 3600;
  provider_ = provider();
  ASSERT_TRUE(open(2));
  EXPECT_EQ(stored_soon(files.size()), files.size());
  // Named: an open now finds them in the repository.
  expect_served_from(0);
  EXPECT_EQ(state->calls.load(), 1);
}

TEST_F(LazyBatchTest, AnOpensObjectsWaitAtMostTheLongestWait) {
  opts.commit_quiet_s = 3600;
  opts.commit_max_wait_s = 0.05;
  provider_ = provider();
  ASSERT_TRUE(open(2));
  EXPECT_EQ(stored_soon(files.size()), files.size());
}

/// LazyProvider::when_quiet's task (the lazy mount's registration): whether it ran, and on which
/// thread.
struct QuietTask {
  std::mutex mu;
  std::condition_variable cv;
  bool ran = false;
  std::thread::id on;
  std::function<void()> task() {
    return [this] {
      std::lock_guard l(mu);
      ran = true;
      on = std::this_thread::get_id();
      cv.notify_all();
    };
  }
  bool ran_soon() {
    std::unique_lock l(mu);
    return cv.wait_for(l, std::chrono::seconds(10), [&] { return ran; });
  }
  bool has_run() {
    std::lock_guard l(mu);
    return ran;
  }
};

TEST_F(LazyBatchTest, QuietWorkWaitsWhileAnOpenWaitsThenRuns) {
  opts.commit_quiet_s = 0.05;
  opts.commit_max_wait_s = 3600;
  state->held = true;  // the open's fetch waits for release()
  provider_ = provider();
  std::atomic<bool> served{false};
  std::thread opener([&] {
    auto fd = open(2);
    EXPECT_TRUE(fd) << fd.error().message();
    served = true;
  });
  for (int i = 0; i < 1000 && state->calls.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(state->calls.load(), 1);  // the open waits in its fetch
  QuietTask quiet;
  provider_->when_quiet(quiet.task());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(quiet.has_run()) << "ran while an open waited";
  state->release();
  opener.join();
  EXPECT_TRUE(served.load());
  EXPECT_TRUE(quiet.ran_soon());
  EXPECT_NE(quiet.on, std::this_thread::get_id());  // the committer's thread, not the caller's
}

TEST_F(LazyBatchTest, QuietWorkWaitsAtMostTheLongestWait) {
  opts.commit_quiet_s = 3600;
  opts.commit_max_wait_s = 0.05;
  state->held = true;
  provider_ = provider();
  std::thread opener([&] { EXPECT_TRUE(open(2)); });
  for (int i = 0; i < 1000 && state->calls.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  QuietTask quiet;
  provider_->when_quiet(quiet.task());
  EXPECT_TRUE(quiet.ran_soon()) << "not run at the longest wait while an open waited";
  state->release();
  opener.join();
}

TEST_F(LazyBatchTest, QuietWorkRunsAtTheStopIfNotBefore) {
  // Never quiet long enough, and no age limit: only the stop runs it.
  opts.commit_quiet_s = 3600;
  opts.commit_max_wait_s = 3600;
  provider_ = provider();
  QuietTask quiet;
  provider_->when_quiet(quiet.task());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(quiet.has_run());
  provider_.reset();  // returns after the task ran
  EXPECT_TRUE(quiet.has_run());
}

TEST_F(LazyBatchTest, QuietWorkRunsAtOnceWithoutACommitter) {
  opts.commit_quiet_s = -1;  // each fetch commits its own objects: no committer
  provider_ = provider();
  QuietTask quiet;
  provider_->when_quiet(quiet.task());
  EXPECT_TRUE(quiet.has_run());
  EXPECT_EQ(quiet.on, std::this_thread::get_id());
}

/// LazyBatchTest's files as zstd:chunked stores them: each file one zstd frame (compressed here by
/// libzstd, the oracle), after a 512-byte header.
class LazyZstdBatchTest : public LazyBatchTest {
 protected:
  void SetUp() override {
    LazyBatchTest::SetUp();
    state->layer.clear();
    offsets.clear();
    opts.index.objects.clear();
    for (std::size_t i = 0; i < files.size(); ++i) {
      std::string frame(ZSTD_compressBound(files[i].size()), '\0');
      const std::size_t n =
          ZSTD_compress(frame.data(), frame.size(), files[i].data(), files[i].size(), 3);
      ASSERT_FALSE(ZSTD_isError(n));
      frame.resize(n);
      state->layer += std::string(512, 'h');
      offsets.push_back(state->layer.size());
      lengths.push_back(n);
      state->layer += frame;
      opts.index.objects.push_back(ocirepo::ObjectLocation{
          digests[i], 0, offsets.back(), n, files[i].size(), ocirepo::ObjectCompression::kZstd});
    }
    opts.index.layers[0].size = state->layer.size();
    ocirepo::sort_and_dedup(opts.index.objects);
  }
  std::vector<std::uint64_t> lengths;
};

TEST_F(LazyZstdBatchTest, EachMemberDecodesItsOwnFrameWhenOneIsHeldMidFrame) {
  // A prefetch of file 2 (nobody waits: the span is decoded in order) stops in the middle of file
  // 1's frame; then an open of file 2 waits, so file 1's remaining bytes are held back while file
  // 2 is decoded, and file 1's frame is finished after. The fetch's zstd contexts are shared
  // between its members: file 1 must keep its own context across file 2's frame.
  opts.prefetch = {digests[2]};
  state->stall_at = offsets[1] + lengths[1] / 2;
  provider_ = provider();
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard l(state->mu);
      if (state->stalled) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Result<UniqueFd> two = fail_errno("not opened", EIO);
  std::thread opener([&] { two = open(2); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // it waits now
  state->resume();
  opener.join();
  ASSERT_TRUE(two) << two.error().message();
  EXPECT_EQ(read_all(two->get()), files[2]);
  EXPECT_EQ(stored_soon(files.size()), files.size());
  expect_served_from(0);
  EXPECT_EQ(state->calls.load(), 1);  // every member came whole with the one request
}

TEST_F(LazyZstdBatchTest, AnOpenTakesTheTreeWithTheDecodedBytes) {
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(stored_soon(files.size()), files.size());
  expect_trees_with_bytes(*provider_, files, digests);
}

// The budget a measured link is worth: the bytes of one round trip (arithmetic by hand).
TEST(BatchBudget, IsTheBytesOfOneRoundTrip) {
  // 1 Gbit/s = 125e6 bytes/s; 100 Mbit/s = 12.5e6.
  EXPECT_EQ(batch_budget(0.0002, 125e6), std::optional<std::uint64_t>(25000));  // a loopback
  EXPECT_EQ(batch_budget(0.001, 12.5e6), std::optional<std::uint64_t>(12500));
  EXPECT_EQ(batch_budget(0.020, 12.5e6), std::optional<std::uint64_t>(250000));  // a WAN
  EXPECT_EQ(batch_budget(0.0000001, 1e6), std::optional<std::uint64_t>(0));      // zero latency
}

TEST(BatchBudget, IsClampedAndUnknownWithoutAMeasurement) {
  EXPECT_EQ(batch_budget(0.050, 125e6), std::optional<std::uint64_t>(kMaxBatchBytes));  // 6.25 MB
  EXPECT_EQ(batch_budget(1e9, 1e9), std::optional<std::uint64_t>(kMaxBatchBytes));
  EXPECT_EQ(kMaxBatchBytes, 1u << 20);
  for (auto [rtt, rate] :
       std::vector<std::pair<double, double>>{{0, 125e6},
                                              {0.001, 0},
                                              {-0.001, 125e6},
                                              {0.001, -1},
                                              {std::nan(""), 1e6},
                                              {0.001, std::numeric_limits<double>::infinity()}})
    EXPECT_EQ(batch_budget(rtt, rate), std::nullopt) << rtt << " " << rate;
}

TEST_F(LazyBatchTest, ATamperedNeighbourIsDroppedAndDoesNotHarmTheFileAskedFor) {
  state->flip_at = offsets[3] + 10;  // inside file 3, once
  provider_ = provider();
  auto fd = open(2);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), files[2]);
  EXPECT_EQ(state->calls.load(), 1);
  EXPECT_EQ(stored_soon(files.size() - 1), files.size() - 1);  // all but file 3
  // File 3 is fetched again on its open (its neighbours are present now: alone) and is right.
  // The open of file 2 returned before the batch ended, so an open this early may still find
  // file 3's failing flight of that batch (EIO, no new request): the next one fetches it.
  auto three = open(3);
  for (int i = 0; i < 100 && !three && state->calls.load() == 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    three = open(3);
  }
  ASSERT_TRUE(three) << three.error().message();
  EXPECT_EQ(read_all(three->get()), files[3]);
  const auto ranges = state->ranges_now();
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[1], std::make_pair(offsets[3], std::uint64_t{files[3].size()}));
  EXPECT_EQ(stored_soon(files.size()), files.size());
}

TEST_F(LazyBatchTest, ATamperedFileAskedForFailsAloneItsNeighboursAreStored) {
  state->flip_at = offsets[2] + 10;
  provider_ = provider();
  auto fd = open(2);
  ASSERT_FALSE(fd);
  EXPECT_TRUE(fd.error().is_errno(EIO)) << fd.error().message();
  EXPECT_EQ(stored_soon(files.size() - 1), files.size() - 1);
  auto again = open(2);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(read_all(again->get()), files[2]);
}

/// One zstd:chunked object `c` alone in the layer: a frame compressed by libzstd (the oracle), the
/// index saying `size` decoded bytes. Objects up to 8 MiB are decoded straight into one buffer of
/// the index's size, larger ones through a small one (session 13): both must refuse a frame that
/// is not exactly the object.
class LazyZstdObjectTest : public LazyProviderTest {
 protected:
  /// `pledged`: the frame's header carries its content size (ZSTD_compress), else it is streamed
  /// without one (ZSTD_compressStream2, as a compressor that did not know the size writes it).
  void make(std::string content, std::uint64_t size, bool pledged = true) {
    c = std::move(content);
    dc = digest_of(c);
    std::string frame(ZSTD_compressBound(c.size()) + 64, '\0');
    std::size_t n = 0;
    if (pledged) {
      n = ZSTD_compress(frame.data(), frame.size(), c.data(), c.size(), 3);
    } else {
      ZSTD_CCtx* cc = ZSTD_createCCtx();
      ZSTD_inBuffer in{c.data(), c.size(), 0};
      ZSTD_outBuffer out{frame.data(), frame.size(), 0};
      n = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);  // 0: all flushed
      ASSERT_EQ(n, 0u);
      n = out.pos;
      ZSTD_freeCCtx(cc);
    }
    ASSERT_FALSE(ZSTD_isError(n));
    frame.resize(n);
    state->layer = std::string(512, 'h') + frame;
    opts.index.layers[0].size = state->layer.size();
    opts.index.objects = {
        ocirepo::ObjectLocation{dc, 0, 512, frame.size(), size, ocirepo::ObjectCompression::kZstd}};
  }
  Result<UniqueFd> open_c(LazyProvider& p) { return p.open_object(tree::object_path(dc), dc); }
  std::string c;
  verity::Digest dc;
};

/// Bytes of which libzstd makes a frame of about a tenth of their size, not all alike.
std::string compressible(std::size_t n) {
  std::string s;
  s.reserve(n);
  for (std::size_t i = 0; s.size() < n; ++i)
    s += "line " + std::to_string(i * 2654435761u % 1000003) + " of a compressible file\n";
  s.resize(n);
  return s;
}

TEST_F(LazyZstdObjectTest, AFrameIsDecodedWholeAndItsBytesKept) {
  make(compressible(300000), 300000);
  state->piece = 1000;  // the frame's blocks are decoded over many writes
  auto p = provider();
  auto fd = open_c(*p);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), c);
  vfs::Prebuilt got = p->take_tree(dc);
  ASSERT_TRUE(got.tree);
  EXPECT_EQ(got.tree->digest, dc);
  ASSERT_TRUE(got.bytes);
  EXPECT_EQ(str(*got.bytes), c);
  EXPECT_EQ(stored_soon(1), 1u);
}

TEST_F(LazyZstdObjectTest, AnObjectOverTheWholeBufferLimitIsDecodedInPieces) {
  make(compressible((8u << 20) + 4096), (8u << 20) + 4096);
  state->piece = 16 << 10;
  auto p = provider();
  auto fd = open_c(*p);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(read_all(fd->get()), c);
  EXPECT_EQ(stored_soon(1), 1u);
}

TEST_F(LazyZstdObjectTest, AFrameOfMoreBytesThanTheObjectIsEioAndStoresNothing) {
  for (bool pledged : {true, false}) {
    for (std::size_t n : {std::size_t{300000}, std::size_t{(8u << 20) + 4096}}) {
      SCOPED_TRACE(std::to_string(n) + (pledged ? " pledged" : " streamed"));
      make(compressible(n), n - 1, pledged);
      auto p = provider();
      auto fd = open_c(*p);
      ASSERT_FALSE(fd);
      EXPECT_TRUE(fd.error().is_errno(EIO)) << fd.error().message();
      EXPECT_NE(fd.error().message().find("more than the object's " + std::to_string(n - 1)),
                std::string::npos)
          << fd.error().message();
      EXPECT_EQ(stored(), 0u);
    }
  }
}

TEST_F(LazyZstdObjectTest, AFrameOfFewerBytesThanTheObjectIsEioAndStoresNothing) {
  for (std::size_t n : {std::size_t{300000}, std::size_t{(8u << 20) + 4096}}) {
    SCOPED_TRACE(n);
    make(compressible(n), n + 1, false);
    auto p = provider();
    auto fd = open_c(*p);
    ASSERT_FALSE(fd);
    EXPECT_TRUE(fd.error().is_errno(EIO)) << fd.error().message();
    EXPECT_NE(
        fd.error().message().find(std::to_string(n) + " bytes instead of " + std::to_string(n + 1)),
        std::string::npos)
        << fd.error().message();
    EXPECT_EQ(stored(), 0u);
  }
}

}  // namespace
}  // namespace cfs::registry
