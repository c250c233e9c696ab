// SPDX-License-Identifier: Apache-2.0
// Grammar, escaping, limits and upstream quirks of the dump parser. Expected behaviour comes
// from composefs 1.0.8 (its mkcomposefs and composefs-dump(5); the differences are in
// docs/dump-format.md), not from our own output.
#include "cfs/dump/parse.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "cfs/overlay/xattr.h"
#include "dump_test_util.h"

namespace cfs::dump {
namespace {

constexpr std::string_view kRoot = "/ 4096 40755 2 0 0 0 0.0 - - -\n";

Result<Tree> parse_str(std::string_view text, bool strict = false) {
  ParseOptions o;
  o.strict = strict;
  o.source_name = "t.dump";
  return parse(text, o);
}

// Parses kRoot + line and returns the node at `path`.
Node parse_one(const std::string& line, const std::string& path = "/x", bool strict = false) {
  auto t = parse_str(std::string(kRoot) + line, strict);
  EXPECT_TRUE(t) << (t ? "" : t.error().message());
  if (!t) return {};
  auto id = t->lookup(path);
  EXPECT_TRUE(id) << path;
  return id ? t->node(*id) : Node{};
}

std::string error_of(std::string_view text, bool strict = false) {
  auto t = parse_str(text, strict);
  if (t) return "<accepted>";
  EXPECT_TRUE(t.error().is(Errc::kInvalidInput));
  return t.error().context();
}

// ---------------------------------------------------------------------------------------------
// Rejected input: every error names the line and the problem.

struct BadCase {
  const char* what;
  std::string text;
  bool strict;
  std::string error;  // exact context
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.what; }

class Rejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(Rejects, WithLineAndProblem) {
  const BadCase& c = GetParam();
  EXPECT_EQ(error_of(c.text, c.strict), c.error) << c.what;
}

std::string R(const std::string& rest) { return std::string(kRoot) + rest; }

INSTANTIATE_TEST_SUITE_P(
    Grammar, Rejects,
    ::testing::Values(
        BadCase{"empty input", "", false, "t.dump: No files in dump file"},
        BadCase{"empty line", R("\n"), false, "t.dump:2: Invalid empty path"},
        BadCase{"path is NUL", R("\\x00 0 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid empty path"},
        BadCase{"no root", "/a 0 100644 1 0 0 0 0.0 - - -\n", false,
                "t.dump:1: Root node not present"},
        BadCase{"root not dir", "/ 0 100644 1 0 0 0 0.0 - - -\n", false,
                "t.dump:1: Root must be a directory"},
        BadCase{"two roots", R("/ 0 40755 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Can't have multiple roots"},
        BadCase{"missing parent", R("/a/b 0 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Parent directory missing for /a/b"},
        BadCase{"parent not dir",
                R("/a 0 100644 1 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:3: Parent must be a directory for /a/b"},
        BadCase{"dot", R("/. 0 40755 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid . or .. in path: /."},
        BadCase{"dotdot", R("/.. 0 40755 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid . or .. in path: /.."},
        BadCase{"dot inside", R("/./x 0 40755 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Parent directory missing for /./x"},
        BadCase{"empty name", R("// 0 40755 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Can't add child: empty file name"},
        BadCase{"trailing slash",
                R("/a 0 40755 1 0 0 0 0.0 - - -\n/a/ 0 40755 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:3: Can't add child: empty file name"},
        BadCase{"name 256", R("/" + std::string(256, 'n') + " 0 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Can't add child: name longer than 255 bytes"},
        BadCase{"duplicate", R("/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n"),
                false, "t.dump:3: Path /a already exist"},
        BadCase{"embedded NUL", R(std::string("/a 0 100644 1 0 0 0 0.0 - -", 27) + '\0' + " -\n"),
                false, "t.dump:2: Invalid embedded NUL character at position 27"},
        BadCase{"mode 0", R("/a 0 0 1 0 0 0 0.0 - - -\n"), false, "t.dump:2: Invalid mode 0"},
        BadCase{"mode 644", R("/a 0 644 1 0 0 0 0.0 - - -\n"), false, "t.dump:2: Invalid mode 644"},
        BadCase{"mode type 07", R("/a 0 170644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid mode 170644"},
        BadCase{"mode not octal", R("/a 0 100648 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer '100648' in MODE"},
        BadCase{"mode empty", R("/a 0  1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer '' in MODE"},
        BadCase{"size", R("/a x 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer 'x' in SIZE"},
        BadCase{"size float", R("/a 1.0 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer '1.0' in SIZE"},
        BadCase{"size sign only", R("/a - 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer '-' in SIZE"},
        BadCase{"nlink", R("/a 0 100644 one 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer 'one' in NLINK"},
        BadCase{"uid", R("/a 0 100644 1 u 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer 'u' in UID"},
        BadCase{"gid with uid 0", R("/a 0 100644 1 0 g 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer 'g' in GID"},
        BadCase{"rdev with uid 0", R("/a 0 100644 1 0 0 r 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer 'r' in RDEV"},
        BadCase{"mtime no dot", R("/a 0 100644 1 0 0 0 5 - - -\n"), false,
                "t.dump:2: Invalid integer '' in MTIME"},
        BadCase{"mtime bad sec", R("/a 0 100644 1 0 0 0 x.0 - - -\n"), false,
                "t.dump:2: Invalid integer 'x' in MTIME"},
        BadCase{"mtime two dots", R("/a 0 100644 1 0 0 0 1.2.3 - - -\n"), false,
                "t.dump:2: Invalid integer '2.3' in MTIME"},
        BadCase{"missing fields", R("/a 0 100644\n"), false,
                "t.dump:2: Invalid integer '' in NLINK"},
        BadCase{"double space", R("/a 0 100644  1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid integer '' in NLINK"},
        BadCase{"MODE before SIZE", R("/a x 0 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid mode 0"},
        BadCase{"content size", R("/a 3 100644 1 0 0 0 0.0 - ab -\n"), false,
                "t.dump:2: Invalid content size 2, must match size 3"},
        BadCase{"content too big",
                R("/a 5001 100644 1 0 0 0 0.0 - " + std::string(5001, 'c') + " -\n"), false,
                "t.dump:2: Inline content size 5001 exceeds maximum 5000"},
        BadCase{"symlink no target", R("/a 0 120777 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Invalid symlink: empty target"},
        BadCase{"symlink NUL target", R("/a 0 120777 1 0 0 0 0.0 \\x00x - -\n"), false,
                "t.dump:2: Invalid symlink: empty target"},
        BadCase{"symlink 4096",
                R("/a 4096 120777 1 0 0 0 0.0 " + std::string(4096, 'l') + " - -\n"), false,
                "t.dump:2: Invalid symlink: target longer than 4095 bytes"},
        BadCase{"payload 4096", R("/a 1 100644 1 0 0 0 0.0 " + std::string(4096, 'p') + " - -\n"),
                false, "t.dump:2: Invalid payload: longer than 4095 bytes"},
        BadCase{"file too large", R("/a 9007199254740993 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: File too large: size 9007199254740993 needs more than 1024 chunks"},
        BadCase{"bad escape", R("/a\\q 0 100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: Unsupported escape type q in PATH"},
        BadCase{"lone backslash", R("/a 0 100644 1 0 0 0 0.0 x\\ - -\n"), false,
                "t.dump:2: No character after escape in PAYLOAD"},
        BadCase{"short hex escape", R("/a 1 100644 1 0 0 0 0.0 - \\x4 -\n"), false,
                "t.dump:2: No hex characters after hex escape in CONTENT"},
        BadCase{"hex escape at end", R("/a 1 100644 1 0 0 0 0.0 - \\x -\n"), false,
                "t.dump:2: No hex characters after hex escape in CONTENT"},
        BadCase{"bad hex escape", R("/a 1 100644 1 0 0 0 0.0 - \\xg0 -\n"), false,
                "t.dump:2: Invalid hex characters after hex escape in CONTENT"},
        BadCase{"bad digest escape", R("/a 0 100644 1 0 0 0 0.0 - - \\z\n"), false,
                "t.dump:2: Unsupported escape type z in DIGEST"},
        BadCase{"xattr no =", R("/a 0 100644 1 0 0 0 0.0 - - - user.a\n"), false,
                "t.dump:2: Missing = in xattr"},
        BadCase{"xattr double space", R("/a 0 100644 1 0 0 0 0.0 - - - user.a=1  user.b=2\n"),
                false, "t.dump:2: Missing = in xattr"},
        BadCase{"xattr empty key", R("/a 0 100644 1 0 0 0 0.0 - - - =v\n"), false,
                "t.dump:2: Can't set xattr: name length 0 not in 1..255"},
        BadCase{"xattr NUL key", R("/a 0 100644 1 0 0 0 0.0 - - - \\x00a=v\n"), false,
                "t.dump:2: Can't set xattr: name length 0 not in 1..255"},
        BadCase{"xattr key 256",
                R("/a 0 100644 1 0 0 0 0.0 - - - " + std::string(256, 'k') + "=v\n"), false,
                "t.dump:2: Can't set xattr: name length 256 not in 1..255"},
        BadCase{"xattr bad escape", R("/a 0 100644 1 0 0 0 0.0 - - - a\\=v\n"), false,
                "t.dump:2: No character after escape in xattr name"},
        BadCase{"xattr bad value escape", R("/a 0 100644 1 0 0 0 0.0 - - - a=\\\n"), false,
                "t.dump:2: No character after escape in xattr value"},
        BadCase{"xattr budget",
                R("/a 0 100644 1 0 0 0 0.0 - - - user.a=" + std::string(32743, 'v') + "\n"), false,
                "t.dump:2: Can't set xattr user.a: the inode's xattrs exceed 32767 bytes"},
        BadCase{"too many xattrs",
                R("/a 0 100644 1 0 0 0 0.0 - - - " + std::string(65536, 'k') + "\n"), false,
                "t.dump:2: Too many xattrs"},
        BadCase{"dir hardlink", R("/a 0 @40755 1 0 0 0 0.0 / - -\n"), false,
                "t.dump:2: Directories can't be hardlinked"},
        BadCase{"root hardlink", "/ 0 @40755 1 0 0 0 0.0 / - -\n", false,
                "t.dump:1: Directories can't be hardlinked"},
        BadCase{"hardlink no target", R("/a 0 @100644 1 0 0 0 0.0 - - -\n"), false,
                "t.dump:2: No target path for the hardlink"},
        BadCase{"hardlink missing target", R("/a 0 @100644 1 0 0 0 0.0 /nope - -\n"), false,
                "t.dump:2: No target at /nope for hardlink"},
        BadCase{"hardlink self", R("/a 0 @100644 1 0 0 0 0.0 /a - -\n"), false,
                "t.dump:2: Self-referential hardlink /a"},
        BadCase{"hardlink to dir",
                R("/d 0 40755 1 0 0 0 0.0 - - -\n/a 0 @100644 1 0 0 0 0.0 /d - -\n"), false,
                "t.dump:3: Hardlink target /d is a directory"},
        BadCase{"hardlink to root", R("/a 0 @100644 1 0 0 0 0.0 / - -\n"), false,
                "t.dump:2: Hardlink target / is a directory"},
        BadCase{"hardlink cycle",
                R("/a 0 @100644 1 0 0 0 0.0 /b - -\n/b 0 @100644 1 0 0 0 0.0 /a - -\n"), false,
                "t.dump:3: Hardlink cycle through /a"},
        BadCase{"hardlink as parent",
                R("/f 0 100644 1 0 0 0 0.0 - - -\n/h 0 @100644 1 0 0 0 0.0 /f - -\n"
                  "/h/x 0 100644 1 0 0 0 0.0 - - -\n"),
                false, "t.dump:4: Parent must be a directory for /h/x"},
        // Strict mode (CFS_PARSE_STRICT).
        BadCase{"strict no newline", R("/a 0 100644 1 0 0 0 0.0 - - -"), true,
                "t.dump:2: Missing trailing newline"},
        BadCase{"strict rdev on file", R("/a 0 100644 1 0 0 5 0.0 - - -\n"), true,
                "t.dump:2: Non-zero devnum on non-device"},
        BadCase{"strict symlink size", R("/a 5 120777 1 0 0 0 0.0 target - -\n"), true,
                "t.dump:2: Invalid symlink size 6, must match size 5"},
        BadCase{"strict symlink content", R("/a 6 120777 1 0 0 0 0.0 target abcdef -\n"), true,
                "t.dump:2: Symlink cannot have content"},
        BadCase{"strict short digest", R("/a 1 100644 1 0 0 0 0.0 x - abcd\n"), true,
                "t.dump:2: Invalid digest 'abcd' in DIGEST: must be 64 or 128 hex digits"},
        BadCase{"strict empty digest", R("/a 1 100644 1 0 0 0 0.0 x -\n"), true,
                "t.dump:2: Invalid digest '' in DIGEST: must be 64 or 128 hex digits"}),
    [](const ::testing::TestParamInfo<BadCase>& pi) {
      std::string n = pi.param.what;
      for (char& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

// ---------------------------------------------------------------------------------------------
// Accepted input and the resulting tree.

TEST(Parse, FullLine) {
  std::string digest(64, 'a');
  Node n = parse_one("/x 15 100644 3 1000 100 0 1633950376.123 ab/cdef FOOBAR\\nINAFILE\\n " +
                     digest + " user.a=1 trusted.b=x\\x3dy\n");
  EXPECT_EQ(n.mode, 0100644u);
  EXPECT_EQ(n.size, 15u);
  EXPECT_EQ(n.nlink, 3u);
  EXPECT_EQ(n.uid, 1000u);
  EXPECT_EQ(n.gid, 100u);
  EXPECT_EQ(n.mtime_sec, 1633950376);
  EXPECT_EQ(n.mtime_nsec, 123u);
  EXPECT_EQ(n.payload, "ab/cdef");
  EXPECT_EQ(n.content, std::optional<std::string>("FOOBAR\nINAFILE\n"));
  ASSERT_TRUE(n.digest);
  EXPECT_EQ(n.digest->bytes[0], 0xaa);
  EXPECT_EQ(n.digest->bytes[31], 0xaa);
  ASSERT_EQ(n.xattrs.size(), 2u);
  EXPECT_EQ(n.xattrs[0], (Xattr{"user.a", "1"}));
  EXPECT_EQ(n.xattrs[1], (Xattr{"trusted.b", "x=y"}));
}

TEST(Parse, RootLineSetsRoot) {
  auto t = parse_str("/ 4096 40555 7 1 2 0 5.6 - - - user.r=1\n");
  ASSERT_TRUE(t);
  const Node& r = t->node(t->root());
  EXPECT_EQ(r.mode, 040555u);
  EXPECT_EQ(r.nlink, 7u);
  EXPECT_EQ(r.uid, 1u);
  EXPECT_EQ(r.gid, 2u);
  EXPECT_EQ(r.mtime_sec, 5);
  EXPECT_EQ(r.mtime_nsec, 6u);
  EXPECT_EQ(r.xattrs, (std::vector<Xattr>{{"user.r", "1"}}));
  EXPECT_EQ(r.parent, t->root());
}

TEST(Parse, EscapesInEveryField) {
  Node n = parse_one(
      "/\\x20sp\\\\ace\\t 4 100644 1 0 0 0 0.0 p\\x2d\\r\\n \\x00\\x01\\xFf\\xfe - "
      "k\\x3d\\x20=v\\x3d\\n\\x00z\n",
      "/ sp\\ace\t");
  EXPECT_EQ(n.payload, "p-\r\n");
  EXPECT_EQ(n.content, std::optional<std::string>(std::string("\0\1\xff\xfe", 4)));
  ASSERT_EQ(n.xattrs.size(), 1u);
  EXPECT_EQ(n.xattrs[0].key, "k= ");
  EXPECT_EQ(n.xattrs[0].value, std::string("v=\n\0z", 5));  // values keep NULs
}

TEST(Parse, EscapedDashIsAValue) {
  Node n = parse_one("/x 1 100644 1 0 0 0 0.0 \\x2d \\x2d -\n");
  EXPECT_EQ(n.payload, "-");
  EXPECT_EQ(n.content, std::optional<std::string>("-"));
}

TEST(Parse, AllFileTypes) {
  auto t =
      parse_str(R("/b 0 60600 1 0 0 2049 0.0 - - -\n/c 0 20600 1 0 0 259 0.0 - - -\n"
                  "/d 0 40700 2 0 0 0 0.0 - - -\n/f 0 10644 1 0 0 0 0.0 - - -\n"
                  "/l 1 120777 1 0 0 0 0.0 t - -\n/r 0 100644 1 0 0 0 0.0 - - -\n"
                  "/s 0 140755 1 0 0 0 0.0 - - -\n"));
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->node(*t->lookup("/b")).rdev, 2049u);
  EXPECT_EQ(t->node(*t->lookup("/c")).rdev, 259u);
  EXPECT_EQ(t->node(t->root()).children.size(), 7u);
}

TEST(Parse, ChildrenSortedByBytes) {
  auto t =
      parse_str(R("/b 0 100644 1 0 0 0 0.0 - - -\n/\\xc3 0 100644 1 0 0 0 0.0 - - -\n"
                  "/B 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n"));
  ASSERT_TRUE(t);
  std::vector<std::string> names;
  for (const Entry& e : t->node(t->root()).children) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"B", "a", "b", "\xc3"}));
}

TEST(Parse, NoTrailingNewlineLenient) {
  auto t = parse_str(R("/a 0 100644 1 0 0 0 0.0 - - -"));
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->lookup("/a"));
  EXPECT_TRUE(parse_str(R("/a 0 100644 1 0 0 0 0.0 - - -\n"), true));
}

TEST(Parse, ErrorsCarrySourceName) {
  ParseOptions o;
  auto t = parse("/x\n", o);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().context(), "<stdin>:1: Invalid integer '' in MODE");
}

// ---------------------------------------------------------------------------------------------
// Upstream quirks reproduced on purpose (the table in docs/dump-format.md).

TEST(Quirks, GidAndRdevErrorsOnlyForUidZero) {
  Node n = parse_one("/x 0 20644 1 5 bad worse 0.0 - - -\n");
  EXPECT_EQ(n.uid, 5u);
  EXPECT_EQ(n.gid, 0u);
  EXPECT_EQ(n.rdev, 0u);
  EXPECT_NE(error_of(R("/x 0 20644 1 0 0 worse 0.0 - - -\n")), "<accepted>");
}

TEST(Quirks, StrtoullSemantics) {
  Node n = parse_one("/x +5 100644 \t7 -1 18446744073709551616 0 -1.4294967297 - - -\n");
  EXPECT_EQ(n.size, 5u);          // '+' sign
  EXPECT_EQ(n.nlink, 7u);         // leading whitespace
  EXPECT_EQ(n.uid, 0xffffffffu);  // -1 wraps, then truncates to 32 bits
  EXPECT_EQ(n.gid, 0xffffffffu);  // overflow saturates
  EXPECT_EQ(n.mtime_sec, -1);     // 2^64-1 as int64
  EXPECT_EQ(n.mtime_nsec, 1u);    // 2^32+1 truncated to 32 bits
  EXPECT_EQ(parse_one("/x 0 0100644 1 0 0 0 0.0 - - -\n").mode, 0100644u);  // octal "0" ok
}

TEST(Quirks, MtimeIsTwoIntegers) {
  Node n = parse_one("/x 0 100644 1 0 0 0 1.5 - - -\n");
  EXPECT_EQ(n.mtime_sec, 1);
  EXPECT_EQ(n.mtime_nsec, 5u);
}

TEST(Quirks, ModeBitsAbove16Kept) {
  // honggfuzz-longlink-unterminated: 020720777 has type bits of a symlink.
  Node n = parse_one("/x 0 20720777 1 0 0 0 0.0 target - -\n");
  EXPECT_EQ(n.mode, 020720777u);
  EXPECT_TRUE(n.is_symlink());
  EXPECT_EQ(n.size, 6u);  // symlink SIZE becomes strlen(target)
}

TEST(Quirks, MissingTrailingFieldsAreEmpty) {
  // 9 fields: CONTENT and DIGEST are empty strings, not "-": content "" == none; digest set.
  Node n = parse_one("/x 0 120777 1 0 0 0 0.0 t\n");
  EXPECT_EQ(n.payload, "t");
  EXPECT_FALSE(n.content);
  EXPECT_TRUE(n.digest);
  // Strict mode only insists on a valid digest for regular files.
  EXPECT_NE(error_of(R("/x 0 100644 1 0 0 0 0.0 -\n"), true), "<accepted>");
  EXPECT_EQ(error_of(R("/x 0 40755 1 0 0 0 0.0 - -\n"), true), "<accepted>");
}

TEST(Quirks, RelativeAndDoubleSlashPathsAccepted) {
  auto t = parse_str(R("//d 0 40755 2 0 0 0 0.0 - - -\nd//e 0 100644 1 0 0 0 0.0 - - -\n"));
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_TRUE(t->lookup("/d/e"));
}

TEST(Quirks, NulTruncatesCStringFields) {
  Node n = parse_one("/x\\x00junk 0 100644 1 0 0 0 0.0 a\\x00b - - k\\x00x=v\n");
  EXPECT_EQ(n.payload, "a");
  ASSERT_EQ(n.xattrs.size(), 1u);
  EXPECT_EQ(n.xattrs[0].key, "k");
}

TEST(Quirks, RdevIgnoredOnNonDevicesLenient) {
  EXPECT_EQ(parse_one("/x 0 100644 1 0 0 77 0.0 - - -\n").rdev, 0u);
}

TEST(Quirks, RdevTruncatedTo32Bits) {
  // lcfs_inode_s::st_rdev is 32 bits; 2^32 on a chardev becomes 0 (a whiteout).
  Node n = parse_one("/x 0 20644 1 0 0 4294967296 0.0 - - -\n");
  EXPECT_EQ(n.rdev, 0u);
  EXPECT_TRUE(overlay::is_whiteout(n.mode, n.rdev));
}

TEST(Quirks, SymlinkSizeAndContentIgnoredLenient) {
  Node n = parse_one("/x 3 120777 1 0 0 0 0.0 target abc -\n");
  EXPECT_EQ(n.size, 6u);
  EXPECT_FALSE(n.content);
  // The content length is still checked against SIZE.
  EXPECT_NE(error_of(R("/x 2 120777 1 0 0 0 0.0 target abc -\n")), "<accepted>");
}

TEST(Quirks, DigestHexNotValidatedLenient) {
  // Upstream keeps the decodable prefix (the rest is stack garbage); we zero-fill.
  Node n = parse_one("/x 1 100644 1 0 0 0 0.0 p - abzz" + std::string(60, '1') + "\n");
  ASSERT_TRUE(n.digest);
  EXPECT_EQ(n.digest->bytes[0], 0xab);
  EXPECT_EQ(n.digest->bytes[1], 0);
  EXPECT_EQ(n.digest->bytes[31], 0);
  // Longer than 64: the first 32 bytes count.
  Node m = parse_one("/x 1 100644 1 0 0 0 0.0 p - " + std::string(66, 'f') + "\n");
  EXPECT_EQ(m.digest->bytes[31], 0xff);
  // Upper case is fine everywhere.
  Node u = parse_one("/x 1 100644 1 0 0 0 0.0 p - " + std::string(64, 'F') + "\n", "/x", true);
  EXPECT_EQ(u.digest->bytes[0], 0xff);
}

TEST(Quirks, RepeatedXattrReplacesValue) {
  Node n = parse_one("/x 0 100644 1 0 0 0 0.0 - - - user.a=1 user.b=2 user.a=3\n");
  EXPECT_EQ(n.xattrs, (std::vector<Xattr>{{"user.a", "3"}, {"user.b", "2"}}));
}

TEST(Quirks, TrailingSpaceAfterXattrsAccepted) {
  EXPECT_EQ(parse_one("/x 0 100644 1 0 0 0 0.0 - - - user.a=1 \n").xattrs.size(), 1u);
  EXPECT_TRUE(parse_one("/x 0 100644 1 0 0 0 0.0 - - - \n").xattrs.empty());
}

TEST(Quirks, EmptyXattrValue) {
  EXPECT_EQ(parse_one("/x 0 100644 1 0 0 0 0.0 - - - user.a=\n").xattrs,
            (std::vector<Xattr>{{"user.a", ""}}));
}

TEST(Quirks, ContentAndPayloadKeptOnOtherTypes) {
  // Upstream stores them; the writer only uses them for regular files.
  Node n = parse_one("/x 2 40755 2 0 0 0 0.0 pl ab " + std::string(64, '0') + "\n");
  EXPECT_EQ(n.payload, "pl");
  EXPECT_EQ(n.content, std::optional<std::string>("ab"));
  EXPECT_TRUE(n.digest);
}

TEST(Quirks, DirectoryNlinkAndSizeAsGiven) {
  Node n = parse_one("/x 12345 40755 99 0 0 0 0.0 - - -\n");
  EXPECT_EQ(n.size, 12345u);
  EXPECT_EQ(n.nlink, 99u);
}

// ---------------------------------------------------------------------------------------------
// Limits at their boundaries.

TEST(Limits, Boundaries) {
  EXPECT_TRUE(parse_str(R("/" + std::string(255, 'n') + " 0 100644 1 0 0 0 0.0 - - -\n")));
  EXPECT_TRUE(
      parse_str(R("/x 5000 100644 1 0 0 0 0.0 - " + std::string(5000, 'c') + " -\n"), true));
  EXPECT_TRUE(
      parse_str(R("/x 4095 120777 1 0 0 0 0.0 " + std::string(4095, 'l') + " - -\n"), true));
  EXPECT_TRUE(parse_str(R("/x 1 100644 1 0 0 0 0.0 " + std::string(4095, 'p') + " - -\n")));
  EXPECT_TRUE(parse_str(R("/x 0 100644 1 0 0 0 0.0 - - - " + std::string(255, 'k') + "=v\n")));
  // Budget: 12 + (7 + 6 + 32742) = 32767.
  EXPECT_TRUE(
      parse_str(R("/x 0 100644 1 0 0 0 0.0 - - - user.a=" + std::string(32742, 'v') + "\n")));
  // Replacing a value gives its budget back.
  EXPECT_TRUE(parse_str(R("/x 0 100644 1 0 0 0 0.0 - - - user.a=" + std::string(16000, 'v') +
                          " user.a=" + std::string(32742, 'w') + "\n")));
  // Exactly 2^53 bytes (1024 chunks of 2^43) is the largest external file.
  EXPECT_TRUE(parse_str(R("/x 9007199254740992 100644 1 0 0 0 0.0 - - -\n")));
  // An xattr part of exactly 65535 bytes passes the line check (and then hits the budget).
  EXPECT_EQ(
      error_of(R("/x 0 100644 1 0 0 0 0.0 - - - user.a=" + std::string(65535 - 7, 'v') + "\n")),
      "t.dump:2: Can't set xattr user.a: the inode's xattrs exceed 32767 bytes");
}

TEST(Limits, ManyXattrsBudget) {
  // Each "kNNNN=" costs 7 + 5; 2729 of them plus the header fit, 2730 do not.
  auto line = [](int n) {
    std::string s = "/x 0 100644 1 0 0 0 0.0 - - -";
    char buf[16];
    for (int i = 0; i < n; ++i) {
      std::snprintf(buf, sizeof buf, " k%04d=", i);
      s += buf;
    }
    return R(s + "\n");
  };
  EXPECT_TRUE(parse_str(line(2729)));
  EXPECT_FALSE(parse_str(line(2730)));
}

// ---------------------------------------------------------------------------------------------
// Hardlinks.

TEST(Hardlinks, EntryPointsAtTargetNode) {
  auto t =
      parse_str(R("/a 0 @100644 9 9 9 9 bogus /f - -\n"  // only PATH MODE PAYLOAD read
                  "/f 5 100644 1 0 0 0 0.0 obj - -\n"));
  ASSERT_TRUE(t) << t.error().message();
  const Entry* a = t->find_child(t->root(), "a");
  const Entry* f = t->find_child(t->root(), "f");
  ASSERT_TRUE(a && f);
  EXPECT_TRUE(a->hardlink);
  EXPECT_FALSE(f->hardlink);
  EXPECT_EQ(a->node, f->node);
  EXPECT_EQ(t->node(f->node).nlink, 1u);  // not incremented
  EXPECT_EQ(t->node(f->node).parent, t->root());
}

TEST(Hardlinks, ChainsFollowedInAnyOrder) {
  auto t =
      parse_str(R("/a 0 @100644 1 0 0 0 0.0 /b - -\n/b 0 @100644 1 0 0 0 0.0 c - -\n"
                  "/c 0 100644 2 0 0 0 0.0 - - -\n/d 0 @100644 1 0 0 0 0.0 //a - -\n"));
  ASSERT_TRUE(t) << t.error().message();
  NodeId c = t->find_child(t->root(), "c")->node;
  for (const char* n : {"a", "b", "d"}) {
    EXPECT_EQ(t->find_child(t->root(), n)->node, c) << n;
    EXPECT_TRUE(t->find_child(t->root(), n)->hardlink) << n;
  }
}

TEST(Hardlinks, TargetsMayBeAnyNonDirectory) {
  auto t =
      parse_str(R("/l 1 120777 1 0 0 0 0.0 x - -\n/c 0 20644 1 0 0 0 0.0 - - -\n"
                  "/h1 0 @120777 1 0 0 0 0.0 /l - -\n/h2 0 @20644 1 0 0 0 0.0 /c - -\n"));
  ASSERT_TRUE(t) << t.error().message();
}

TEST(Hardlinks, SameNameAsExistingIsDuplicate) {
  EXPECT_EQ(error_of(R("/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 @100644 1 0 0 0 0.0 /a - -\n")),
            "t.dump:3: Path /a already exist");
}

}  // namespace
}  // namespace cfs::dump

namespace cfs::dump {
namespace {

TEST(Unsorted, SiblingsSortedLookupsAndDuplicatesStillWork) {
  auto t =
      parse_str(R("/d 0 40755 2 0 0 0 0.0 - - -\n/c 0 100644 1 0 0 0 0.0 - - -\n"
                  "/a 0 40755 2 0 0 0 0.0 - - -\n/d/z 0 100644 1 0 0 0 0.0 - - -\n"
                  "/a/y 0 @100644 1 0 0 0 0.0 /d/x - -\n/d/x 0 100644 1 0 0 0 0.0 - - -\n"
                  "/b 0 100644 1 0 0 0 0.0 - - -\n"));
  ASSERT_TRUE(t) << t.error().message();
  std::vector<std::string> names;
  for (const Entry& e : t->node(t->root()).children) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c", "d"}));
  ASSERT_TRUE(t->lookup("/d/x"));
  EXPECT_EQ(t->find_child(*t->lookup("/a"), "y")->node, *t->lookup("/d/x"));
  EXPECT_EQ(t->node(*t->lookup("/d/x")).parent, *t->lookup("/d"));
  EXPECT_EQ(error_of(R("/b 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n"
                       "/b 0 100644 1 0 0 0 0.0 - - -\n")),
            "t.dump:4: Path /b already exist");
  EXPECT_EQ(error_of(R("/b 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n"
                       "/a 0 100644 1 0 0 0 0.0 - - -\n")),
            "t.dump:4: Path /a already exist");
}

TEST(Unsorted, ReverseOrderBigDirectoryIsNotQuadratic) {
  // 200k entries in reverse order: one insertion at the front per line would take minutes.
  std::string text(kRoot);
  char buf[64];
  for (int i = 200000; i > 0; --i) {
    std::snprintf(buf, sizeof buf, "/f%07d 0 100644 1 0 0 0 0.0 - - -\n", i);
    text += buf;
  }
  auto t = parse_str(text);
  ASSERT_TRUE(t);
  const auto& kids = t->node(t->root()).children;
  ASSERT_EQ(kids.size(), 200000u);
  EXPECT_EQ(kids.front().name, "f0000001");
  EXPECT_TRUE(std::is_sorted(kids.begin(), kids.end(),
                             [](const Entry& a, const Entry& b) { return a.name < b.name; }));
}

}  // namespace
}  // namespace cfs::dump

namespace cfs::dump {
namespace {

TEST(ParseFile, ReadsFilesAndNamesMissingOnes) {
  std::string path = ::testing::TempDir() + "/parse_file_test.dump";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("/ 4096 40755 2 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n", f);
    std::fclose(f);
  }
  ParseOptions o;
  o.source_name = path;
  auto t = parse_file(path, o);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_TRUE(t->lookup("/a"));
  std::remove(path.c_str());
  auto missing = parse_file(path, o);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find(path), std::string::npos) << missing.error().message();
}

TEST(Hardlinks, LinkIntoACycle) {
  EXPECT_EQ(
      error_of(R("/a 0 @100644 1 0 0 0 0.0 /d/x - -\n/d 0 40755 1 0 0 0 0.0 - - -\n"
                 "/d/x 0 @100644 1 0 0 0 0.0 /d/y - -\n/d/y 0 @100644 1 0 0 0 0.0 /d/x - -\n")),
      "t.dump:5: Hardlink cycle through /d/x");
}

TEST(Hardlinks, EmptyTargetIsTheRoot) {
  EXPECT_EQ(error_of(R("/a 0 @100644 1 0 0 0 0.0 \\x00 - -\n")),
            "t.dump:2: Hardlink target '' (the root) is a directory");
}

}  // namespace
}  // namespace cfs::dump
