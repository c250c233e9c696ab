// SPDX-License-Identifier: Apache-2.0
// digest_files / build_trees: the many-files schedule (small files batched, big files set aside
// and split) gives each file the digest it has alone, in argument order, errors in place.
// The single-buffer digest_bytes it is compared with is checked against fs-verity vectors in
// vectors_test.cc; the empty file's digest is the known constant.
#include "cfs/verity/files.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "testutil/temp_dir.h"

namespace cfs::verity {
namespace {

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

TEST(Files, ManyFilesOfEverySizeInOrderWithErrorsInPlace) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  // Sizes around one block, one tree block of leaves (512 KiB) and the big-file threshold.
  const std::size_t sizes[] = {
      0, 1, 4095, 4096, 4097, 524288, 524289, 100000, kBigFile + 1, 17, 8192, 3, kBigFile - 1};
  std::vector<std::string> paths, contents;
  for (unsigned round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < std::size(sizes); ++i) {
      contents.push_back(testutil::random_bytes(sizes[i], round * 100 + static_cast<unsigned>(i)));
      paths.push_back(
          dir.write(std::string("f").append(std::to_string(paths.size())), contents.back()));
    }
    contents.emplace_back();
    paths.push_back(dir / ("missing" + std::to_string(round)));
  }
  paths.push_back(dir.path());  // a directory: read fails
  contents.emplace_back();
  for (unsigned threads : {1u, 2u, 5u}) {
    SCOPED_TRACE(threads);
    const auto got = digest_files(paths, Params{}, false, threads);
    ASSERT_EQ(got.size(), paths.size());
    for (std::size_t i = 0; i < paths.size(); ++i) {
      SCOPED_TRACE(paths[i]);
      const bool bad = paths[i].find("missing") != std::string::npos || paths[i] == dir.path();
      if (bad) {
        ASSERT_TRUE(got[i].error.has_value());
        EXPECT_NE(got[i].error->message().find(paths[i]), std::string::npos)
            << got[i].error->message();
        EXPECT_FALSE(got[i].digest.has_value());
        continue;
      }
      ASSERT_FALSE(got[i].error.has_value()) << got[i].error->message();
      ASSERT_TRUE(got[i].digest.has_value());
      EXPECT_EQ(*got[i].digest, digest_bytes(bytes(contents[i])));
      EXPECT_FALSE(got[i].from_kernel);
    }
  }
  EXPECT_EQ(digest_files(std::span(paths).first(1), Params{}, false)[0].digest->hex(),
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95");
}

TEST(Files, Sha512AndSalt) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  Params p;
  p.alg = HashAlg::kSha512;
  p.salt = {1, 2, 3};
  std::vector<std::string> paths, contents;
  for (std::size_t n : {std::size_t{10}, std::size_t{70000}}) {
    contents.push_back(testutil::random_bytes(n, static_cast<unsigned>(n)));
    paths.push_back(dir.write(std::string("f").append(std::to_string(n)), contents.back()));
  }
  const auto got = digest_files(paths, p, false, 2);
  for (std::size_t i = 0; i < paths.size(); ++i)
    EXPECT_EQ(*got[i].digest, digest_bytes(bytes(contents[i]), p));
}

TEST(Files, TreesGoToTheSinkInOrderUntilAFileFails) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::vector<std::string> paths = {dir.write("a", testutil::random_bytes(9000, 1)),
                                    dir.write("b", testutil::random_bytes(3, 2)), dir / "gone",
                                    dir.write("c", testutil::random_bytes(20000, 3))};
  std::vector<std::size_t> seen;
  std::vector<FileDigest> out;
  auto r = build_trees(paths, Params{}, 2, out, [&](std::size_t i, const MerkleTree& t) {
    seen.push_back(i);
    EXPECT_EQ(t.digest, digest_bytes(bytes(testutil::random_bytes(i == 0 ? 9000 : 3,
                                                                  static_cast<unsigned>(i + 1)))));
    return Status{};
  });
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(*r);
  EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1}));  // nothing after the failed file
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out[2].error.has_value());
  EXPECT_TRUE(out[3].digest.has_value());  // still digested, only not written

  // An error from the sink stops everything and is returned.
  paths.erase(paths.begin() + 2);
  seen.clear();
  r = build_trees(paths, Params{}, 1, out, [&](std::size_t i, const MerkleTree&) -> Status {
    seen.push_back(i);
    if (i == 1) return fail(Errc::kInvalidInput, "sink full");
    return {};
  });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("sink full"), std::string::npos) << r.error().message();
  EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1}));
}

}  // namespace
}  // namespace cfs::verity
