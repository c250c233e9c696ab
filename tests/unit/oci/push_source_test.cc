// SPDX-License-Identifier: Apache-2.0
// push_source: pushed pieces come out in order whatever the buffer bound; the producer's error
// ends the stream; an early close stops the producer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "cfs/oci/byte_source.h"

namespace cfs::oci {
namespace {

std::string piece(int i) {
  return std::string(static_cast<std::size_t>(i % 97 + 1), static_cast<char>('a' + i % 26));
}

TEST(PushSource, PiecesComeOutInOrder) {
  std::string expect;
  for (int i = 0; i < 2000; ++i) expect += piece(i);
  for (std::size_t bound : {std::size_t{1}, std::size_t{100}, std::size_t{1} << 20}) {
    auto src = push_source(
        [](const PushWrite& write) -> Status {
          for (int i = 0; i < 2000; ++i) {
            std::string p = piece(i);
            CFS_TRY(write(std::as_bytes(std::span(p))));
          }
          return {};
        },
        bound);
    auto all = read_all(*src, 1u << 30, "pushed");
    ASSERT_TRUE(all) << all.error().message();
    EXPECT_EQ(*all, expect) << bound;
  }
}

TEST(PushSource, ProducerErrorEndsTheStream) {
  auto src = push_source([](const PushWrite& write) -> Status {
    std::string p = "partial";
    CFS_TRY(write(std::as_bytes(std::span(p))));
    return fail(Errc::kDigestMismatch, "blob sha256:x: digest mismatch");
  });
  auto all = read_all(*src, 1u << 20, "pushed");
  ASSERT_FALSE(all);
  EXPECT_THAT(all.error().message(), ::testing::HasSubstr("blob sha256:x"));
}

TEST(PushSource, EarlyCloseStopsTheProducer) {
  bool stopped = false;
  {
    auto src = push_source(
        [&](const PushWrite& write) -> Status {
          std::string p(1000, 'x');
          for (;;) {
            if (auto st = write(std::as_bytes(std::span(p))); !st) {
              stopped = true;
              return st;
            }
          }
        },
        4096);
    std::string buf(10, '\0');
    ASSERT_TRUE(src->read(std::as_writable_bytes(std::span(buf))));
  }
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace cfs::oci
