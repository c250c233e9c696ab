// SPDX-License-Identifier: Apache-2.0
// The multipart/byteranges reader (registry/multipart.h) against hand-made responses written
// from RFC 9110 14.6 / RFC 2046 5.1 (the layout Go's http.ServeContent, docker-registry's, sends:
// no preamble, CRLF before every later boundary, a closing boundary and CRLF), fed whole and a
// byte at a time, and hostile ones: each is refused with an error naming the blob and the field.
#include "registry/multipart.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace cfs::registry::detail {
namespace {

using Range = ByterangesReader::Range;

struct Got {
  std::map<std::size_t, std::string> parts;
  Status st;
};

/// Feeds `body` in pieces of `step` bytes (0: whole) and then finishes.
Got read(const std::string& body, const std::vector<Range>& ranges, std::size_t step = 0,
         const std::string& boundary = "B0UND") {
  Got g;
  ByterangesReader r("blob sha256:abc", boundary, ranges,
                     [&](std::size_t i, std::span<const std::byte> b) -> Status {
                       g.parts[i].append(reinterpret_cast<const char*>(b.data()), b.size());
                       return {};
                     });
  const std::size_t n = step ? step : body.size();
  for (std::size_t off = 0; off < body.size() && g.st; off += n) {
    std::string_view piece = std::string_view(body).substr(off, n);
    g.st = r.feed(std::as_bytes(std::span(piece.data(), piece.size())));
  }
  if (g.st) g.st = r.finish();
  return g;
}

std::string part(const std::string& range, const std::string& data, bool first = false) {
  return std::string(first ? "" : "\r\n") +
         "--B0UND\r\nContent-Type: application/octet-stream\r\n" + "Content-Range: bytes " + range +
         "\r\n\r\n" + data;
}
const std::string kEnd = "\r\n--B0UND--\r\n";

std::string error_of(const Got& g) { return g.st ? std::string() : g.st.error().message(); }

TEST(Byteranges, BoundaryFromContentType) {
  EXPECT_EQ(byteranges_boundary("multipart/byteranges; boundary=3d6b6a416f9b5"), "3d6b6a416f9b5");
  EXPECT_EQ(byteranges_boundary("Multipart/ByteRanges;charset=x; BOUNDARY=\"a b\""), "a b");
  EXPECT_EQ(byteranges_boundary("multipart/byteranges"), std::nullopt);
  EXPECT_EQ(byteranges_boundary("multipart/mixed; boundary=x"), std::nullopt);
  EXPECT_EQ(byteranges_boundary("application/octet-stream"), std::nullopt);
  EXPECT_EQ(byteranges_boundary("multipart/byteranges; boundary="), std::nullopt);
  EXPECT_EQ(byteranges_boundary("multipart/byteranges; boundary=" + std::string(71, 'x')),
            std::nullopt);
  EXPECT_EQ(byteranges_boundary("multipart/byteranges; boundary=a\rb"), std::nullopt);
}

TEST(Byteranges, ContentRange) {
  using P = std::pair<std::uint64_t, std::uint64_t>;
  EXPECT_EQ(parse_content_range("bytes 0-9/100"), P(0, 9));
  EXPECT_EQ(parse_content_range(" bytes 5-5/*"), P(5, 5));
  EXPECT_EQ(parse_content_range("bytes 9-0/100"), std::nullopt);
  EXPECT_EQ(parse_content_range("bytes 0-100/100"), std::nullopt);  // past the length
  EXPECT_EQ(parse_content_range("bytes -5/100"), std::nullopt);
  EXPECT_EQ(parse_content_range("bytes 1-2"), std::nullopt);
  EXPECT_EQ(parse_content_range("items 1-2/3"), std::nullopt);
  EXPECT_EQ(parse_content_range("bytes 1-99999999999999999999/*"), std::nullopt);
}

TEST(Byteranges, PartsInAnyOrderEachToItsRange) {
  const std::vector<Range> asked{{100, 5}, {10, 3}, {50, 1}};
  const std::string body =
      part("10-12/200", "abc", true) + part("100-104/200", "hello") + part("50-50/200", "Z") + kEnd;
  for (std::size_t step : {0u, 1u, 2u, 7u}) {
    Got g = read(body, asked, step);
    ASSERT_TRUE(g.st) << step << ": " << error_of(g);
    EXPECT_EQ(g.parts[0], "hello");
    EXPECT_EQ(g.parts[1], "abc");
    EXPECT_EQ(g.parts[2], "Z");
  }
  // Bytes of the body that look like a boundary are body bytes: lengths, not scanning, end it.
  Got g = read(part("10-12/200", "\r\n-", true) + part("100-104/200", "--B0U") +
                   part("50-50/200", "\n") + kEnd,
               asked);
  ASSERT_TRUE(g.st) << error_of(g);
  EXPECT_EQ(g.parts[1], "\r\n-");
  EXPECT_EQ(g.parts[0], "--B0U");
}

TEST(Byteranges, FewerPartsThanAskedIsNotAnError) {
  // The caller fetches what did not come on its own (Client::fetch_ranges).
  Got g = read(part("10-12/200", "abc", true) + kEnd, {{10, 3}, {20, 2}});
  ASSERT_TRUE(g.st) << error_of(g);
  EXPECT_EQ(g.parts.size(), 1u);
}

TEST(Byteranges, HostileResponsesAreRefused) {
  const std::vector<Range> asked{{10, 3}, {100, 5}};
  const std::string ok2 = part("100-104/200", "hello");
  struct Case {
    std::string body, field;
  } cases[] = {
      {part("10-13/200", "abcd", true) + ok2 + kEnd, "not one of the ranges asked"},
      {part("11-13/200", "bcd", true) + ok2 + kEnd, "not one of the ranges asked"},
      {part("10-12/200", "abc", true) + part("10-12/200", "abc") + kEnd, "came twice"},
      {"--B0UND\r\nContent-Type: x\r\n\r\nabc" + kEnd, "without a Content-Range"},
      {"--B0UND\r\nContent-Range: bytes 10-12/200\r\nContent-Range: bytes 10-12/200\r\n\r\nabc" +
           kEnd,
       "two Content-Range"},
      {"--B0UND\r\nContent-Range: bytes ten-12/200\r\n\r\nabc" + kEnd, "malformed"},
      {"preamble\r\n" + part("10-12/200", "abc") + kEnd, "expected the boundary"},
      {part("10-12/200", "abcX", true) + kEnd, "after a part's Content-Range end"},
      {part("10-12/200", "abc", true) + "\r\n--OTHER\r\n" + kEnd, "expected the boundary after"},
      {part("10-12/200", "abc", true) + kEnd + "trailer\r\n", "after the closing boundary"},
      {part("10-12/200", "abc", true) + ok2, "ended before its closing boundary"},
      {part("10-12/200", "ab", true), "ended before its closing boundary"},
      {"--B0UND\nContent-Range: bytes 10-12/200\r\n\r\nabc" + kEnd, "does not end in CRLF"},
      {"--B0UND\r\n" + std::string(2000, 'x') + "\r\n", "longer than 1024"},
      {"--B0UND\r\nno colon here\r\n", "without a name"},
      {part("10-12/200", "abc", true) + ok2 + part("10-12/200", "abc") + kEnd,
       "more parts than ranges"},
  };
  for (const auto& c : cases) {
    for (std::size_t step : {0u, 1u}) {
      Got g = read(c.body, asked, step);
      ASSERT_FALSE(g.st) << c.field;
      EXPECT_NE(error_of(g).find(c.field), std::string::npos) << error_of(g);
      EXPECT_NE(error_of(g).find("blob sha256:abc"), std::string::npos) << error_of(g);
      EXPECT_TRUE(g.st.error().is_errno(EPROTO)) << error_of(g);
    }
  }
  // Too many header lines in one part.
  std::string many = "--B0UND\r\n";
  for (int i = 0; i < 17; ++i) many += "X-A: b\r\n";
  Got g = read(many, asked);
  ASSERT_FALSE(g.st);
  EXPECT_NE(error_of(g).find("more than 16 header lines"), std::string::npos) << error_of(g);
}

TEST(Byteranges, ADeliveryErrorStopsTheReaderUnchanged) {
  ByterangesReader r("blob x", "B0UND", {{10, 3}}, [](std::size_t, std::span<const std::byte>) {
    return fail_errno("sink full", ENOSPC);
  });
  std::string body = part("10-12/200", "abc", true) + kEnd;
  auto st = r.feed(std::as_bytes(std::span(body.data(), body.size())));
  ASSERT_FALSE(st);
  EXPECT_TRUE(st.error().is_errno(ENOSPC));
}

}  // namespace
}  // namespace cfs::registry::detail
