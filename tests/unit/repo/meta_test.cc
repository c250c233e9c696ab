// SPDX-License-Identifier: Apache-2.0
// meta.json bytes and compatibility rules. Expected bytes: the block composefs-rs' `cfsctl init`
// writes with all defaults, as ../shared/reference/oci-repository.md §1.2 quotes it, and its
// variants per the rules stated there (v1_erofs only for format 1, "default": N).
#include "cfs/repo/meta.h"

#include <gtest/gtest.h>

namespace cfs::repo {
namespace {

using verity::HashAlg;

std::string expected(const char* alg, const char* ro_compat, int format) {
  return std::string("{\n  \"version\": 1,\n  \"algorithm\": \"") + alg +
         "\",\n  \"features\": {\n    \"compatible\": [],\n    \"read-only-compatible\": " +
         ro_compat +
         ",\n    \"incompatible\": []\n  },\n  \"erofs_formats\": {\n    \"default\": " +
         std::to_string(format) + "\n  }\n}\n";
}

constexpr const char* kV1 = "[\n      \"v1_erofs\"\n    ]";

TEST(Meta, DefaultBytesAreCfsctlInit) {
  // Verbatim from the reference document.
  const char* doc =
      "{\n"
      "  \"version\": 1,\n"
      "  \"algorithm\": \"fsverity-sha512-12\",\n"
      "  \"features\": {\n"
      "    \"compatible\": [],\n"
      "    \"read-only-compatible\": [\n"
      "      \"v1_erofs\"\n"
      "    ],\n"
      "    \"incompatible\": []\n"
      "  },\n"
      "  \"erofs_formats\": {\n"
      "    \"default\": 1\n"
      "  }\n"
      "}\n";
  EXPECT_EQ(Meta::make(HashAlg::kSha512, 1).to_json(), doc);
}

TEST(Meta, BytesForEachAlgorithmAndFormat) {
  EXPECT_EQ(Meta::make(HashAlg::kSha256, 1).to_json(), expected("fsverity-sha256-12", kV1, 1));
  EXPECT_EQ(Meta::make(HashAlg::kSha512, 0).to_json(), expected("fsverity-sha512-12", "[]", 0));
  EXPECT_EQ(Meta::make(HashAlg::kSha256, 0).to_json(), expected("fsverity-sha256-12", "[]", 0));
}

TEST(Meta, ExtraFormatsAreWrittenWhenPresent) {
  Meta m = Meta::make(HashAlg::kSha512, 1);
  m.erofs_formats.extra = {2};
  std::string j = m.to_json();
  EXPECT_NE(j.find("\"erofs_formats\": {\n    \"default\": 1,\n    \"extra\": [\n      2\n    ]\n"
                   "  }\n}\n"),
            std::string::npos)
      << j;
}

TEST(Meta, ParseRoundTrip) {
  for (auto alg : {HashAlg::kSha256, HashAlg::kSha512})
    for (std::uint32_t f : {0u, 1u}) {
      Meta m = Meta::make(alg, f);
      auto p = Meta::parse(m.to_json(), "meta.json");
      ASSERT_TRUE(p) << p.error().message();
      EXPECT_EQ(*p, m);
      EXPECT_EQ(p->erofs_version(), f);
      auto a = check(*p);
      ASSERT_TRUE(a);
      EXPECT_TRUE(a->writable);
    }
}

TEST(Meta, LegacyFormatRules) {
  // No erofs_formats: V2, unless v1_erofs is present (composefs-rs format_config()).
  auto old = Meta::parse(R"({"version":1,"algorithm":"fsverity-sha256-12"})", "m");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->erofs_version(), 2u);
  EXPECT_TRUE(old->features.read_only_compatible.empty());
  auto v1 = Meta::parse(
      R"({"version":1,"algorithm":"fsverity-sha256-12","features":{"read-only-compatible":["v1_erofs"]}})",
      "m");
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->erofs_version(), 1u);
}

TEST(Meta, FutureVersionIsRefused) {
  auto m = Meta::parse(R"({"version":2,"algorithm":"fsverity-sha512-12"})", "m");
  ASSERT_TRUE(m);
  auto a = check(*m);
  ASSERT_FALSE(a);
  EXPECT_TRUE(a.error().is(Errc::kUnsupportedFeature));
  EXPECT_NE(a.error().message().find("version 2"), std::string::npos);
}

TEST(Meta, UnknownIncompatibleFeatureIsRefused) {
  auto m = Meta::parse(
      R"({"version":1,"algorithm":"fsverity-sha512-12","features":{"incompatible":["zstd_objects"]}})",
      "m");
  ASSERT_TRUE(m);
  auto a = check(*m);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message().find("zstd_objects"), std::string::npos);
}

TEST(Meta, UnknownRoCompatMeansReadOnlyAndCompatIsIgnored) {
  auto m = Meta::parse(
      R"({"version":1,"algorithm":"fsverity-sha512-12","features":{"compatible":["x"],
          "read-only-compatible":["v1_erofs","fancy"]},"erofs_formats":{"default":1}})",
      "m");
  ASSERT_TRUE(m);
  auto a = check(*m);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->writable);
  EXPECT_EQ(a->unknown_ro_compat, std::vector<std::string>{"fancy"});
  auto c = Meta::parse(
      R"({"version":1,"algorithm":"fsverity-sha512-12","features":{"compatible":["x"]}})", "m");
  ASSERT_TRUE(c);
  EXPECT_TRUE(check(*c)->writable);
}

TEST(Meta, BadFieldsAreNamed) {
  struct Case {
    const char* json;
    const char* needle;
  } cases[] = {
      {"", "not valid JSON"},
      {"[]", "not a JSON object"},
      {R"({"algorithm":"fsverity-sha512-12"})", "'version'"},
      {R"({"version":-1,"algorithm":"fsverity-sha512-12"})", "'version'"},
      {R"({"version":1})", "'algorithm'"},
      {R"({"version":1,"algorithm":"fsverity-sha1-12"})", "unknown hash"},
      {R"({"version":1,"algorithm":"fsverity-sha256-16"})", "4096-byte"},
      {R"({"version":1,"algorithm":"sha256"})", "fsverity-<hash>"},
      {R"({"version":1,"algorithm":"fsverity-sha256-12","features":{"compatible":[1]}})",
       "features.compatible"},
      {R"({"version":1,"algorithm":"fsverity-sha256-12","erofs_formats":{"default":3}})",
       "erofs_formats.default"},
      {R"({"version":1,"algorithm":"fsverity-sha256-12","erofs_formats":{}})",
       "erofs_formats.default"},
  };
  for (const auto& c : cases) {
    auto m = Meta::parse(c.json, "R/meta.json");
    ASSERT_FALSE(m) << c.json;
    EXPECT_NE(m.error().message().find(c.needle), std::string::npos)
        << c.json << ": " << m.error().message();
    EXPECT_NE(m.error().message().find("R/meta.json"), std::string::npos) << m.error().message();
  }
}

TEST(Meta, AlgorithmNames) {
  EXPECT_EQ(algorithm_name(HashAlg::kSha256), "fsverity-sha256-12");
  EXPECT_EQ(algorithm_name(HashAlg::kSha512), "fsverity-sha512-12");
  EXPECT_EQ(*parse_algorithm("fsverity-sha512-12"), HashAlg::kSha512);
}

}  // namespace
}  // namespace cfs::repo
