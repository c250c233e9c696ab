// SPDX-License-Identifier: Apache-2.0
// The dump parser and printer against upstream's compat assets (../shared/compat/
// composefs-assets): should-fail inputs, golden inputs, fuzzing seeds, and composefs-info
// 1.0.8 outputs. Skips when the reference pack is absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "cfs/dump/parse.h"
#include "cfs/dump/print.h"
#include "dump_test_util.h"

namespace cfs::dump {
namespace {

namespace fs = std::filesystem;
using testing::assets_dir;
using testing::read_asset;
using testing::tree_diff;

#define REQUIRE_ASSETS()                                                                    \
  do {                                                                                      \
    if (!fs::is_directory(assets_dir()))                                                    \
      GTEST_SKIP() << "compat assets not found at " << assets_dir() << " (CFS_SHARED_DIR)"; \
  } while (0)

// Upstream parses these three without CFS_PARSE_STRICT (composefs-assets/README.md §2).
const std::set<std::string> kLenient = {"longlink.dump", "no-newline.dump",
                                        "honggfuzz-longlink-unterminated.dump"};

std::vector<fs::path> golden_dumps() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(assets_dir())) {
    std::string n = e.path().filename().string();
    bool is_dump = n.ends_with(".dump") || n.ends_with(".dump.gz");
    if (is_dump && !n.starts_with("should-fail-")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string stem_of(const fs::path& p) {
  std::string n = p.filename().string();
  if (n.ends_with(".gz")) n.resize(n.size() - 3);
  return n.substr(0, n.size() - 5);  // ".dump"
}

Result<Tree> parse_asset(const fs::path& p, bool strict) {
  auto text = read_asset(p);
  if (!text) return fail(Errc::kInvalidInput, "cannot read " + p.string());
  ParseOptions o;
  o.strict = strict;
  o.source_name = p.filename().string();
  return parse(*text, o);
}

TEST(Assets, ShouldFailRejectedWithLineAndProblem) {
  REQUIRE_ASSETS();
  // What 1.0.8 reports (README §3), plus the line we name. Upstream runs them lenient.
  const std::map<std::string, std::string> expected = {
      {"big-inline", ":2: Inline content size 5004 exceeds maximum 5000"},
      {"dir-hardlink", ":2: Directories can't be hardlinked"},
      {"dot-name", ":2: Invalid . or .. in path: /."},
      {"dotdot-name", ":2: Invalid . or .. in path: /.."},
      {"empty-link-name", ":2: Invalid symlink: empty target"},
      {"empty-name", ":2: Can't add child: empty file name"},
      {"empty-xattr-key", ":2: Can't set xattr: name length 0 not in 1..255"},
      {"honggfuzz-long-xattr", ":1: Can't set xattr"},
      {"long-link", ":2: Invalid symlink: target longer than 4095 bytes"},
      {"long-xattr-key", ":2: Too many xattrs"},
      {"long-xattr-value", ":2: Invalid mode 644"},
      {"no-ftype", ":2: Invalid mode 0"},
      {"self-hardlink", ":2: Self-referential hardlink /037blockdev"},
      // Upstream fails at write time (EFBIG); we already refuse it while parsing.
      {"too-big", ":2: File too large: size 9500000000000000 needs more than 1024 chunks"},
  };
  std::size_t seen = 0;
  for (const auto& e : fs::directory_iterator(assets_dir())) {
    std::string n = e.path().filename().string();
    if (!n.starts_with("should-fail-")) continue;
    ++seen;
    std::string key = n.substr(12, n.size() - 12 - 5);
    auto t = parse_asset(e.path(), false);
    ASSERT_FALSE(t) << n << " was accepted";
    auto it = expected.find(key);
    ASSERT_NE(it, expected.end()) << "no expectation for " << n << ": " << t.error().context();
    EXPECT_TRUE(t.error().context().starts_with(n + it->second))
        << n << ": " << t.error().context();
  }
  EXPECT_EQ(seen, expected.size());
}

TEST(Assets, GoldenDumpsParse) {
  REQUIRE_ASSETS();
  auto dumps = golden_dumps();
  ASSERT_GE(dumps.size(), 13u);
  for (const auto& p : dumps) {
    std::string n = p.filename().string();
    auto t = parse_asset(p, !kLenient.contains(n));
    EXPECT_TRUE(t) << n << ": " << (t ? "" : t.error().message());
    // The lenient three really need lenient mode.
    if (kLenient.contains(n)) {
      EXPECT_FALSE(parse_asset(p, true)) << n;
    }
  }
}

TEST(Assets, FuzzingSeeds) {
  REQUIRE_ASSETS();
  fs::path dir = assets_dir() / "fuzzing-data";
  // README §5: behaviour of 1.0.8 on each seed, lenient and strict.
  struct Seed {
    const char* file;
    const char* lenient_error;  // nullptr = accepted
    const char* strict_error;
  };
  const Seed seeds[] = {
      {"alpine", nullptr, "Invalid symlink size"},
      {"busybox", nullptr, "Invalid symlink size"},
      {"fedora.gz", nullptr, "Invalid symlink size"},
      {"dump-example", nullptr, nullptr},
      {"dot-root", "Root node not present", "Root node not present"},
      {"SIGSEGV.PC.432623.STACK.1a9c9e1981.CODE.1.ADDR.0.INSTR.movsbl_(%rax),%eax.fuzz",
       "Invalid embedded NUL character at position 1", "Invalid embedded NUL character"},
      {"SIGSEGV.PC.435caa.STACK.18ea55ecb1.CODE.1.ADDR.20.INSTR.mov____0x20(%rax),%rax.fuzz",
       "Invalid embedded NUL character at position 7", "Invalid embedded NUL character"},
  };
  for (const Seed& s : seeds) {
    for (bool strict : {false, true}) {
      const char* want = strict ? s.strict_error : s.lenient_error;
      auto t = parse_asset(dir / s.file, strict);
      if (want == nullptr) {
        EXPECT_TRUE(t) << s.file << " strict=" << strict << ": " << (t ? "" : t.error().message());
      } else {
        ASSERT_FALSE(t) << s.file << " strict=" << strict;
        EXPECT_NE(t.error().context().find(want), std::string::npos)
            << s.file << ": " << t.error().context();
      }
    }
  }
}

// composefs-info dump of the image equals the input dump for these assets (README §4), so
// printing the parsed input must give upstream's bytes.
TEST(Assets, PrintedDumpMatchesUpstreamForCanonicalInputs) {
  REQUIRE_ASSETS();
  const std::set<std::string> not_canonical = {"honggfuzz-chardev-nonzero-size",
                                               "honggfuzz-longlink-unterminated", "longlink",
                                               "no-newline", "special_v1"};
  std::size_t compared = 0;
  for (const auto& p : golden_dumps()) {
    std::string stem = stem_of(p);
    if (not_canonical.contains(stem)) continue;
    fs::path ref = assets_dir() / "reference-outputs" / (stem + ".info-dump.txt");
    if (!fs::exists(ref)) ref += ".gz";
    auto want = read_asset(ref);
    ASSERT_TRUE(want) << ref;
    auto t = parse_asset(p, !kLenient.contains(p.filename().string()));
    ASSERT_TRUE(t) << stem;
    std::string got;
    print_dump(*t, got);
    EXPECT_TRUE(got == *want) << stem << ": printed dump differs from " << ref;
    ++compared;
  }
  EXPECT_GE(compared, 9u);
}

TEST(Assets, RoundTripParsePrintParse) {
  REQUIRE_ASSETS();
  std::vector<fs::path> inputs = golden_dumps();
  for (const char* s : {"alpine", "busybox", "fedora.gz", "dump-example"})
    inputs.push_back(assets_dir() / "fuzzing-data" / s);
  for (const auto& p : inputs) {
    auto t = parse_asset(p, false);
    ASSERT_TRUE(t) << p;
    std::string once;
    print_dump(*t, once);
    auto again = parse(once, ParseOptions{});
    ASSERT_TRUE(again) << p << ": " << again.error().message();
    EXPECT_EQ(tree_diff(*t, *again), "") << p;
    std::string twice;
    print_dump(*again, twice);
    EXPECT_TRUE(once == twice) << p;
  }
}

}  // namespace
}  // namespace cfs::dump
