// SPDX-License-Identifier: Apache-2.0
// Userspace fs-verity: images written by the erofs writer for objects whose digests come from
// the verity module (itself checked against fsverity-utils vectors). Tampering before and
// after open must surface as EIO, and no read may ever return a byte that does not match.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "cfs/erofs/writer.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"
#include "cfs/vfs/filesystem.h"
#include "cfs/vfs/object_provider.h"
#include "test_util.h"
#include "testutil/tree_builder.h"

namespace cfs::vfs {
namespace {

using testing::TempDir;
using testutil::random_bytes;

struct FileSpec {
  std::string name;
  std::string content;
  bool digest = true;
  bool write_object = true;
  bool inline_content = false;
};

class VerifiedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = {
        {"big", random_bytes((3u << 19) + 123, 1)},  // 1.5 MiB + 123: several Merkle levels
        {"small", random_bytes(5000, 2)},
        {"nodigest", random_bytes(8000, 3), false},
        {"missing", random_bytes(9000, 4), true, false},
        {"inline", "hello", false, false, true},
    };
    testutil::TreeBuilder b(store_.path());
    for (const auto& f : files_) {
      if (f.inline_content) {
        b.inline_file(b.root(), f.name, f.content);
      } else {
        b.file(b.root(), f.name, f.content, {f.digest, f.write_object});
        paths_[f.name] = b.object_of(f.content);
      }
    }
    image_ = dir_ / "image.cfs";
    auto fd = sys::open(image_, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_TRUE(fd);
    auto r = erofs::write_image(b.tree(), {}, fd->get());
    if (!r && r.error().is(Errc::kUnsupportedFeature))
      GTEST_SKIP() << "image writer not available: " << r.error().message();
    ASSERT_TRUE(r) << r.error().message();
  }

  std::unique_ptr<Filesystem> mount(VerityMode mode, std::string cache_dir = "",
                                    std::uint64_t copy_max = Options{}.copy_max_bytes) {
    Options o;
    o.basedirs = {store_.path()};
    o.verity = mode;
    o.tree_cache_dir = std::move(cache_dir);
    o.copy_max_bytes = copy_max;
    auto fs = Filesystem::open(image_, o);
    EXPECT_TRUE(fs) << fs.error().message();
    return fs ? std::move(*fs) : nullptr;
  }

  Ino ino(Filesystem& fs, const std::string& name) {
    auto st = fs.lookup(fs.root(), name);
    EXPECT_TRUE(st) << name;
    return st ? st->st_ino : 0;
  }

  const std::string& content(const std::string& name) {
    for (const auto& f : files_)
      if (f.name == name) return f.content;
    throw std::logic_error(name);
  }

  // Reads [off, off+len); returns errno (0 = ok) and appends the data to out.
  int read_range(Filesystem& fs, const OpenFile& f, std::uint64_t off, std::size_t len,
                 std::string* out = nullptr) {
    ReadBuffer buf;
    auto r = fs.read(f, off, len, buf);
    if (!r) return errno_for(r.error());
    if (out) out->append(reinterpret_cast<const char*>(r->data()), r->size());
    return 0;
  }

  void flip_byte(const std::string& name, std::uint64_t off) {
    auto fd = sys::open(paths_[name], O_RDWR);
    ASSERT_TRUE(fd);
    std::byte b[1];
    ASSERT_EQ(*sys::pread_full(fd->get(), b, off), 1u);
    b[0] ^= std::byte{0x01};
    ASSERT_TRUE(sys::pwrite_all(fd->get(), b, off));
  }

  TempDir dir_, store_;
  std::string image_;
  std::vector<FileSpec> files_;
  std::map<std::string, std::string> paths_;
};

TEST_F(VerifiedTest, ReadsReturnExactlyTheContent) {
  auto fs = mount(VerityMode::kOn);
  for (const char* name : {"big", "small"}) {
    auto f = fs->open_file(ino(*fs, name), O_RDONLY);
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_TRUE((*f)->verified());
    EXPECT_TRUE((*f)->cacheable());
    std::string got;
    // Odd offsets and lengths: ranges start and end inside blocks.
    for (std::uint64_t off = 0; off < content(name).size() + 10000; off += 7001)
      ASSERT_EQ(read_range(*fs, **f, off, 7001, &got), 0);
    EXPECT_EQ(got, content(name)) << name;
  }
}

TEST_F(VerifiedTest, FlipAfterOpenFailsOnlyTheTouchedBlock) {
  auto fs = mount(VerityMode::kOn);
  auto f = fs->open_file(ino(*fs, "big"), O_RDONLY);
  ASSERT_TRUE(f);
  flip_byte("big", 150000);  // block 36
  std::string got;
  EXPECT_EQ(read_range(*fs, **f, 0, 4096, &got), 0);
  EXPECT_EQ(got, content("big").substr(0, 4096));
  EXPECT_EQ(read_range(*fs, **f, 150000, 1), EIO);
  EXPECT_EQ(read_range(*fs, **f, 36 * 4096, 4096), EIO);
  EXPECT_EQ(read_range(*fs, **f, 140000, 20000), EIO);  // spans the bad block
  EXPECT_EQ(read_range(*fs, **f, 37 * 4096, 4096), 0);
  EXPECT_EQ(read_range(*fs, **f, 35 * 4096, 4096), 0);
}

TEST_F(VerifiedTest, FlipBeforeOpenIsEioAtOpenOrRead) {
  flip_byte("small", 4999);
  auto fs = mount(VerityMode::kOn);
  auto f = fs->open_file(ino(*fs, "small"), O_RDONLY);
  ASSERT_FALSE(f);
  EXPECT_EQ(errno_for(f.error()), EIO);
  // verity=off serves the object as it is.
  auto off_fs = mount(VerityMode::kOff);
  auto g = off_fs->open_file(ino(*off_fs, "small"), O_RDONLY);
  ASSERT_TRUE(g);
  EXPECT_FALSE((*g)->verified());
  std::string got;
  ASSERT_EQ(read_range(*off_fs, **g, 0, 8192, &got), 0);
  EXPECT_EQ(got.size(), 5000u);
  EXPECT_NE(got, content("small"));
}

TEST_F(VerifiedTest, CachedTreeStillCatchesLaterTampering) {
  auto fs = mount(VerityMode::kOn);
  { ASSERT_TRUE(fs->open_file(ino(*fs, "big"), O_RDONLY)); }
  flip_byte("big", 5);
  auto f = fs->open_file(ino(*fs, "big"), O_RDONLY);  // tree comes from the cache
  ASSERT_TRUE(f);
  EXPECT_EQ(read_range(*fs, **f, 0, 100), EIO);
  EXPECT_EQ(read_range(*fs, **f, 8192, 100), 0);
}

std::string str(const ContentCopy& c) {
  return std::string(reinterpret_cast<const char*>(c.data().data()), c.size);
}

// The copy an open hands over is the content the image names (the oracle: the bytes the object
// was written from), made only by the open that builds the tree, only when asked, only up to
// copy_max_bytes; reads still verify what they return.
TEST_F(VerifiedTest, FirstOpenWithCopyHoldsTheVerifiedContent) {
  auto fs = mount(VerityMode::kOn);
  ContentCopy copy;
  for (const char* name : {"small", "big"}) {  // one buffer, reused (it grows)
    auto f = fs->open_file(ino(*fs, name), O_RDONLY, &copy);
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_TRUE((*f)->verified());
    EXPECT_EQ(str(copy), content(name)) << name;
    std::string got;
    ASSERT_EQ(read_range(*fs, **f, 0, content(name).size(), &got), 0);
    EXPECT_EQ(got, content(name));
    // The tree is cached now: a later open reads nothing whole, so it has no copy to offer.
    auto again = fs->open_file(ino(*fs, name), O_RDONLY, &copy);
    ASSERT_TRUE(again);
    EXPECT_EQ(copy.size, 0u) << name;
  }
  // Files without a digest or inside the image: nothing to offer.
  auto plain = mount(VerityMode::kOn);
  for (const char* name : {"nodigest", "inline"}) {
    copy.size = 1;
    auto g = plain->open_file(ino(*plain, name), O_RDONLY, &copy);
    ASSERT_TRUE(g) << name;
    EXPECT_EQ(copy.size, 0u) << name;
  }
  // Above copy_max_bytes (big is 1.5 MiB) the tree is built from the file, without a copy.
  auto capped = mount(VerityMode::kOn, "", 1u << 20);
  ContentCopy b, s;
  ASSERT_TRUE(capped->open_file(ino(*capped, "big"), O_RDONLY, &b));
  ASSERT_TRUE(capped->open_file(ino(*capped, "small"), O_RDONLY, &s));
  EXPECT_EQ(b.size, 0u);
  EXPECT_EQ(str(s), content("small"));
}

// The copy goes no further than the size the image records (st_size, what the kernel reads up
// to), even when the object is longer: a page cache storing all of it would grow the file.
TEST_F(VerifiedTest, CopyStopsAtTheImageSize) {
  TempDir store, dir;
  const std::string content = random_bytes(9000, 9);
  testutil::TreeBuilder b(store.path());
  auto id = b.file(b.root(), "f", content);
  b.tree().node(id).size = 5000;  // the image says 5000 bytes; the object holds 9000
  const std::string image = dir / "image.cfs";
  auto fd = sys::open(image, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_TRUE(fd);
  auto r = erofs::write_image(b.tree(), {}, fd->get());
  if (!r && r.error().is(Errc::kUnsupportedFeature)) GTEST_SKIP() << r.error().message();
  ASSERT_TRUE(r) << r.error().message();
  Options o;
  o.basedirs = {store.path()};
  auto fs = Filesystem::open(image, o);
  ASSERT_TRUE(fs) << fs.error().message();
  auto st = (*fs)->lookup((*fs)->root(), "f");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_size, 5000);
  ContentCopy copy;
  auto f = (*fs)->open_file(st->st_ino, O_RDONLY, &copy);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(str(copy), content.substr(0, 5000));
}

// A copy is only ever offered for bytes that gave the image's digest: a flipped byte or a
// truncated object fails the open, as without the copy, and leaves nothing in the copy.
TEST_F(VerifiedTest, TamperedObjectGivesNoCopy) {
  flip_byte("small", 4999);
  ASSERT_EQ(::truncate(paths_["big"].c_str(), 100000), 0);
  auto fs = mount(VerityMode::kOn);
  for (const char* name : {"small", "big"}) {
    ContentCopy copy;
    auto f = fs->open_file(ino(*fs, name), O_RDONLY, &copy);
    ASSERT_FALSE(f) << name;
    EXPECT_EQ(errno_for(f.error()), EIO) << name;
    EXPECT_EQ(copy.size, 0u) << name;
  }
}

TEST_F(VerifiedTest, TruncationIsEio) {
  auto fs = mount(VerityMode::kRequire);
  auto f = fs->open_file(ino(*fs, "big"), O_RDONLY);
  ASSERT_TRUE(f);
  ASSERT_EQ(::truncate(paths_["big"].c_str(), 100000), 0);
  EXPECT_EQ(read_range(*fs, **f, 0, 4096), 0);
  EXPECT_EQ(read_range(*fs, **f, 98304, 4096), EIO);  // block 24 now ends early
  EXPECT_EQ(read_range(*fs, **f, 200000, 4096), EIO);
  // Reopen: the cached tree no longer fits the file.
  auto g = fs->open_file(ino(*fs, "big"), O_RDONLY);
  ASSERT_FALSE(g);
  EXPECT_EQ(errno_for(g.error()), EIO);
  auto fresh = mount(VerityMode::kOn);
  auto h = fresh->open_file(ino(*fresh, "big"), O_RDONLY);
  ASSERT_FALSE(h);
  EXPECT_EQ(errno_for(h.error()), EIO);
}

TEST_F(VerifiedTest, ModesForFilesWithoutDigest) {
  auto on = mount(VerityMode::kOn);
  auto f = on->open_file(ino(*on, "nodigest"), O_RDONLY);
  ASSERT_TRUE(f);
  EXPECT_FALSE((*f)->verified());
  EXPECT_FALSE((*f)->cacheable());
  std::string got;
  ASSERT_EQ(read_range(*on, **f, 0, 10000, &got), 0);
  EXPECT_EQ(got, content("nodigest"));

  auto req = mount(VerityMode::kRequire);
  auto g = req->open_file(ino(*req, "nodigest"), O_RDONLY);
  ASSERT_FALSE(g);
  EXPECT_EQ(errno_for(g.error()), EIO);
  auto inl = req->open_file(ino(*req, "inline"), O_RDONLY);  // not a metacopy file
  ASSERT_TRUE(inl);
  std::string hello;
  ASSERT_EQ(read_range(*req, **inl, 0, 100, &hello), 0);
  EXPECT_EQ(hello, "hello");
}

TEST_F(VerifiedTest, MissingObjectIsEnoentBeforeVerity) {
  for (auto mode : {VerityMode::kOff, VerityMode::kOn, VerityMode::kRequire}) {
    auto fs = mount(mode);
    auto st = fs->lookup(fs->root(), "missing");
    ASSERT_TRUE(st);  // lookup and stat never touch the object
    EXPECT_EQ(st->st_size, 9000);
    auto f = fs->open_file(st->st_ino, O_RDONLY);
    ASSERT_FALSE(f);
    EXPECT_EQ(errno_for(f.error()), ENOENT);
  }
}

TEST_F(VerifiedTest, PersistentTreeCacheIsReverified) {
  TempDir cache;
  {
    auto fs = mount(VerityMode::kOn, cache.path());
    ASSERT_TRUE(fs->open_file(ino(*fs, "big"), O_RDONLY));
    ASSERT_TRUE(fs->open_file(ino(*fs, "small"), O_RDONLY));
  }
  std::vector<std::string> saved;
  for (const auto& e : std::filesystem::directory_iterator(cache.path()))
    saved.push_back(e.path().string());
  ASSERT_EQ(saved.size(), 1u);  // only trees of files >= 1 MiB are worth saving
  {
    auto fs = mount(VerityMode::kOn, cache.path());
    auto f = fs->open_file(ino(*fs, "big"), O_RDONLY);
    ASSERT_TRUE(f);
    std::string got;
    ASSERT_EQ(read_range(*fs, **f, 1u << 20, 4096, &got), 0);
    EXPECT_EQ(got, content("big").substr(1u << 20, 4096));
  }
  // A damaged cache file is rejected and the tree rebuilt from the (intact) object.
  {
    auto fd = sys::open(saved[0], O_RDWR);
    ASSERT_TRUE(fd);
    auto st = sys::fstat(fd->get());
    std::byte b[1] = {std::byte{0x5a}};
    ASSERT_TRUE(sys::pwrite_all(fd->get(), b, static_cast<std::uint64_t>(st->st_size) - 1));
  }
  auto fs = mount(VerityMode::kOn, cache.path());
  auto f = fs->open_file(ino(*fs, "big"), O_RDONLY);
  ASSERT_TRUE(f) << f.error().message();
  std::string got;
  ASSERT_EQ(read_range(*fs, **f, 0, content("big").size(), &got), 0);
  EXPECT_EQ(got, content("big"));
}

// A provider standing in for a lazy one: it makes the missing object appear when asked, with
// the content it is given (the right one, or tampered bytes).
class WritingProvider final : public ObjectProvider {
 public:
  WritingProvider(std::string dir, std::string content)
      : dirs_(*store::ObjectDirs::open({dir})),
        dir_(std::move(dir)),
        content_(std::move(content)) {}
  Result<UniqueFd> open_object(std::string_view rel,
                               const std::optional<verity::Digest>& digest) const override {
    calls.emplace_back(rel, digest);
    auto fd = dirs_.open_object(rel);
    if (fd || !digest) return fd;
    std::filesystem::path path = dir_ + "/" + std::string(rel);
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content_;
    return dirs_.open_object(rel);
  }
  mutable std::vector<std::pair<std::string, std::optional<verity::Digest>>> calls;

 private:
  store::ObjectDirs dirs_;
  std::string dir_, content_;
};

TEST_F(VerifiedTest, ProviderGetsTheDigestAndCannotBypassVerification) {
  for (bool tamper : {false, true}) {
    std::string bytes = content("missing");
    if (tamper) bytes[100] ^= 1;
    std::filesystem::remove(paths_["missing"]);
    auto provider = std::make_shared<WritingProvider>(store_.path(), bytes);
    Options o;
    o.basedirs = {"/nonexistent"};  // ignored: the provider is asked
    o.objects = provider;
    o.verity = VerityMode::kRequire;
    auto fs = Filesystem::open(image_, o);
    ASSERT_TRUE(fs) << fs.error().message();
    auto f = (*fs)->open_file(ino(**fs, "missing"), O_RDONLY);
    ASSERT_EQ(provider->calls.size(), 1u);
    std::string rel = paths_["missing"].substr(store_.path().size() + 1);
    EXPECT_EQ(provider->calls[0].first, rel);
    ASSERT_TRUE(provider->calls[0].second);
    // The digest handed over is the one the verity module computes for the content.
    EXPECT_EQ(*provider->calls[0].second,
              verity::digest_bytes(std::as_bytes(std::span(content("missing")))));
    if (tamper) {
      ASSERT_FALSE(f);
      EXPECT_EQ(errno_for(f.error()), EIO);
      continue;
    }
    ASSERT_TRUE(f) << f.error().message();
    std::string got;
    ASSERT_EQ(read_range(**fs, **f, 0, 1 << 20, &got), 0);
    EXPECT_EQ(got, content("missing"));
  }
}

}  // namespace
}  // namespace cfs::vfs

namespace cfs::vfs {
namespace {

// A provider like the lazy one: objects come from the store, and the tree of an object comes
// handed over with the bytes it was hashed from (ObjectProvider::take_tree), once, as the test
// sets them.
class HandOverProvider final : public ObjectProvider {
 public:
  explicit HandOverProvider(const std::string& store)
      : store_(store_provider(*store::ObjectDirs::open({store}))) {}
  Result<UniqueFd> open_object(std::string_view rel,
                               const std::optional<verity::Digest>& digest) const override {
    return store_->open_object(rel, digest);
  }
  Prebuilt take_tree(const verity::Digest& digest) const override {
    ++taken;
    auto it = given.find(digest.hex());
    if (it == given.end()) return {};
    Prebuilt p = std::move(it->second);
    given.erase(it);
    return p;
  }
  /// Hands over the tree of `tree_of` (as built by the verity module) with `bytes`.
  void give(const verity::Digest& d, const std::string& tree_of, const std::string& bytes) {
    auto t = verity::build_merkle_tree(std::as_bytes(std::span(tree_of)), verity::Params{});
    ASSERT_TRUE(t) << t.error().message();
    auto b = std::make_shared<HugeBytes>(bytes.size());
    std::memcpy(b->data(), bytes.data(), bytes.size());
    given[d.hex()] = Prebuilt{std::make_shared<const verity::MerkleTree>(std::move(*t)), b};
  }
  mutable std::map<std::string, Prebuilt> given;
  mutable int taken = 0;

 private:
  std::unique_ptr<ObjectProvider> store_;
};

class HandOverTest : public VerifiedTest {
 protected:
  std::unique_ptr<Filesystem> mount_with(std::shared_ptr<HandOverProvider> p) {
    Options o;
    o.objects = std::move(p);
    auto fs = Filesystem::open(image_, o);
    EXPECT_TRUE(fs) << fs.error().message();
    return fs ? std::move(*fs) : nullptr;
  }
  verity::Digest digest(const std::string& name) {
    verity::Hasher h;
    h.update(std::as_bytes(std::span(content(name))));
    return h.finish();
  }
};

// The bytes handed over with a tree that gives the image's digest are the open's copy as they
// are: neither read from the object file nor hashed again. The oracle: the object file has a
// flipped byte, yet the copy is the content the test wrote, and a read of the file itself is
// still checked against the handed-over tree (EIO at the flipped block).
TEST_F(HandOverTest, BytesHandedOverWithTheTreeAreTheCopy) {
  flip_byte("small", 100);
  auto p = std::make_shared<HandOverProvider>(store_.path());
  p->give(digest("small"), content("small"), content("small"));
  auto fs = mount_with(p);
  ContentCopy copy;
  auto f = fs->open_file(ino(*fs, "small"), O_RDONLY, &copy);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(p->taken, 1);
  ASSERT_TRUE(copy.given);
  EXPECT_EQ(str(copy), content("small"));
  EXPECT_EQ(read_range(*fs, **f, 0, 100), EIO);
  // Handed over once: the next open finds the tree cached and offers no copy.
  auto again = fs->open_file(ino(*fs, "small"), O_RDONLY, &copy);
  ASSERT_TRUE(again);
  EXPECT_EQ(copy.size, 0u);
  EXPECT_FALSE(copy.given);
  // An open that asks for no copy adopts the tree and leaves the bytes.
  auto q = std::make_shared<HandOverProvider>(store_.path());
  q->give(digest("big"), content("big"), content("big"));
  auto fs2 = mount_with(q);
  auto g = fs2->open_file(ino(*fs2, "big"), O_RDONLY);
  ASSERT_TRUE(g);
  EXPECT_EQ(q->taken, 1);
  std::string got;
  ASSERT_EQ(read_range(*fs2, **g, 1u << 20, 5000, &got), 0);
  EXPECT_EQ(got, content("big").substr(1u << 20, 5000));
}

// Bytes whose tree is not the image's object are refused with it: the open builds the tree
// from the object file and its copy is what it read (the content the test wrote), not the
// bytes handed over. Bytes of another length than the adopted tree's were not (only) what it
// was built from: the tree is used, the bytes are not.
TEST_F(HandOverTest, BytesWithATreeThatDoesNotMatchAreRefused) {
  const std::string other = random_bytes(5000, 77);
  auto p = std::make_shared<HandOverProvider>(store_.path());
  p->give(digest("small"), other, other);                        // another object's tree and bytes
  p->give(digest("big"), content("big"), content("big") + "x");  // one byte more than hashed
  auto fs = mount_with(p);
  ContentCopy copy;
  auto f = fs->open_file(ino(*fs, "small"), O_RDONLY, &copy);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(p->taken, 1);
  EXPECT_FALSE(copy.given);
  EXPECT_EQ(str(copy), content("small"));
  ContentCopy big;
  auto g = fs->open_file(ino(*fs, "big"), O_RDONLY, &big);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(p->taken, 2);
  EXPECT_EQ(big.size, 0u);
  EXPECT_FALSE(big.given);
  std::string got;
  ASSERT_EQ(read_range(*fs, **g, 0, content("big").size(), &got), 0);
  EXPECT_EQ(got, content("big"));
}

}  // namespace
}  // namespace cfs::vfs

namespace cfs::vfs {
namespace {

// A provider that records what is read of its objects (ObjectProvider::on_read), as the lazy
// mount's trace does, when it says it wants to.
class ReadsProvider final : public ObjectProvider {
 public:
  ReadsProvider(const std::string& store, bool wants)
      : store_(store_provider(*store::ObjectDirs::open({store}))), wants_(wants) {}
  Result<UniqueFd> open_object(std::string_view rel,
                               const std::optional<verity::Digest>& digest) const override {
    return store_->open_object(rel, digest);
  }
  bool wants_reads() const override { return wants_; }
  void on_read(const verity::Digest& d, std::uint64_t off, std::size_t len) const override {
    reads.push_back({d.hex(), off, len});
  }
  struct Read {
    std::string digest;
    std::uint64_t off;
    std::size_t len;
    bool operator==(const Read&) const = default;
  };
  mutable std::vector<Read> reads;

 private:
  std::unique_ptr<ObjectProvider> store_;
  bool wants_;
};

// Each read served is reported with the object's digest (the verity module's digest of the
// content the test wrote), the offset asked for and the bytes returned (clamped at the end of
// the file); a read that fails verification, a read at or past the end, the reads of a mount
// with verity=off (no digest to name) and any read when the provider does not want them are not
// reported.
TEST_F(VerifiedTest, ReadsAreReportedToAProviderThatWantsThem) {
  const std::string& big = content("big");
  const std::string want = verity::digest_bytes(std::as_bytes(std::span(big))).hex();
  for (auto mode : {VerityMode::kOn, VerityMode::kOff}) {
    for (bool wants : {true, false}) {
      auto p = std::make_shared<ReadsProvider>(store_.path(), wants);
      Options o;
      o.objects = p;
      o.verity = mode;
      auto fs = Filesystem::open(image_, o);
      ASSERT_TRUE(fs) << fs.error().message();
      auto f = (*fs)->open_file(ino(**fs, "big"), O_RDONLY);
      ASSERT_TRUE(f) << f.error().message();
      std::string got;
      ASSERT_EQ(read_range(**fs, **f, 5000, 10000, &got), 0);
      ASSERT_EQ(read_range(**fs, **f, big.size() - 100, 4096, &got), 0);
      ASSERT_EQ(read_range(**fs, **f, big.size(), 4096, &got), 0);
      EXPECT_EQ(got, big.substr(5000, 10000) + big.substr(big.size() - 100));
      if (!wants || mode == VerityMode::kOff) {  // verity=off: no digest, nothing to name
        EXPECT_TRUE(p->reads.empty());
        continue;
      }
      std::vector<ReadsProvider::Read> expect = {{want, 5000, 10000},
                                                 {want, big.size() - 100, 100}};
      EXPECT_EQ(p->reads, expect);
    }
  }
  // A block that fails verification is EIO, and no read is reported.
  auto p = std::make_shared<ReadsProvider>(store_.path(), true);
  Options o;
  o.objects = p;
  auto fs = Filesystem::open(image_, o);
  ASSERT_TRUE(fs) << fs.error().message();
  auto f = (*fs)->open_file(ino(**fs, "big"), O_RDONLY);
  ASSERT_TRUE(f) << f.error().message();
  flip_byte("big", 150000);  // block 36, after the open built the tree
  EXPECT_EQ(read_range(**fs, **f, 150000, 10), EIO);
  EXPECT_TRUE(p->reads.empty());
}

}  // namespace
}  // namespace cfs::vfs
