// SPDX-License-Identifier: Apache-2.0
#include "registry/descriptors.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cfs::registry::detail {
namespace {

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');
// A manifest's required head, "layers" to follow.
const std::string kConfig =
    R"({"schemaVersion":2,"config":{"mediaType":"c","digest":")" + kA + R"(","size":2})";

TEST(Descriptors, ChildrenOfManifestsAndIndexes) {
  std::string manifest = R"({"schemaVersion":2,"config":{"mediaType":"c","digest":")" + kA +
                         R"(","size":2},"layers":[{"mediaType":"l","digest":")" + kB +
                         R"(","size":30,"annotations":{"k":"v"}}]})";
  auto c = manifest_children(manifest, kOciManifest, "m");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0].digest.str(), kA);
  EXPECT_EQ((*c)[1].size, 30u);
  EXPECT_EQ((*c)[1].annotations.at("k"), "v");
  std::string index =
      R"({"schemaVersion":2,"manifests":[{"mediaType":"m","digest":")" + kC + R"(","size":5}]})";
  c = manifest_children(index, "", "i");  // no media type: recognised by "manifests"
  ASSERT_TRUE(c);
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].digest.str(), kC);
}

TEST(Descriptors, BadDescriptorsNameTheMember) {
  for (const std::string& bad : std::vector<std::string>{
           std::string("[]"), std::string(R"({"layers":{}})"), kConfig + R"(,"layers":{}})",
           kConfig + R"(,"layers":[{"digest":")" + kA + R"("}]})",
           kConfig + R"(,"layers":[{"digest":"sha256:x","size":1}]})",
           R"({"schemaVersion":2,"config":{"digest":")" + kA + R"(","size":-1},"layers":[]})"}) {
    auto c = manifest_children(bad, kOciManifest, "manifest X");
    ASSERT_FALSE(c) << bad;
    EXPECT_NE(c.error().message().find("manifest X"), std::string::npos);
  }
}

TEST(Descriptors, ReferrerOfAManifestWithSubject) {
  std::string art =
      R"({"schemaVersion":2,"layers":[],"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":")" +
      kA + R"(","size":2},"subject":{"mediaType":"m","digest":")" + kB +
      R"(","size":7},"annotations":{"x":"y"}})";
  auto d = oci::ContentDigest::parse(kC).value();
  auto r = referrer_of(art, kOciManifest, d);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->first.str(), kB);
  EXPECT_EQ((*r)->second.digest, d);
  EXPECT_EQ((*r)->second.size, art.size());
  EXPECT_EQ((*r)->second.artifact_type, "application/vnd.oci.empty.v1+json");  // config's type
  EXPECT_EQ((*r)->second.annotations.at("x"), "y");
  auto none = referrer_of(kConfig + R"(,"layers":[]})", kOciManifest, d);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST(Descriptors, FallbackIndexGrowsWithoutDuplicates) {
  Descriptor d;
  d.media_type = kOciManifest;
  d.digest = oci::ContentDigest::parse(kA).value();
  d.size = 10;
  d.artifact_type = "t/x";
  auto first = add_to_index("", d);
  ASSERT_TRUE(first && *first);
  auto again = add_to_index(**first, d);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  Descriptor e = d;
  e.digest = oci::ContentDigest::parse(kB).value();
  auto second = add_to_index(**first, e);
  ASSERT_TRUE(second && *second);
  auto listed = manifest_children(**second, kOciIndex, "i").value();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].digest.str(), kA);
  EXPECT_EQ(listed[1].digest.str(), kB);
  EXPECT_EQ(listed[1].artifact_type, "t/x");
  EXPECT_EQ(declared_media_type(**second), kOciIndex);
}

TEST(Descriptors, LayoutIndexReplacesTheSameName) {
  Descriptor d;
  d.media_type = kOciManifest;
  d.digest = oci::ContentDigest::parse(kA).value();
  d.size = 10;
  auto one = layout_index_with("", d, "v1").value();
  Descriptor e = d;
  e.digest = oci::ContentDigest::parse(kB).value();
  auto two = layout_index_with(one, e, "v2").value();
  Descriptor f = d;
  f.digest = oci::ContentDigest::parse(kC).value();
  auto three = layout_index_with(two, f, "v1").value();
  auto listed = manifest_children(three, kOciIndex, "i").value();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].annotations.at("org.opencontainers.image.ref.name"), "v2");
  EXPECT_EQ(listed[1].digest.str(), kC);
}

}  // namespace
}  // namespace cfs::registry::detail
