// SPDX-License-Identifier: Apache-2.0
// Stream and tag names (composefs-rs' spelling: ../shared/reference/oci-repository.md §2.3).
#include "cfs/ocirepo/names.h"

#include <gtest/gtest.h>

namespace cfs::ocirepo {
namespace {

TEST(Names, StreamNames) {
  auto d = oci::ContentDigest::parse("sha256:" + std::string(64, 'a'));
  ASSERT_TRUE(d);
  EXPECT_EQ(layer_stream_name(*d), "oci-layer-sha256:" + std::string(64, 'a'));
  EXPECT_EQ(config_stream_name(*d), "oci-config-sha256:" + std::string(64, 'a'));
  EXPECT_EQ(manifest_stream_name(*d), "oci-manifest-sha256:" + std::string(64, 'a'));
}

TEST(Names, TagsEncodePercentFirstThenSlash) {
  EXPECT_EQ(encode_tag("docker://registry.example.com/x:1"),
            "docker:%2F%2Fregistry.example.com%2Fx:1");
  EXPECT_EQ(encode_tag("a%2Fb/c"), "a%252Fb%2Fc");
  for (std::string tag : {"docker://registry.example.com/x:1", "a%2Fb/c", "plain", "%", "%%/"}) {
    auto back = decode_tag(encode_tag(tag));
    ASSERT_TRUE(back) << tag;
    EXPECT_EQ(*back, tag);
  }
  EXPECT_FALSE(decode_tag("a%2"));
  EXPECT_FALSE(decode_tag("a%41"));
  auto ref = tag_ref("oci:/srv/img:latest");
  ASSERT_TRUE(ref);
  EXPECT_EQ(*ref, "oci/oci:%2Fsrv%2Fimg:latest");
  EXPECT_FALSE(tag_ref(""));
  EXPECT_FALSE(tag_ref("@sha256:abc"));
  EXPECT_FALSE(tag_ref(".."));
}

}  // namespace
}  // namespace cfs::ocirepo
