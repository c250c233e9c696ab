// SPDX-License-Identifier: Apache-2.0
// Expected strings follow Python's json.dumps(bytes.decode("utf-8", "surrogateescape"),
// ensure_ascii=False) for the same input (the rule documented in cfs/util/json.h).
#include "cfs/util/json.h"

#include <gtest/gtest.h>

namespace cfs::json {
namespace {

TEST(Json, AsciiAndEscapes) {
  EXPECT_EQ(string("plain/name.txt"), "\"plain/name.txt\"");
  EXPECT_EQ(string("q\"b\\"), "\"q\\\"b\\\\\"");
  EXPECT_EQ(string("\t\n\r\b\f"), "\"\\t\\n\\r\\b\\f\"");
  EXPECT_EQ(string(std::string_view("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(string(std::string_view("a\0b", 3)), "\"a\\u0000b\"");
  EXPECT_EQ(string(""), "\"\"");
}

TEST(Json, ValidUtf8PassesThrough) {
  EXPECT_EQ(string("h\xc3\xa9llo"), "\"h\xc3\xa9llo\"");          // U+00E9
  EXPECT_EQ(string("\xe2\x82\xac"), "\"\xe2\x82\xac\"");          // U+20AC
  EXPECT_EQ(string("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");  // U+1F600
  EXPECT_EQ(string("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
}

TEST(Json, InvalidBytesBecomeLoneSurrogates) {
  EXPECT_EQ(string("a\xff"
                   "b"),
            "\"a\\udcffb\"");
  EXPECT_EQ(string("\x80"), "\"\\udc80\"");
  // Truncated sequence: each byte on its own, the following ASCII kept.
  EXPECT_EQ(string("\xe2\x82"
                   "A"),
            "\"\\udce2\\udc82A\"");
  // Overlong forms, encoded surrogates and values above U+10FFFF are not UTF-8.
  EXPECT_EQ(string("\xc0\xaf"), "\"\\udcc0\\udcaf\"");
  EXPECT_EQ(string("\xe0\x80\xaf"), "\"\\udce0\\udc80\\udcaf\"");
  EXPECT_EQ(string("\xed\xa0\x80"), "\"\\udced\\udca0\\udc80\"");
  EXPECT_EQ(string("\xf4\x90\x80\x80"), "\"\\udcf4\\udc90\\udc80\\udc80\"");
  // An invalid lead byte followed by a valid sequence: only the lead byte is escaped.
  EXPECT_EQ(string("\xff\xc3\xa9"), "\"\\udcff\xc3\xa9\"");
}

TEST(Json, AppendKeepsPrefix) {
  std::string out = "[";
  append_string(out, "x");
  EXPECT_EQ(out, "[\"x\"");
}

}  // namespace
}  // namespace cfs::json
