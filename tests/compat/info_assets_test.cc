// SPDX-License-Identifier: Apache-2.0
// The image reader and the dump printer together against composefs-info 1.0.8's own outputs
// for upstream's reference images (composefs-assets/reference-outputs). Skips without the
// reference pack.
#include <gtest/gtest.h>

#include <filesystem>

#include "cfs/dump/print.h"
#include "cfs/erofs/reader.h"
#include "unit/dump/dump_test_util.h"

namespace cfs::dump {
namespace {

namespace fs = std::filesystem;
using testing::assets_dir;
using testing::read_asset;

// The printer on trees loaded from upstream's images by our reader: byte-identical to
// composefs-info 1.0.8 for every reference image.
TEST(InfoAssets, InfoDumpAndLsOfReferenceImages) {
  if (!fs::is_directory(assets_dir()))
    GTEST_SKIP() << "compat assets not found at " << assets_dir() << " (CFS_SHARED_DIR)";
  fs::path refs = assets_dir() / "reference-outputs";
  std::size_t compared = 0;
  for (const auto& e : fs::directory_iterator(refs)) {
    if (e.path().extension() != ".cfs") continue;
    std::string stem = e.path().stem().string();
    auto image = erofs::Image::open(e.path().string());
    ASSERT_TRUE(image) << stem << ": " << image.error().message();
    auto tree = erofs::load_tree(*image);
    ASSERT_TRUE(tree) << stem << ": " << tree.error().message();
    for (const char* kind : {"dump", "ls"}) {
      fs::path ref = refs / (stem + ".info-" + kind + ".txt");
      if (!fs::exists(ref)) ref += ".gz";
      auto want = read_asset(ref);
      ASSERT_TRUE(want) << ref;
      std::string got;
      if (std::string_view(kind) == "dump")
        print_dump(*tree, got);
      else
        print_ls(*tree, got);
      if (got != *want) {
        std::size_t i = 0;
        while (i < got.size() && i < want->size() && got[i] == (*want)[i]) ++i;
        std::size_t ls = want->rfind('\n', i);
        ls = ls == std::string::npos ? 0 : ls + 1;
        ADD_FAILURE() << stem << " info-" << kind << " differs at byte " << i << "\nwant: "
                      << want->substr(ls, std::min<std::size_t>(200, want->size() - ls))
                      << "\ngot:  " << got.substr(ls, std::min<std::size_t>(200, got.size() - ls));
      }
      ++compared;
    }
  }
  EXPECT_GE(compared, 28u);
}

}  // namespace
}  // namespace cfs::dump
