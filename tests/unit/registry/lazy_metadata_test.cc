// SPDX-License-Identifier: Apache-2.0
// The lazy EROFS's bound by its blob (tests/integration/test_oci_lazy.py mounts a zero-padded
// EROFS against it through a registry), and a push that refuses metadata past it.
#include "cfs/registry/lazy_metadata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "cfs/erofs/writer.h"
#include "cfs/registry/reference.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"
#include "testutil/tree_builder.h"

namespace cfs::registry {
namespace {

TEST(LazyErofsLimit, FollowsTheBlobBetweenTheFloorAndTheCap) {
  // A small blob: the floor (every image up to ~300k files fits whatever its compression).
  EXPECT_EQ(lazy_erofs_limit(20'000, true), kLazyErofsFloor);
  EXPECT_EQ(lazy_erofs_limit(0, true), kLazyErofsFloor);
  // Past the floor: kLazyErofsRatio times the blob.
  EXPECT_EQ(lazy_erofs_limit(100'000, true), 100'000 * kLazyErofsRatio);
  // Never past the cap, however large the blob says it is (no overflow either).
  EXPECT_EQ(lazy_erofs_limit(kMaxLazyErofsSize / kLazyErofsRatio + 1, true), kMaxLazyErofsSize);
  EXPECT_EQ(lazy_erofs_limit(~std::uint64_t{0}, true), kMaxLazyErofsSize);
  // An uncompressed EROFS blob is its own bytes: the registry sends each byte held.
  EXPECT_EQ(lazy_erofs_limit(20'000, false), kMaxLazyErofsSize);
}

// A push attaches only metadata a lazy mount takes: a real EROFS (one directory) padded with
// zeros to 80 MiB compresses to a few KB, which a mount decodes to at most the 64 MiB floor
// and refuses (test_oci_lazy.py's padded EROFS). The push refuses it before it sends anything:
// the registry here is a port nothing listens on, so a request would fail as a connection
// error instead.
TEST(PushLazyMetadata, AnErofsPastTheMountsBoundIsRefusedBeforeAnythingIsSent) {
  testutil::TreeBuilder b;
  b.dir(b.root(), "d");
  auto fd = sys::memfd_create("erofs");
  ASSERT_TRUE(fd);
  ASSERT_TRUE(erofs::write_image(b.tree(), {}, fd->get()));
  ASSERT_EQ(::lseek(fd->get(), 0, SEEK_SET), 0);
  auto read = sys::read_fd(fd->get(), "erofs");
  ASSERT_TRUE(read);
  std::string erofs = std::move(*read);
  const std::size_t padded = 80u << 20;
  ASSERT_LT(erofs.size(), padded);
  erofs.resize(padded, '\0');
  ocirepo::ObjectIndex index;
  index.image = verity::digest_bytes(std::as_bytes(std::span(erofs.data(), erofs.size())));

  ClientOptions o;
  o.retry.max_retries = 0;
  o.connect_timeout_s = 2;
  auto client = Client::create(o);
  ASSERT_TRUE(client);
  auto ref = parse_reference("docker://127.0.0.1:1/cfs/padded:latest");
  ASSERT_TRUE(ref);
  auto r = push_lazy_metadata(*client, *ref, erofs, index);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Errc::kInvalidInput)) << r.error().message();
  // Names what is refused, its size and the mount's bound.
  EXPECT_THAT(r.error().message(), ::testing::HasSubstr(std::to_string(padded)));
  EXPECT_THAT(r.error().message(),
              ::testing::HasSubstr(std::to_string(lazy_erofs_limit(1000, true))));
  EXPECT_THAT(r.error().message(), ::testing::HasSubstr("lazy mount"));
}

}  // namespace
}  // namespace cfs::registry
