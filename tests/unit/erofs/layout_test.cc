// SPDX-License-Identifier: Apache-2.0
// Layout helpers and on-disk struct encodings against values stated in the format
// specification (upstream's, reproduced in docs/format.md §3, §5-§7), not against our output.
#include "cfs/erofs/layout.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "cfs/erofs/format.h"

namespace cfs::erofs {
namespace {

unsigned filter_bit(std::string_view key) {
  XattrName n = split_xattr_name(key);
  return xattr_filter_bit(n.index, n.suffix);
}

TEST(XattrName, PrefixesInComposefsOrder) {
  struct Case {
    std::string_view key;
    XattrIndex index;
    std::string_view suffix;
  };
  const Case cases[] = {
      {"user.foo", XattrIndex::kUser, "foo"},
      {"user.", XattrIndex::kUser, ""},
      {"system.posix_acl_access", XattrIndex::kPosixAclAccess, ""},
      {"system.posix_acl_default", XattrIndex::kPosixAclDefault, ""},
      {"trusted.overlay.metacopy", XattrIndex::kTrusted, "overlay.metacopy"},
      {"security.selinux", XattrIndex::kSecurity, "selinux"},
      {"lustre.x", XattrIndex::kNone, "lustre.x"},
      {"system.other", XattrIndex::kNone, "system.other"},
      {"users.x", XattrIndex::kNone, "users.x"},
  };
  for (const auto& c : cases) {
    XattrName n = split_xattr_name(c.key);
    EXPECT_EQ(n.index, c.index) << c.key;
    EXPECT_EQ(n.suffix, c.suffix) << c.key;
    EXPECT_EQ(std::string(xattr_prefix(n.index)) + std::string(n.suffix), c.key);
  }
}

TEST(XattrName, EntrySizeIsPaddedToFour) {
  // {u8 name_len, u8 index, u16 value_size} + suffix + value, rounded up to 4.
  EXPECT_EQ(xattr_entry_size("user.foo", 5), 12u);                // 4 + 3 + 5
  EXPECT_EQ(xattr_entry_size("trusted.foo", 5), 12u);             // 4 + 3 + 5
  EXPECT_EQ(xattr_entry_size("trusted.overlay.opaque", 1), 20u);  // 4 + 14 + 1 -> 20
  EXPECT_EQ(xattr_entry_size("system.posix_acl_default", 0), 4u);
  EXPECT_EQ(xattr_entry_size("x", 0), 8u);  // index 0 keeps the full name: 4 + 1 -> 8
}

TEST(XattrBody, SizeAndIcount) {
  EXPECT_EQ(xattr_body_size(0, 0), 0u);
  EXPECT_EQ(xattr_icount(0), 0u);
  // special_v1 root: 7 inline xattrs, 168 bytes, icount 40 (§6).
  EXPECT_EQ(xattr_icount(168), 40u);
  // escaped-xattr: 1 shared + two inline entries = 80 bytes, icount 18 (§6).
  std::uint64_t inline_bytes = xattr_entry_size("trusted.overlay.overlay.redirect", 5) +
                               xattr_entry_size("user.overlay.redirect", 5);
  EXPECT_EQ(xattr_body_size(1, inline_bytes), 80u);
  EXPECT_EQ(xattr_icount(80), 18u);
}

TEST(XattrFilter, BitsFromTheSpecTable) {
  const std::pair<std::string_view, unsigned> bits[] = {
      {"trusted.overlay.metacopy", 31}, {"trusted.overlay.redirect", 17},
      {"trusted.overlay.opaque", 20},   {"trusted.overlay.overlay.opaque", 5},
      {"user.overlay.opaque", 10},      {"security.selinux", 11},
      {"security.capability", 29},      {"trusted.overlay.overlay.whiteout", 4},
      {"user.overlay.whiteout", 9},     {"trusted.overlay.overlay.whiteouts", 12},
      {"user.overlay.whiteouts", 20},   {"system.posix_acl_default", 21},
      {"system.posix_acl_access", 30},  {"user.foo", 12},
  };
  for (auto [key, bit] : bits) EXPECT_EQ(filter_bit(key), bit) << key;
}

TEST(XattrFilter, WholeFilterExamples) {
  auto filter = [](std::initializer_list<std::string_view> keys) {
    std::uint32_t f = 0;
    for (auto k : keys) f |= 1u << filter_bit(k);
    return ~f;
  };
  EXPECT_EQ(filter({"trusted.overlay.opaque"}), 0xffefffffu);
  EXPECT_EQ(filter({"trusted.overlay.metacopy"}), 0x7fffffffu);
  EXPECT_EQ(filter({"trusted.foo1", "trusted.overlay.opaque", "trusted.overlay.overlay.opaque",
                    "trusted.overlay.overlay.whiteouts", "user.foo2", "user.overlay.opaque",
                    "user.overlay.whiteouts"}),
            0xffefabdfu);
}

TEST(Chunking, FormatTable) {
  const std::pair<std::uint64_t, std::uint16_t> cases[] = {
      {1, 0},
      {4096, 0},
      {4097, 1},
      {1ull << 20, 8},
      {(1ull << 20) + 1, 9},
      {1ull << 40, 28},
      {(1ull << 42) + 1, 31},
      {1ull << 43, 31},
      {(1ull << 43) + 1, 31},
  };
  for (auto [size, format] : cases) {
    Chunking c = chunking(size);
    EXPECT_EQ(c.format(), format) << size;
    EXPECT_EQ(c.chunkbits, format + 12u) << size;
  }
  EXPECT_EQ(chunking(1ull << 43).count, 1u);
  EXPECT_EQ(chunking((1ull << 43) + 1).count, 2u);
}

TEST(Chunking, ComposefsLimits) {
  // bigfile.dump: 9*10^15 bytes = 1024 chunks of 2^43, the most composefs accepts.
  EXPECT_EQ(chunking(9000000000000000ull).count, 1024u);
  // should-fail-too-big.dump: 9.5*10^15 bytes needs more.
  EXPECT_GT(chunking(9500000000000000ull).count, kMaxChunks);
  // 2^53 is the largest size that still fits.
  EXPECT_EQ(chunking(1ull << 53).count, kMaxChunks);
  EXPECT_GT(chunking((1ull << 53) + 1).count, kMaxChunks);
}

TEST(InlineSplit, TailOverHalfABlockBecomesABlock) {
  const std::tuple<std::uint64_t, std::uint64_t, std::uint32_t> cases[] = {
      {15, 0, 15},  {2048, 0, 2048}, {2049, 1, 0},   {4095, 1, 0},
      {4096, 1, 0}, {4097, 1, 1},    {5000, 1, 904}, {6144, 1, 2048},
  };
  for (auto [size, blocks, tail] : cases) {
    DataSplit s = inline_data_split(size);
    EXPECT_EQ(s.n_blocks, blocks) << size;
    EXPECT_EQ(s.tail, tail) << size;
  }
}

template <typename T>
std::vector<std::uint8_t> bytes_of(const T& v) {
  std::vector<std::uint8_t> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));
  return b;
}

TEST(Format, CompactInodeFieldOffsets) {
  InodeCompact i{};
  i.i_format = 0x0102;
  i.i_xattr_icount = 0x0304;
  i.i_mode = 0x0506;
  i.i_nlink = 0x0708;
  i.i_size = 0x090a0b0c;
  i.i_u = 0x11121314;
  i.i_ino = 0x15161718;
  i.i_uid = 0x191a;
  i.i_gid = 0x1b1c;
  auto b = bytes_of(i);
  const std::vector<std::uint8_t> want = {
      0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0x0c, 0x0b, 0x0a, 0x09, 0, 0, 0, 0,
      0x14, 0x13, 0x12, 0x11, 0x18, 0x17, 0x16, 0x15, 0x1a, 0x19, 0x1c, 0x1b, 0, 0, 0, 0};
  EXPECT_EQ(b, want);
}

TEST(Format, ExtendedInodeFieldOffsets) {
  InodeExtended i{};
  i.i_size = 0x0102030405060708ull;
  i.i_u = 0xaabbccdd;
  i.i_mtime = 0x1122334455667788ull;
  i.i_mtime_nsec = 0x99;
  i.i_nlink = 0x01020304;
  auto b = bytes_of(i);
  EXPECT_EQ(b[8], 0x08);
  EXPECT_EQ(b[15], 0x01);
  EXPECT_EQ(b[16], 0xdd);
  EXPECT_EQ(b[32], 0x88);
  EXPECT_EQ(b[39], 0x11);
  EXPECT_EQ(b[40], 0x99);
  EXPECT_EQ(b[44], 0x04);
  EXPECT_EQ(b[47], 0x01);
}

TEST(Format, SuperblockMatchesWorkedExample) {
  // The first 48 bytes of special_v1.cfs's superblock (§6).
  SuperBlock sb{};
  sb.magic = kSuperMagic;
  sb.feature_compat = kFeatureCompatMtime | kFeatureCompatXattrFilter;
  sb.blkszbits = kBlockSizeBits;
  sb.root_nid = 36;
  sb.inos = 266;
  sb.build_time = 1633950376;
  sb.blocks = 7;
  sb.xattr_blkaddr = 2;
  auto b = bytes_of(sb);
  const std::vector<std::uint8_t> want = {0xe2, 0xe1, 0xf5, 0xe0, 0,    0,    0, 0, 0x06, 0, 0, 0,
                                          0x0c, 0,    0x24, 0,    0x0a, 0x01, 0, 0, 0,    0, 0, 0,
                                          0xa8, 0x1a, 0x64, 0x61, 0,    0,    0, 0, 0,    0, 0, 0,
                                          0x07, 0,    0,    0,    0,    0,    0, 0, 0x02, 0, 0, 0};
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin(), b.begin() + 48), want);
}

TEST(Format, DirentAndXattrRecords) {
  Dirent d{};
  d.nid = 0x0102030405060708ull;
  d.nameoff = 0x0a0b;
  d.file_type = static_cast<std::uint8_t>(FileType::kSymlink);
  auto b = bytes_of(d);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(b[8], 0x0b);
  EXPECT_EQ(b[10], 7);
  EXPECT_EQ(b[11], 0);
  XattrIbodyHeader h{};
  h.h_name_filter = 0xffefabdf;
  h.h_shared_count = 3;
  auto hb = bytes_of(h);
  EXPECT_EQ(hb[0], 0xdf);
  EXPECT_EQ(hb[4], 3);
}

}  // namespace
}  // namespace cfs::erofs
