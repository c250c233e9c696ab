// SPDX-License-Identifier: Apache-2.0
// Repository layout, names, meta.json handling and locking, on whatever filesystem /tmp is
// (insecure repositories: no fs-verity needed).
#include "cfs/repo/repository.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <thread>

#include "cfs/repo/lazy.h"

namespace cfs::repo {
namespace {

namespace fs = std::filesystem;

class RepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cfs-repo-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/r";
  }
  void TearDown() override { fs::remove_all(dir_); }

  Repository init(verity::HashAlg alg = verity::HashAlg::kSha256) {
    InitOptions o;
    o.algorithm = alg;
    o.insecure = true;
    auto r = Repository::init(path_, o);
    EXPECT_TRUE(r) << r.error().message();
    return std::move(*r);
  }

  static std::string read(const std::string& p) {
    std::string out(fs::file_size(p), '\0');
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (!f) return "";
    out.resize(std::fread(out.data(), 1, out.size(), f));
    std::fclose(f);
    return out;
  }
  static void write(const std::string& p, const std::string& data) {
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p, std::ios::binary) << data;
  }

  // A fake image: images/<hex> -> ../objects/.. with some object content.
  verity::Digest add_image(Repository& r, char fill) {
    auto d = r.parse_digest(std::string(64, fill));
    EXPECT_TRUE(d);
    write(path_ + "/" + r.object_path(*d), "x");
    EXPECT_TRUE(r.link_image(*d));
    return *d;
  }

  std::string dir_, path_;
};

TEST_F(RepoTest, SyncObjectSyncsACommittedObjectAndNamesAMissingOne) {
  Repository r = init();
  auto obj = r.create_object();
  ASSERT_TRUE(obj) << obj.error().message();
  const std::string data = "one object";
  ASSERT_TRUE(obj->write(std::as_bytes(std::span(data))));
  auto d = r.commit_object(std::move(*obj));
  ASSERT_TRUE(d) << d.error().message();
  auto st = r.sync_object(*d);
  EXPECT_TRUE(st) << st.error().message();
  // An object that was never committed: an error naming the objects directory and the object.
  auto missing = r.parse_digest(std::string(64, 'e'));
  ASSERT_TRUE(missing);
  auto bad = r.sync_object(*missing);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find(path_ + "/objects"), std::string::npos)
      << bad.error().message();
  EXPECT_NE(bad.error().message().find(missing->hex().substr(2)), std::string::npos)
      << bad.error().message();
}

// need_object(): false for an object that is there (listed with its fan-out directory, or
// committed by this process), true once for one that is not; an object another writer adds
// after the listing is kept when ours is committed (linkat's EEXIST).
TEST_F(RepoTest, NeedObjectAndAnotherWritersObject) {
  Repository r = init();
  // Content A: committed through the repository, so its digest is the kernel-independent
  // userspace one; B: the same fan-out directory as a file put there by "someone else".
  auto commit = [&](const std::string& data) {
    auto obj = r.create_object();
    EXPECT_TRUE(obj);
    EXPECT_TRUE(obj->write(std::as_bytes(std::span(data))));
    auto d = r.commit_object(std::move(*obj));
    EXPECT_TRUE(d) << d.error().message();
    return *d;
  };
  const std::string a_data = "object a";
  const auto a = verity::digest_bytes(std::as_bytes(std::span(a_data)));
  // There before the fan-out directory is first listed: not needed.
  write(path_ + "/" + r.object_path(a), a_data);
  auto need_a = r.need_object(a);
  ASSERT_TRUE(need_a) << need_a.error().message();
  EXPECT_FALSE(*need_a);
  std::string b_data;
  verity::Digest b;
  for (int i = 0;; ++i) {
    b_data = "object b " + std::to_string(i);
    b = verity::digest_bytes(std::as_bytes(std::span(b_data)));
    if (b.bytes[0] == a.bytes[0]) break;
  }
  auto need_b = r.need_object(b);
  ASSERT_TRUE(need_b);
  EXPECT_TRUE(*need_b);
  // Someone else adds B now; ours still commits and theirs stays.
  const std::string b_path = path_ + "/" + r.object_path(b);
  write(b_path, b_data);
  struct stat before;
  ASSERT_EQ(::stat(b_path.c_str(), &before), 0);
  EXPECT_EQ(commit(b_data), b);
  struct stat after;
  ASSERT_EQ(::stat(b_path.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  // Asked again, B is looked up: there.
  auto again = r.need_object(b);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  // A new content in a new fan-out directory: needed, then committed, then not needed.
  std::string c_data;
  verity::Digest c;
  for (int i = 0;; ++i) {
    c_data = "object c " + std::to_string(i);
    c = verity::digest_bytes(std::as_bytes(std::span(c_data)));
    if (c.bytes[0] != a.bytes[0]) break;
  }
  auto need_c = r.need_object(c);
  ASSERT_TRUE(need_c);
  EXPECT_TRUE(*need_c);
  EXPECT_EQ(commit(c_data), c);
  EXPECT_EQ(read(path_ + "/" + r.object_path(c)), c_data);
  auto need_c2 = r.need_object(c);
  ASSERT_TRUE(need_c2);
  EXPECT_FALSE(*need_c2);
  // A digest of another algorithm names nothing here.
  EXPECT_FALSE(r.need_object(verity::Digest::zero(verity::HashAlg::kSha512)));
  EXPECT_TRUE(r.sync());
}

TEST_F(RepoTest, CommittedObjectsStartWritebackEvery64MiB) {
  // Bytes written through NewObject::write count once committed; 2 x 33 MiB cross 64 MiB once.
  Repository r = init();
  std::string data(33u << 20, 'a');
  for (char fill : {'a', 'b'}) {
    data.front() = fill;
    auto obj = r.create_object();
    ASSERT_TRUE(obj) << obj.error().message();
    ASSERT_TRUE(obj->write(std::as_bytes(std::span(data))));
    auto d = r.commit_object(std::move(*obj));
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_EQ(read(path_ + "/" + r.object_path(*d)), data);
  }
  for (int i = 0; i < 10000 && r.writeback_runs() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(r.writeback_runs(), 1U);
  EXPECT_TRUE(r.sync());
}

TEST_F(RepoTest, InitWritesMetaAndIsIdempotent) {
  Repository r = init(verity::HashAlg::kSha512);
  EXPECT_EQ(read(path_ + "/meta.json"), Meta::make(verity::HashAlg::kSha512, 1).to_json());
  EXPECT_TRUE(fs::is_directory(path_ + "/objects"));
  EXPECT_EQ(fs::status(path_).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_FALSE(r.secure());
  EXPECT_TRUE(r.access().writable);
  // The same settings again: fine. Different ones: refused, naming both.
  InitOptions same;
  same.algorithm = verity::HashAlg::kSha512;
  same.insecure = true;
  EXPECT_TRUE(Repository::init(path_, same));
  InitOptions other = same;
  other.erofs_version = 0;
  auto e = Repository::init(path_, other);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("EROFS format 1, not"), std::string::npos)
      << e.error().message();
}

TEST_F(RepoTest, OpenRefusesFutureVersionAndIncompatFeatures) {
  write(path_ + "/meta.json", R"({"version": 2, "algorithm": "fsverity-sha256-12"})");
  auto r = Repository::open(path_);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Errc::kUnsupportedFeature));
  write(path_ + "/meta.json",
        R"({"version": 1, "algorithm": "fsverity-sha256-12",
            "features": {"incompatible": ["new_layout"]}})");
  r = Repository::open(path_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("new_layout"), std::string::npos);
}

TEST_F(RepoTest, UnknownRoCompatOpensReadOnly) {
  write(path_ + "/meta.json",
        R"({"version": 1, "algorithm": "fsverity-sha256-12",
            "features": {"read-only-compatible": ["v1_erofs", "later"]}})");
  auto r = Repository::open(path_);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->access().writable);
  OpenOptions w;
  w.write = true;
  auto rw = Repository::open(path_, w);
  ASSERT_FALSE(rw);
  EXPECT_NE(rw.error().message().find("later"), std::string::npos) << rw.error().message();
}

TEST_F(RepoTest, OldRepositoryAlgorithmFromObjectNames) {
  write(path_ + "/objects/ab/" + std::string(62, 'c'), "x");
  auto r = Repository::open(path_);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->legacy());
  EXPECT_EQ(r->algorithm(), verity::HashAlg::kSha256);
  OpenOptions w;
  w.write = true;
  EXPECT_FALSE(Repository::open(path_, w));

  fs::remove_all(path_);
  write(path_ + "/objects/0f/" + std::string(126, 'e'), "x");
  r = Repository::open(path_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->algorithm(), verity::HashAlg::kSha512);
  // init upgrades it, keeping the algorithm of its objects; another algorithm is refused.
  InitOptions o;
  o.insecure = true;
  o.algorithm = verity::HashAlg::kSha256;
  EXPECT_FALSE(Repository::init(path_, o));
  o.algorithm.reset();
  auto up = Repository::init(path_, o);
  ASSERT_TRUE(up) << up.error().message();
  EXPECT_FALSE(up->legacy());
  EXPECT_EQ(up->algorithm(), verity::HashAlg::kSha512);
}

TEST_F(RepoTest, NotARepository) {
  fs::create_directories(path_);
  auto r = Repository::open(path_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("cfs repo init"), std::string::npos);
  EXPECT_FALSE(Repository::open(dir_ + "/absent"));
}

TEST_F(RepoTest, NamesAreRelativeSymlinksLikeComposefsRs) {
  Repository r = init();
  verity::Digest img = add_image(r, 'a');
  std::string hex = img.hex();
  EXPECT_EQ(fs::read_symlink(path_ + "/images/" + hex).string(),
            "../objects/aa/" + std::string(62, 'a'));
  ASSERT_TRUE(r.set_ref(Kind::kImage, "v1", hex));
  ASSERT_TRUE(r.set_ref(Kind::kImage, "os/stable/v2", hex));
  EXPECT_EQ(fs::read_symlink(path_ + "/images/refs/v1").string(), "../" + hex);
  EXPECT_EQ(fs::read_symlink(path_ + "/images/refs/os/stable/v2").string(), "../../../" + hex);
  EXPECT_EQ(*r.resolve_image("v1"), img);
  EXPECT_EQ(*r.resolve_image("refs/os/stable/v2"), img);
  EXPECT_EQ(*r.resolve_image(hex), img);
  EXPECT_EQ(*r.resolve_image("sha256:" + hex), img);
  auto refs = r.list_refs(Kind::kImage);
  ASSERT_TRUE(refs);
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].name, "os/stable/v2");
  EXPECT_EQ((*refs)[0].target, hex);
  EXPECT_EQ((*refs)[1].name, "v1");

  // Retagging replaces; untagging removes the name and the directories it leaves empty.
  verity::Digest img2 = add_image(r, 'b');
  ASSERT_TRUE(r.set_ref(Kind::kImage, "v1", img2.hex()));
  EXPECT_EQ(*r.resolve_image("v1"), img2);
  ASSERT_TRUE(r.remove_ref(Kind::kImage, "os/stable/v2"));
  EXPECT_FALSE(fs::exists(path_ + "/images/refs/os"));
  EXPECT_FALSE(r.resolve_image("os/stable/v2"));
  EXPECT_FALSE(r.remove_ref(Kind::kImage, "os/stable/v2"));
}

TEST_F(RepoTest, BadNamesAreRefused) {
  Repository r = init();
  std::string hex = add_image(r, 'a').hex();
  for (const char* bad : {"", "/abs", "a//b", "a/./b", "../x", "a/..", "trailing/", ".symlink-x"})
    EXPECT_FALSE(r.set_ref(Kind::kImage, bad, hex)) << bad;
  EXPECT_FALSE(r.set_ref(Kind::kImage, "ok", std::string(64, 'f')));  // no such image
}

TEST_F(RepoTest, RefsPointingOutsideAreNotFollowed) {
  Repository r = init();
  fs::create_directories(path_ + "/images/refs");
  fs::create_symlink("/etc", path_ + "/images/refs/evil");
  fs::create_symlink("../../../" + std::string(64, 'a'), path_ + "/images/refs/up");
  EXPECT_TRUE(r.resolve_image("evil").error().is(Errc::kCorruptImage));
  EXPECT_TRUE(r.resolve_image("up").error().is(Errc::kCorruptImage));
}

TEST_F(RepoTest, OpenObjectStaysInsideAndNeverBlocks) {
  Repository r = init();
  auto d = r.parse_digest(std::string(64, '1'));
  ASSERT_TRUE(d);
  std::string obj = path_ + "/" + r.object_path(*d);
  fs::create_directories(fs::path(obj).parent_path());
  ASSERT_EQ(::mkfifo(obj.c_str(), 0644), 0);
  auto fifo = r.open_object(*d);
  ASSERT_FALSE(fifo);
  EXPECT_TRUE(fifo.error().is(Errc::kCorruptImage));
  fs::remove(obj);
  fs::create_symlink("/etc/passwd", obj);
  EXPECT_TRUE(r.open_object(*d).error().is(Errc::kObjectMissing));
  fs::remove(obj);
  write(obj, "content");
  EXPECT_TRUE(r.open_object(*d));
}

TEST_F(RepoTest, ExclusiveWaitsForShared) {
  init();
  auto shared = Repository::open(path_);
  ASSERT_TRUE(shared);
  std::atomic<bool> waiting{false}, opened{false};
  std::thread t([&] {
    OpenOptions o;
    o.lock = LockMode::kExclusive;
    o.on_wait = [&] { waiting = true; };
    auto ex = Repository::open(path_, o);
    opened = ex.has_value();
  });
  while (!waiting) std::this_thread::yield();
  EXPECT_FALSE(opened);
  { Repository gone = std::move(*shared); }
  t.join();
  EXPECT_TRUE(opened);
}

TEST(RepoDefault, EnvironmentThenPerUser) {
  ::setenv("CFS_REPO", "/x/y", 1);
  EXPECT_EQ(default_path(), "/x/y");
  ::unsetenv("CFS_REPO");
  EXPECT_EQ(default_path(), ::geteuid() == 0
                                ? "/sysroot/composefs"
                                : std::string(::getenv("HOME")) + "/.var/lib/composefs");
}

}  // namespace
}  // namespace cfs::repo

namespace cfs::repo {
namespace {

TEST_F(RepoTest, LazyPartsAreWholeFilesBesideTheImage) {
  Repository r = init();
  verity::Digest img = add_image(r, 'c');
  EXPECT_FALSE(is_lazy(r, img));
  auto none = read_lazy_part(r, img, "index");
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(*none);
  EXPECT_FALSE(has_lazy_part(r, img, "index"));
  ASSERT_TRUE(write_lazy_part(r, img, "index", "{\"objects\": []}"));
  EXPECT_TRUE(has_lazy_part(r, img, "index"));
  EXPECT_FALSE(has_lazy_part(r, img, "loader-graph"));
  EXPECT_FALSE(is_lazy(r, img));  // only the source part marks it
  ASSERT_TRUE(write_lazy_part(r, img, kLazySourcePart, "first"));
  ASSERT_TRUE(write_lazy_part(r, img, kLazySourcePart, "second"));  // replaced whole
  EXPECT_TRUE(is_lazy(r, img));
  EXPECT_EQ(read(path_ + "/cfs-lazy/" + img.hex() + ".source"), "second");
  auto idx = read_lazy_part(r, img, "index");
  ASSERT_TRUE(idx && *idx);
  EXPECT_EQ(**idx, "{\"objects\": []}");
  // No temporary file is left beside them.
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(path_ + "/cfs-lazy")) {
    (void)e;
    ++n;
  }
  EXPECT_EQ(n, 2u);

  // gc's sweep: parts of images that are gone go, the others stay.
  auto gone = r.parse_digest(std::string(64, 'd'));
  ASSERT_TRUE(gone);
  ASSERT_TRUE(write_lazy_part(r, *gone, kLazySourcePart, "orphan"));
  auto removed = prune_lazy_parts(r);
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_EQ(*removed, 1u);
  EXPECT_TRUE(is_lazy(r, img));
  EXPECT_FALSE(is_lazy(r, *gone));
  ASSERT_TRUE(remove_lazy_part(r, img, "index"));
  EXPECT_FALSE(has_lazy_part(r, img, "index"));
}

TEST_F(RepoTest, LazyMarkersGoAndFetchLocksExclude) {
  Repository r = init();
  verity::Digest img = add_image(r, 'c');
  ASSERT_TRUE(write_lazy_part(r, img, kLazySourcePart, "src"));
  ASSERT_TRUE(remove_lazy_part(r, img, kLazySourcePart));
  EXPECT_FALSE(is_lazy(r, img));
  ASSERT_TRUE(remove_lazy_part(r, img, kLazySourcePart));  // none: nothing to do

  // A second fetcher of one object waits until the first released it; the file then goes.
  auto obj = r.parse_digest(std::string(64, 'e'));
  ASSERT_TRUE(obj);
  const std::string lock_path = path_ + "/cfs-lazy/" + obj->hex() + ".fetch";
  std::atomic<bool> released{false}, second_held{false};
  std::optional<FetchLock> first;
  {
    auto l = lock_object_fetch(r, *obj);
    ASSERT_TRUE(l) << l.error().message();
    first.emplace(std::move(*l));
  }
  EXPECT_TRUE(fs::exists(lock_path));
  std::thread second([&] {
    auto l = lock_object_fetch(r, *obj);
    EXPECT_TRUE(l);
    EXPECT_TRUE(released.load());
    second_held = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(second_held.load());
  released = true;
  first.reset();
  second.join();
  EXPECT_TRUE(second_held.load());
  EXPECT_FALSE(fs::exists(lock_path));
}

}  // namespace
}  // namespace cfs::repo
