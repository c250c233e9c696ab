// SPDX-License-Identifier: Apache-2.0
// OCI JSON: raw bytes kept, digests of the exact bytes, errors naming the field, platforms;
// the choice of image in an OCI layout's index.json and a docker archive's manifest.json.
// (Documents written by umoci and skopeo are in tests/integration/test_oci_sources.py.)
#include "cfs/oci/image.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "oci/layout_json.h"

namespace cfs::oci {
namespace {

using ::testing::HasSubstr;

const std::string kHex(64, 'a');

std::string manifest_json(const std::string& extra = "") {
  return R"({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:)" +
         kHex + R"(", "size": 7},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:)" +
         kHex + R"(", "size": 1234)" + extra + "}]}";
}

TEST(Image, ManifestKeepsRawBytesAndHashesThem) {
  std::string raw = manifest_json();
  auto m = parse_manifest(raw, "m");
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->raw, raw);
  EXPECT_EQ(m->digest, sha256_of(std::string_view(raw)));
  EXPECT_TRUE(m->is_image());
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].size, 1234u);
  EXPECT_EQ(*manifest_kind(raw), ManifestKind::kManifest);
}

// A manifest repeating one layer descriptor (a 4 MiB manifest holds ~25k) made a pull merge
// that layer as many times; kMaxLayers is the most any runtime can mount.
TEST(Image, ManifestWithMoreLayersThanTheCapIsRefusedNamingTheCount) {
  const std::string layer = R"({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
    "digest": "sha256:)" + kHex +
                            R"(", "size": 1234})";
  auto with_layers = [&](std::size_t n) {
    std::string layers;
    for (std::size_t i = 0; i < n; ++i) layers += (i ? "," : "") + layer;
    return R"({"schemaVersion": 2, "config": {"mediaType":
      "application/vnd.oci.image.config.v1+json", "digest": "sha256:)" +
           kHex + R"(", "size": 7}, "layers": [)" + layers + "]}";
  };
  auto at_cap = parse_manifest(with_layers(kMaxLayers), "m");
  ASSERT_TRUE(at_cap) << at_cap.error().message();
  EXPECT_EQ(at_cap->layers.size(), kMaxLayers);
  auto over = parse_manifest(with_layers(kMaxLayers + 1), "img manifest");
  ASSERT_FALSE(over);
  EXPECT_TRUE(over.error().is(Errc::kInvalidInput));
  EXPECT_THAT(over.error().message(),
              HasSubstr(fmt::format("img manifest: {} layers, more than the {} an image may have",
                                    kMaxLayers + 1, kMaxLayers)));
}

TEST(Image, ErrorsNameTheField) {
  struct Case {
    std::string raw;
    const char* message;
  };
  std::vector<Case> cases = {
      {"[]", "m: not a JSON object"},
      {"{", "m: not valid JSON"},
      {R"({"schemaVersion": 1})", "'schemaVersion' is not 2"},
      {manifest_json(R"(, "size": -1)"), "m layers[0]: 'size' is not a non-negative integer"},
      {manifest_json(R"(, "annotations": {"a": 1})"), "annotation 'a' is not a string"},
      {R"({"schemaVersion": 2, "config": {"digest": "md5:abc", "size": 1}, "layers": []})",
       "digest 'md5:abc'"},
      {R"({"schemaVersion": 2, "layers": []})", "no 'config'"},
      {R"({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
          "config": {}, "layers": []})",
       "is not an image manifest"},
  };
  for (const auto& c : cases) {
    auto m = parse_manifest(c.raw, "m");
    ASSERT_FALSE(m) << c.raw;
    EXPECT_THAT(m.error().message(), HasSubstr(c.message)) << c.raw;
  }
}

TEST(Image, ConfigDiffIds) {
  std::string raw = R"({"architecture": "arm64", "os": "linux", "variant": "v8",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:)" +
                    kHex + R"("]}})";
  auto c = parse_config(raw, "c");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->platform.str(), "linux/arm64/v8");
  ASSERT_EQ(c->diff_ids.size(), 1u);
  EXPECT_EQ(c->diff_ids[0].hex, kHex);
  auto bad = parse_config(R"({"rootfs": {"type": "layers", "diff_ids": [7]}})", "c");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("rootfs.diff_ids[0] is not a string"));
}

TEST(Image, Platforms) {
  auto p = Platform::parse("linux/arm/v7");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->variant, "v7");
  EXPECT_FALSE(Platform::parse("linux"));
  EXPECT_FALSE(Platform::parse("linux/arm/v7/x"));
  EXPECT_FALSE(Platform::parse("/amd64"));
  EXPECT_FALSE(Platform::parse("linux/arm/"));
  Platform arm64{"linux", "arm64", ""}, arm64v8{"linux", "arm64", "v8"},
      armv6{"linux", "arm", "v6"};
  EXPECT_TRUE(arm64.serves(arm64v8));
  EXPECT_TRUE(arm64v8.serves(arm64));
  EXPECT_FALSE(armv6.serves(Platform{"linux", "arm", "v7"}));
  EXPECT_TRUE(armv6.serves(Platform{"linux", "arm", ""}));
  EXPECT_EQ(Platform::current().os, "linux");

  std::string raw = R"({"schemaVersion": 2, "manifests": [
    {"digest": "sha256:)" +
                    kHex + R"(", "size": 1, "platform": {"os": "linux", "architecture": "ppc64le"}},
    {"digest": "sha256:)" +
                    std::string(64, 'b') + R"(", "size": 2,
     "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]})";
  EXPECT_EQ(*manifest_kind(raw), ManifestKind::kIndex);
  auto idx = parse_index(raw, "i");
  ASSERT_TRUE(idx) << idx.error().message();
  auto d = select_platform(*idx, Platform{"linux", "arm", ""}, "i");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->size, 2u);
  auto none = select_platform(*idx, Platform{"linux", "amd64", ""}, "i");
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message(),
              HasSubstr("no image for platform linux/amd64 (the index has: linux/ppc64le, "
                        "linux/arm/v7)"));
}

// A docker archive's manifest.json: the image by RepoTags entry, or its only one; errors name
// the archive, the entry and the field (oci_json_fuzzer checks that they name the archive).
TEST(Image, DockerArchiveManifestJson) {
  const std::string two =
      R"([{"Config": "a.json", "RepoTags": ["x:1", "x:latest"], "Layers": ["1/layer.tar"]},
          {"Config": "b.json", "RepoTags": null, "Layers": []}])";
  auto x = detail::docker_archive_image(two, "x:latest", "ar manifest.json");
  ASSERT_TRUE(x) << x.error().message();
  EXPECT_EQ(x->config, "a.json");
  EXPECT_EQ(x->layers, std::vector<std::string>{"1/layer.tar"});
  struct Case {
    std::string raw, ref;
    const char* message;
  };
  std::vector<Case> cases = {
      {"{}", "", "ar manifest.json: not a non-empty JSON array"},
      {two, "", "ar manifest.json: 2 images; name one with :REF (tags: x:1, x:latest)"},
      {two, "y:1", "ar manifest.json: no image tagged 'y:1' (tags: x:1, x:latest)"},
      {R"([7])", "", "ar manifest.json: [0] is not an object"},
      {R"([{"RepoTags": "x:1"}])", "", "ar manifest.json: [0] RepoTags is not an array"},
      {R"([{"RepoTags": [1]}])", "", "ar manifest.json: [0] RepoTags[0] is not a string"},
      {R"([{"Layers": []}])", "", "ar manifest.json: [0] Config is not a string"},
      {R"([{"Config": "c"}])", "", "ar manifest.json: [0] Layers is not an array"},
      {R"([{"Config": "c", "Layers": ["a", 7]}])", "",
       "ar manifest.json: [0] Layers[1] is not a string"},
  };
  for (const auto& c : cases) {
    auto r = detail::docker_archive_image(c.raw, c.ref, "ar manifest.json");
    ASSERT_FALSE(r) << c.raw;
    EXPECT_THAT(r.error().message(), HasSubstr(c.message)) << c.raw;
  }
}

// An OCI layout's index.json: the entry by tag, or the only one, or none when there is one per
// platform (index.json is then the index to choose from).
TEST(Image, LayoutIndexEntry) {
  auto entry = [](char hex, const std::string& extra) {
    return R"({"digest": "sha256:)" + std::string(64, hex) + R"(", "size": 1)" + extra + "}";
  };
  auto tagged = [](const std::string& tag) {
    return R"(, "annotations": {"org.opencontainers.image.ref.name": ")" + tag + R"("})";
  };
  auto platform = [](const std::string& arch) {
    return R"(, "platform": {"os": "linux", "architecture": ")" + arch + R"("})";
  };
  auto index = [](const std::string& entries) {
    return parse_index(R"({"schemaVersion": 2, "manifests": [)" + entries + "]}", "i").value();
  };
  auto tags = index(entry('a', tagged("v1")) + "," + entry('b', tagged("v2")));
  auto v2 = layout_entry(tags, "v2", "lay");
  ASSERT_TRUE(v2 && *v2);
  EXPECT_EQ((*v2)->digest.hex, std::string(64, 'b'));
  auto missing = layout_entry(tags, "v3", "lay");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message(), HasSubstr("lay: no image tagged 'v3' (tags: v1, v2)"));
  auto untagged = layout_entry(tags, "", "lay");
  ASSERT_FALSE(untagged);
  EXPECT_THAT(untagged.error().message(),
              HasSubstr("lay: 2 images; name one with :TAG (tags: v1, v2)"));
  auto one = layout_entry(index(entry('c', "")), "", "lay");
  ASSERT_TRUE(one && *one);
  EXPECT_EQ((*one)->digest.hex, std::string(64, 'c'));
  auto per_platform = layout_entry(
      index(entry('a', platform("amd64")) + "," + entry('b', platform("arm64"))), "", "lay");
  ASSERT_TRUE(per_platform);
  EXPECT_FALSE(*per_platform);
  auto empty = layout_entry(index(""), "", "lay");
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message(), HasSubstr("lay: 0 images; name one with :TAG (tags: none)"));
}

}  // namespace
}  // namespace cfs::oci
