// SPDX-License-Identifier: Apache-2.0
// The redirect slimming transform (erofs/slim.h). Oracles: the original image bytes (the
// rebuild must give them back exactly), the reader's view of each slimmed image's xattrs,
// tree::object_path for the spelling, and images built by upstream (composefs 1.0.8's
// mkcomposefs, CFS_REF_MKCOMPOSEFS, and the composefs-assets reference outputs).
#include "cfs/erofs/slim.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/erofs/writer.h"
#include "cfs/overlay/xattr.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/sys.h"
#include "testutil/temp_dir.h"
#include "testutil/tree_builder.h"

namespace cfs::erofs {
namespace {

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}
std::span<std::byte> as_writable(std::string& s) {
  return std::as_writable_bytes(std::span(s.data(), s.size()));
}

std::string write(const Tree& tree) {
  auto fd = sys::memfd_create("slim-test");
  EXPECT_TRUE(fd);
  auto r = write_image(tree, {}, fd->get());
  EXPECT_TRUE(r) << r.error().message();
  EXPECT_EQ(::lseek(fd->get(), 0, SEEK_SET), 0);
  auto bytes = sys::read_fd(fd->get(), "slim-test");
  EXPECT_TRUE(bytes);
  return std::string(bytes->begin(), bytes->end());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  std::string out(static_cast<std::size_t>(f.tellg()), '\0');
  f.seekg(0);
  f.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

// `files` files with objects (with `shared`, the last of the same content as the first: one
// object, whose xattrs the writer shares), a file without a digest, an inline file, a symlink,
// nested directories.
std::string sample(verity::HashAlg alg, std::size_t files = 6, bool shared = false) {
  testutil::TreeBuilder b("", alg);
  const auto usr = b.dir(b.root(), "usr");
  const auto lib = b.dir(usr, "lib");
  for (std::size_t i = 0; i < files; ++i)
    b.file(i % 2 ? lib : usr, "f" + std::to_string(i),
           "content " + std::to_string(shared ? i % (files - 1) : i));
  b.file(usr, "nodigest", "no digest recorded", {.digest = false});
  b.inline_file(usr, "inline", "small");
  b.symlink(usr, "link", "lib/f1");
  return write(b.tree());
}

// The slimmed image's redirect values, by the reader: each is the zeros slim left or the
// object path of the inode's metacopy digest, never anything else. Returns how many are zeros.
std::size_t check_slimmed(const std::string& slim, const RedirectTable& t) {
  auto img = Image::from_bytes(as_bytes(slim));
  EXPECT_TRUE(img) << img.error().message();
  std::size_t zeros = 0;
  std::vector<std::uint64_t> dirs{img->root_nid()};
  for (std::size_t i = 0; i < dirs.size(); ++i) {
    auto entries = img->readdir(dirs[i]);
    EXPECT_TRUE(entries);
    for (const auto& e : *entries) {
      if (e.name == "." || e.name == "..") continue;
      if (e.file_type == FileType::kDirectory) dirs.push_back(e.nid);
      auto x = img->xattrs(e.nid);
      EXPECT_TRUE(x);
      for (const auto& a : *x)
        if (a.name == overlay::kRedirect && a.value == std::string(t.value_size(), '\0')) ++zeros;
    }
  }
  return zeros;
}

void expect_round_trip(const std::string& original, std::size_t expected_slimmed,
                       const std::string& what) {
  SCOPED_TRACE(what);
  auto s = slim_redirects(as_bytes(original));
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->table.entries.size(), expected_slimmed);
  EXPECT_EQ(s->erofs.size(), original.size());
  if (expected_slimmed) {
    EXPECT_TRUE(s->erofs != original);
  }
  // Hard links share an inode: count distinct zeroed values by offset.
  EXPECT_GE(check_slimmed(s->erofs, s->table), expected_slimmed ? std::size_t{1} : 0);
  const std::string doc = encode_redirect_table(s->table);
  auto t = parse_redirect_table(doc, s->erofs.size(), "table");
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(*t, s->table);
  std::string rebuilt = s->erofs;
  auto st = rebuild_redirects(as_writable(rebuilt), *t, "rebuild");
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_TRUE(rebuilt == original) << "rebuild(slim(x)) != x";
}

TEST(Slim, RoundTripsWriterImages) {
  for (auto alg : {verity::HashAlg::kSha256, verity::HashAlg::kSha512}) {
    const std::string name = alg == verity::HashAlg::kSha256 ? "sha256" : "sha512";
    // The 6 files with a digest, and only those.
    expect_round_trip(sample(alg), 6, name);
    // The writer puts the two files' values of one content in the shared table, before the
    // inodes that hold the other files' digests: those values are left (a digest must come
    // before its value), the rest are slimmed, and the rebuild is exact all the same.
    expect_round_trip(sample(alg, 6, true), 4, name + " shared");
  }
}

TEST(Slim, ValuesAreTheObjectPathOfTheDigest) {
  const std::string img = sample(verity::HashAlg::kSha512);
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s);
  ASSERT_FALSE(s->table.entries.empty());
  for (const auto& e : s->table.entries) {
    verity::Digest d = verity::Digest::zero(verity::HashAlg::kSha512);
    std::memcpy(d.bytes.data(), img.data() + e.digest, d.size);
    EXPECT_EQ(img.substr(e.value, s->table.value_size()), "/" + tree::object_path(d));
  }
}

TEST(Slim, LeavesRedirectsThatAreNotTheDigestsPath) {
  testutil::TreeBuilder b("", verity::HashAlg::kSha512);
  const auto n = b.file(b.root(), "a", "alpha");
  b.file(b.root(), "b", "bravo");
  // a's redirect names another object: the same length, not its own digest's path.
  b.tree().node(n).payload = tree::object_path(b.digest_of("charlie"));
  const std::string img = write(b.tree());
  expect_round_trip(img, 1, "one of two");
}

TEST(Slim, AnImageWithoutObjectsIsUnchanged) {
  testutil::TreeBuilder b;
  b.inline_file(b.root(), "a", "alpha");
  const std::string img = write(b.tree());
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->table.entries.empty());
  EXPECT_TRUE(s->erofs == img);
  expect_round_trip(img, 0, "no objects");
}

TEST(Slim, RoundTripsUpstreamReferenceImages) {
  const std::string dir =
      std::string(CFS_SHARED_DIR) + "/compat/composefs-assets/reference-outputs";
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".cfs") paths.push_back(e.path().string());
  if (paths.empty()) GTEST_SKIP() << "no assets in " << dir;
  // Their files record no digest (a payload only, `composefs-info dump`'s DIGEST "-"): nothing
  // to slim, and each image comes back as it was.
  for (const auto& p : paths) {
    SCOPED_TRACE(p);
    const std::string img = read_file(p);
    auto s = slim_redirects(as_bytes(img));
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_TRUE(s->table.entries.empty());
    EXPECT_TRUE(s->erofs == img);
    std::string rebuilt = s->erofs;
    auto t = parse_redirect_table(encode_redirect_table(s->table), img.size(), "table");
    ASSERT_TRUE(t) << t.error().message();
    ASSERT_TRUE(rebuild_redirects(as_writable(rebuilt), *t, "rebuild"));
    EXPECT_TRUE(rebuilt == img);
  }
}

// composefs 1.0.8's mkcomposefs, from a dump: its writer's xattr order and layout.
TEST(Slim, RoundTripsMkcomposefsImages) {
  const char* env = std::getenv("CFS_REF_MKCOMPOSEFS");
  const std::string mk = env ? env : "/work/ref/composefs/build/tools/mkcomposefs";
  if (!std::filesystem::exists(mk)) GTEST_SKIP() << "no " << mk;
  testutil::TempDir tmp;
  const std::string dump = tmp.path() + "/dump", out = tmp.path() + "/image.cfs";
  {
    testutil::TreeBuilder b;  // its digests: SHA-256, what mkcomposefs 1.0.8 writes
    std::ofstream f(dump);
    f << "/ 4096 40755 3 0 0 0 0.0 - - -\n/d 4096 40755 2 0 0 0 0.0 - - -\n";
    for (int i = 0; i < 40; ++i) {
      const auto d = b.digest_of("file " + std::to_string(i % 30));
      f << (i % 2 ? "/d/f" : "/f") << i << " 7 100644 1 0 0 0 0.0 " << tree::object_path(d) << " - "
        << d.hex() << " user.x=" << i << "\n";
    }
  }
  const std::string cmd = mk + " --from-file " + dump + " " + out + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  // The 20 files of a content of their own; the 10 pairs' values are shared, and mkcomposefs
  // puts them where no digest precedes them: left, the rebuild exact all the same.
  expect_round_trip(read_file(out), 20, "mkcomposefs");
}

TEST(Slim, StreamedRebuildGivesTheOriginalInAnyPieces) {
  const std::string img = sample(verity::HashAlg::kSha512, 40);
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s);
  ASSERT_EQ(s->table.entries.size(), 40u);
  // Pieces of 1, 7, 64, 130, 4096 bytes and one piece: values and digests cut every way.
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{130},
                           std::size_t{4096}, img.size()}) {
    SCOPED_TRACE(step);
    RedirectRebuilder r(s->table, "stream");
    std::string out;
    for (std::size_t at = 0; at < s->erofs.size(); at += step) {
      auto piece = r.feed(as_bytes(s->erofs).subspan(at, std::min(step, s->erofs.size() - at)));
      ASSERT_TRUE(piece) << piece.error().message();
      out.append(reinterpret_cast<const char*>(piece->data()), piece->size());
    }
    ASSERT_TRUE(r.finish());
    EXPECT_TRUE(out == img);
  }
  // Cut short: the values after the cut are reported.
  RedirectRebuilder r(s->table, "short");
  ASSERT_TRUE(r.feed(as_bytes(s->erofs).first(s->table.entries[39].value + 3)));
  auto st = r.finish();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("short: redirect 39"), std::string::npos)
      << st.error().message();
  // A value that is not zeros.
  std::string bad = s->erofs;
  bad[s->table.entries[20].value + 100] = 1;
  RedirectRebuilder r2(s->table, "bad");
  auto piece = r2.feed(as_bytes(bad));
  ASSERT_FALSE(piece);
  EXPECT_NE(piece.error().message().find("bad: redirect 20"), std::string::npos);
}

TEST(Slim, ParseRefusesBadDocumentsNamingTheField) {
  const std::string img = sample(verity::HashAlg::kSha512);
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s);
  const std::string good = encode_redirect_table(s->table);
  const std::uint64_t size = img.size();
  auto refused = [&](const std::string& doc, std::uint64_t image_size, const std::string& needle) {
    auto t = parse_redirect_table(doc, image_size, "T");
    ASSERT_FALSE(t) << "accepted: " << needle;
    EXPECT_NE(t.error().message().find(needle), std::string::npos) << t.error().message();
  };
  refused("cfs-rdiX" + good.substr(8), size, "magic");
  refused(good.substr(0, 8) + "\x02" + good.substr(9), size, "version: 2");
  refused(good.substr(0, 9) + "\x03" + good.substr(10), size, "algorithm: 3");
  ASSERT_EQ(s->table.entries.size(), 6u);
  refused(good.substr(0, good.size() - 1), size, "backs[5]: cut off");
  refused(good + "x", size, "1 bytes after the last column");
  refused(good, 700, "count: 6 values");
  // A count the document cannot hold (12 values, 12 bytes left after it).
  refused(good.substr(0, 10) + "\x0c" + good.substr(11), size, "count: 12 values need 24 bytes");
  refused(good, 130 * 6 + 10, "gaps[");
  refused(std::string(redirect_table_size_bound(size) + 1, 'x'), size, "more than the");
  // A redundant varint byte (the count 6 as 0x86 0x00).
  ASSERT_EQ(good[10], '\x06');
  refused(good.substr(0, 10) + "\x86" + std::string(1, '\0') + good.substr(11), size,
          "count: a varint with redundant bytes");
  // A digest that overlaps its value (back < n) or reaches before the previous value's end.
  RedirectTable bad = s->table;
  bad.entries[2].digest = bad.entries[2].value - 10;
  refused(encode_redirect_table(bad), size, "backs[2]");
  bad = s->table;
  bad.entries[3].digest = bad.entries[2].value;
  refused(encode_redirect_table(bad), size, "backs[3]");
}

TEST(Slim, RebuildRefusesValuesThatAreNotZeros) {
  const std::string img = sample(verity::HashAlg::kSha512);
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s);
  std::string slim = s->erofs;
  slim[s->table.entries[4].value + 7] = 'x';
  auto st = rebuild_redirects(as_writable(slim), s->table, "R");
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("R: redirect 4"), std::string::npos) << st.error().message();
}

TEST(Slim, ATamperedDigestRebuildsAnotherImage) {
  // The rebuild spells whatever digest bytes it finds: a changed metacopy digest gives an image
  // that is not the original (the caller's fs-verity check refuses it), never an error here.
  const std::string img = sample(verity::HashAlg::kSha512);
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s);
  std::string slim = s->erofs;
  slim[s->table.entries[1].digest] ^= 1;
  ASSERT_TRUE(rebuild_redirects(as_writable(slim), s->table, "R"));
  EXPECT_TRUE(slim != img);
  verity::Params p;
  p.alg = verity::HashAlg::kSha512;
  EXPECT_NE(verity::digest_bytes(as_bytes(slim), p), verity::digest_bytes(as_bytes(img), p));
}

}  // namespace
}  // namespace cfs::erofs

namespace cfs::erofs {
namespace {

// Any image, e.g. the Debian image's merged EROFS (bench/README "Slim EROFS"):
// CFS_SLIM_TEST_IMAGE=<repo>/images/<hex> unit_erofs --gtest_filter=Slim.RoundTripsTheNamedImage
TEST(Slim, RoundTripsTheNamedImage) {
  const char* path = std::getenv("CFS_SLIM_TEST_IMAGE");
  if (!path) GTEST_SKIP() << "CFS_SLIM_TEST_IMAGE not set";
  const std::string img = read_file(path);
  auto s = slim_redirects(as_bytes(img));
  ASSERT_TRUE(s) << s.error().message();
  std::size_t redirects = 0, zeroed = 0;
  {
    auto image = Image::from_bytes(as_bytes(s->erofs));
    ASSERT_TRUE(image);
    std::vector<std::uint64_t> dirs{image->root_nid()};
    std::set<std::uint64_t> seen;
    for (std::size_t i = 0; i < dirs.size(); ++i) {
      auto entries = image->readdir(dirs[i]);
      ASSERT_TRUE(entries);
      for (const auto& e : *entries) {
        if (e.name == "." || e.name == ".." || !seen.insert(e.nid).second) continue;
        if (e.file_type == FileType::kDirectory) dirs.push_back(e.nid);
        auto x = image->xattrs(e.nid);
        ASSERT_TRUE(x);
        for (const auto& a : *x) {
          redirects += a.name == overlay::kRedirect;
          zeroed +=
              a.name == overlay::kRedirect && a.value == std::string(s->table.value_size(), '\0');
        }
      }
    }
  }
  std::printf("%zu values slimmed: the redirects of %zu of %zu inodes; table %zu bytes\n",
              s->table.entries.size(), zeroed, redirects, encode_redirect_table(s->table).size());
  std::string rebuilt = s->erofs;
  ASSERT_TRUE(rebuild_redirects(as_writable(rebuilt), s->table, "rebuild"));
  EXPECT_TRUE(rebuilt == img);
  if (const char* out = std::getenv("CFS_SLIM_TEST_OUT")) {
    std::ofstream(std::string(out) + ".slim", std::ios::binary) << s->erofs;
    std::ofstream(std::string(out) + ".table", std::ios::binary) << encode_redirect_table(s->table);
  }
}

}  // namespace
}  // namespace cfs::erofs
