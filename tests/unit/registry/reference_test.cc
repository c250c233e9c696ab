// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/reference.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cfs::registry {
namespace {

const std::string kHex(64, 'a');

struct Good {
  const char* text;
  const char* registry;
  const char* repository;
  const char* tag;
  std::string digest;
};

TEST(Reference, ParsesTheDockerTransportSyntax) {
  const Good cases[] = {
      {"docker://127.0.0.1:5000/cfs/test:v1", "127.0.0.1:5000", "cfs/test", "v1", ""},
      {"127.0.0.1:5000/cfs/test", "127.0.0.1:5000", "cfs/test", "latest", ""},
      {"docker://localhost/a", "localhost", "a", "latest", ""},
      {"docker://busybox", "docker.io", "library/busybox", "latest", ""},
      {"docker://user/app:1.0", "docker.io", "user/app", "1.0", ""},
      {"docker://index.docker.io/library/x", "docker.io", "library/x", "latest", ""},
      {"docker://[::1]:5000/a_b/c-d.e:T_1", "[::1]:5000", "a_b/c-d.e", "T_1", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto r = parse_reference(c.text);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->registry, c.registry);
    EXPECT_EQ(r->repository, c.repository);
    EXPECT_EQ(r->tag, c.tag);
    EXPECT_EQ(r->digest, c.digest);
  }
}

TEST(Reference, DigestSelectsTheManifest) {
  auto r = parse_reference("docker://quay.io/a/b:t@sha256:" + kHex);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->tag, "t");
  EXPECT_EQ(r->digest, "sha256:" + kHex);
  EXPECT_EQ(r->manifest_reference(), "sha256:" + kHex);
  EXPECT_EQ(r->str(), "docker://quay.io/a/b:t@sha256:" + kHex);
  auto d = parse_reference("quay.io/a/b@sha256:" + kHex);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->tag, "");
  EXPECT_EQ(d->with_tag("x").str(), "docker://quay.io/a/b:x");
  EXPECT_EQ(d->with_tag("x").with_digest("sha256:" + kHex).str(),
            "docker://quay.io/a/b@sha256:" + kHex);
}

TEST(Reference, ApiHostOfDockerHub) {
  EXPECT_EQ(parse_reference("busybox")->api_host(), "registry-1.docker.io");
  EXPECT_EQ(parse_reference("h:1/a")->api_host(), "h:1");
}

TEST(Reference, RejectsInvalidNames) {
  for (const std::string& bad : std::vector<std::string>{
           "docker://", "docker:///a", "Host.io/UPPER", "h.io/a//b", "h.io/a:", "h.io/a..b",
           "h.io/-a", "h.io/a-", "h:abc/x", "h.io/a:t@sha256:abc", "h.io/a@md5:" + kHex,
           "h.io/" + std::string(300, 'a'), "h.io/a:" + std::string(129, 't'), "h.io/a:-t",
           "[::1/a"}) {
    SCOPED_TRACE(bad);
    auto r = parse_reference(bad);
    ASSERT_FALSE(r);
    // An unknown digest algorithm is the oci module's kUnsupportedFeature.
    EXPECT_TRUE(r.error().is(Errc::kInvalidInput) || r.error().is(Errc::kUnsupportedFeature));
    EXPECT_NE(r.error().message().find("image reference"), std::string::npos)
        << r.error().message();
  }
}

TEST(Digest, ReferrersTag) {
  auto d = oci::ContentDigest::parse("sha256:" + kHex);
  ASSERT_TRUE(d);
  EXPECT_EQ(referrers_tag(*d), "sha256-" + kHex);
}

TEST(RegistryKey, Normalises) {
  EXPECT_EQ(*normalize_registry_key("https://index.docker.io/v1/"), "docker.io");
  EXPECT_EQ(*normalize_registry_key("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(*normalize_registry_key("http://h:5000/"), "h:5000");
  EXPECT_EQ(*normalize_registry_key("quay.io/ns/repo"), "quay.io/ns/repo");
  EXPECT_FALSE(normalize_registry_key("quay.io/ns/repo:tag"));
  EXPECT_FALSE(normalize_registry_key("bad host"));
  // No host at all: valid_host read the first byte of an empty one (registry_parse_fuzzer's
  // ASan report; a Debug build's _GLIBCXX_ASSERTIONS stop at string_view::front()).
  EXPECT_FALSE(normalize_registry_key("https://"));
  EXPECT_FALSE(normalize_registry_key(""));
}

}  // namespace
}  // namespace cfs::registry
