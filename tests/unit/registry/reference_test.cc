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
    EXPECT_TRUE(r.error().is(Errc::kInvalidInput));
  }
}

TEST(Digest, ParsesOnlyLowercaseHexOfTheRightLength) {
  auto d = parse_digest("sha256:" + kHex);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->alg, DigestAlg::kSha256);
  EXPECT_EQ(d->str(), "sha256:" + kHex);
  EXPECT_EQ(d->fallback_tag(), "sha256-" + kHex);
  EXPECT_TRUE(parse_digest("sha512:" + std::string(128, '0')));
  for (const std::string& bad : std::vector<std::string>{
           "sha256:" + std::string(63, 'a'), "sha256:" + std::string(64, 'A'), "sha512:" + kHex,
           "sha1:" + kHex, kHex, "sha256:" + std::string(64, 'g')})
    EXPECT_FALSE(parse_digest(bad)) << bad;
}

TEST(Digest, HasherMatchesFipsVectors) {
  // FIPS 180-2 appendix examples: "abc".
  EXPECT_EQ(digest_of(std::string_view("abc")).str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest_of(std::string_view("abc"), DigestAlg::kSha512).hex,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  ContentHasher h;
  h.update(std::as_bytes(std::span("a", 1)));
  h.update(std::as_bytes(std::span("bc", 2)));
  EXPECT_EQ(h.finish(), digest_of(std::string_view("abc")));
  // finish() resets: the empty string next.
  EXPECT_EQ(h.finish().hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(RegistryKey, Normalises) {
  EXPECT_EQ(*normalize_registry_key("https://index.docker.io/v1/"), "docker.io");
  EXPECT_EQ(*normalize_registry_key("registry-1.docker.io"), "docker.io");
  EXPECT_EQ(*normalize_registry_key("http://h:5000/"), "h:5000");
  EXPECT_EQ(*normalize_registry_key("quay.io/ns/repo"), "quay.io/ns/repo");
  EXPECT_FALSE(normalize_registry_key("quay.io/ns/repo:tag"));
  EXPECT_FALSE(normalize_registry_key("bad host"));
}

}  // namespace
}  // namespace cfs::registry
