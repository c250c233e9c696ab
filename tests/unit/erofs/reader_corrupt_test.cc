// SPDX-License-Identifier: Apache-2.0
// Hostile images: every byte of the metadata of several reference images flipped, truncations
// at many offsets, and hand-crafted inconsistencies (directory loop, nameoff out of range,
// xattr count overflow, huge sizes, compressed layout, overlapping blocks). The reader must
// either succeed or report kCorruptImage; never crash, hang or fail otherwise. The unit label
// runs these under ASan/UBSan in CI.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/util/sys.h"

namespace cfs::erofs {
namespace {

const std::string kRefDir =
    std::string(CFS_SHARED_DIR) + "/compat/composefs-assets/reference-outputs";

std::vector<std::byte> load_ref(const std::string& name) {
  auto s = sys::read_file(kRefDir + "/" + name);
  if (!s) return {};
  std::vector<std::byte> v(s->size());
  std::memcpy(v.data(), s->data(), s->size());
  return v;
}

#define LOAD_OR_SKIP(var, name)                                      \
  auto var = load_ref(name);                                         \
  do {                                                               \
    if (var.empty()) GTEST_SKIP() << "asset " << name << " missing"; \
  } while (0)

// Returns "" when every failure was kCorruptImage, else a description of the first other one.
template <typename T>
std::string only_corrupt(const Result<T>& r, const char* what) {
  if (r || r.error().is(Errc::kCorruptImage)) return "";
  return std::string(what) + ": " + r.error().message();
}

// Drives the whole API over an image; returns "" if all is well (success or kCorruptImage).
std::string exercise(std::span<const std::byte> bytes) {
  auto img = Image::from_bytes(bytes);
  if (!img) return only_corrupt(img, "open");
  if (auto s = only_corrupt(check_image(*img), "check_image"); !s.empty()) return s;
  auto tree = load_tree(*img);
  if (auto s = only_corrupt(tree, "load_tree"); !s.empty()) return s;
  // Random access from the root, bounded breadth-first (directories may loop: cap the work).
  std::vector<std::uint64_t> todo{img->root_nid()};
  for (std::size_t i = 0; i < todo.size() && i < 2000; ++i) {
    auto ino = img->inode(todo[i]);
    if (auto s = only_corrupt(ino, "inode"); !s.empty()) return s;
    if (!ino) continue;
    if (auto s = only_corrupt(img->xattrs(*ino), "xattrs"); !s.empty()) return s;
    if (auto s = only_corrupt(img->read(*ino, 0, 70000), "read"); !s.empty()) return s;
    if (ino->is_symlink())
      if (auto s = only_corrupt(img->readlink(ino->nid), "readlink"); !s.empty()) return s;
    if (!ino->is_dir()) continue;
    auto entries = img->readdir(ino->nid);
    if (auto s = only_corrupt(entries, "readdir"); !s.empty()) return s;
    if (!entries) continue;
    for (const auto& e : *entries) {
      if (e.name != "." && e.name != "..") todo.push_back(e.nid);
      auto l = img->lookup(ino->nid, e.name);
      if (auto s = only_corrupt(l, "lookup"); !s.empty()) return s;
    }
    std::uint64_t cookie = 0;
    auto st = img->iterate_dir(*ino, 0, [&](const DirentView& e) {
      cookie = e.next_offset;
      return false;
    });
    if (auto s = only_corrupt(st, "iterate_dir"); !s.empty()) return s;
    st = img->iterate_dir(*ino, cookie, [](const DirentView&) { return true; });
    if (auto s = only_corrupt(st, "iterate_dir(cookie)"); !s.empty()) return s;
  }
  return "";
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif
#else
constexpr bool kUnderAsan = false;
#endif

class CorruptReference : public ::testing::TestWithParam<const char*> {};

TEST_P(CorruptReference, MetadataBytesFlipped) {
  LOAD_OR_SKIP(orig, GetParam());
  ASSERT_EQ(exercise(orig), "");
  auto img = Image::from_bytes(orig);
  ASSERT_TRUE(img);
  // The metadata (header, inodes, shared xattrs) sits at the front; small images get every
  // byte flipped, big ones an evenly spread sample so the test stays within seconds.
  std::size_t meta_end = std::min<std::size_t>(orig.size(), 16384);
  // About 600 offsets per image and value (40 for big images, whose full walk is slower), each
  // value at a different phase; the fuzzer covers the rest.
  // Under AddressSanitizer (CI's second pass) a quarter of them: the same offsets already ran
  // uninstrumented in the first pass, and the full sample took four minutes of CI there.
  const std::size_t per_value =
      std::size_t{orig.size() > 100000 ? 40u : 600u} / (kUnderAsan ? 4u : 1u);
  const std::size_t step = std::max<std::size_t>(1, meta_end / per_value);
  auto bytes = orig;
  for (std::uint8_t v : {std::uint8_t{0xff}, std::uint8_t{0x00}, std::uint8_t{0x01}}) {
    for (std::size_t off = (v % 3) * step / 3; off < meta_end; off += step) {
      const std::byte saved = bytes[off];
      bytes[off] = v == 0x01 ? (saved ^ std::byte{0x80}) : std::byte{v};
      std::string r = exercise(bytes);
      bytes[off] = saved;
      ASSERT_EQ(r, "") << "offset " << off << " value " << int(v);
    }
  }
}

TEST_P(CorruptReference, Truncations) {
  LOAD_OR_SKIP(orig, GetParam());
  for (std::size_t len = 0; len < orig.size(); len += (len < 2048 ? 61 : 509)) {
    std::span<const std::byte> part(orig.data(), len);
    auto r = Image::from_bytes(part);
    if (r) {
      // Only a file cut inside trailing slack can still open; the superblock's block count
      // makes every real truncation visible.
      ADD_FAILURE() << "truncated to " << len << " of " << orig.size() << " opened";
    } else {
      EXPECT_TRUE(r.error().is(Errc::kCorruptImage)) << r.error().message();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Images, CorruptReference,
                         ::testing::Values("special_v1.cfs", "longlink.cfs",
                                           "honggfuzz-long-symlink.cfs",
                                           "honggfuzz-bigfile-with-acl.cfs", "bigfile-xattr.cfs",
                                           "config-with-hard-link.cfs"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (auto& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// Crafted inconsistencies on special_v1.cfs (layout in composefs-format.md §6).
class Crafted : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = load_ref("special_v1.cfs");
    if (bytes_.empty()) GTEST_SKIP() << "asset special_v1.cfs missing";
  }
  std::uint64_t inode_off(std::uint64_t nid) const { return nid * 32; }  // meta_blkaddr 0
  void put16(std::uint64_t off, std::uint16_t v) { std::memcpy(&bytes_[off], &v, 2); }
  void put32(std::uint64_t off, std::uint32_t v) { std::memcpy(&bytes_[off], &v, 4); }
  void put64(std::uint64_t off, std::uint64_t v) { std::memcpy(&bytes_[off], &v, 8); }
  // Byte offset of the dirent named `name` in the root directory block (block 3).
  std::uint64_t root_dirent(std::string_view name) const {
    const std::uint64_t blk = 3 * 4096;
    std::uint16_t nameoff0;
    std::memcpy(&nameoff0, &bytes_[blk + 8], 2);
    for (std::uint64_t i = 0; i < nameoff0 / 12u; ++i) {
      std::uint16_t a, b = 4096;
      std::memcpy(&a, &bytes_[blk + i * 12 + 8], 2);
      if (i + 1 < nameoff0 / 12u) std::memcpy(&b, &bytes_[blk + (i + 1) * 12 + 8], 2);
      std::string_view n(reinterpret_cast<const char*>(&bytes_[blk + a]), b - a);
      n = n.substr(0, n.find('\0'));
      if (n == name) return blk + i * 12;
    }
    ADD_FAILURE() << "no dirent " << name;
    return 0;
  }
  // Expects load_tree or check_image to report kCorruptImage mentioning `needle`.
  void expect_corrupt(const std::string& needle) {
    ASSERT_EQ(exercise(bytes_), "");
    auto img = Image::from_bytes(bytes_);
    std::string msg;
    if (!img) {
      msg = img.error().message();
    } else if (auto t = load_tree(*img); !t) {
      msg = t.error().message();
    } else if (auto s = check_image(*img); !s) {
      msg = s.error().message();
    } else {
      FAIL() << "image accepted; wanted an error mentioning " << needle;
    }
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
  std::vector<std::byte> bytes_;
};

TEST_F(Crafted, Baseline) {
  auto img = Image::from_bytes(bytes_);
  ASSERT_TRUE(img);
  EXPECT_TRUE(check_image(*img));
  EXPECT_EQ(root_dirent("inline"),
            3 * 4096 + 12u * 262);  // . .. 00..bf blockdev c0..cf chardev ...
}

TEST_F(Crafted, DirectoryLoopViaDirent) {
  // Retype "blockdev" as a directory pointing back at the root: a loop.
  std::uint64_t d = root_dirent("blockdev");
  put64(d, 36);
  bytes_[d + 10] = std::byte{2};
  expect_corrupt("reached twice");
}

TEST_F(Crafted, NameoffOutOfRange) {
  put16(root_dirent("fifo") + 8, 0xfff0);
  expect_corrupt("nameoff");
}

TEST_F(Crafted, FirstNameoffNotAMultipleOf12) {
  put16(3 * 4096 + 8, 13);
  expect_corrupt("first nameoff");
}

TEST_F(Crafted, SharedXattrCountOverflow) {
  // Root inode 36: compact, xattr body at 1152 + 32; h_shared_count is byte 4 of the body.
  bytes_[1152 + 32 + 4] = std::byte{255};
  expect_corrupt("h_shared_count");
}

TEST_F(Crafted, XattrEntryOverrunsBody) {
  // First inline entry of the root: e_value_size (bytes 2..3 of the entry) made huge.
  put16(1152 + 32 + 12 + 2, 0xfff0);
  expect_corrupt("out of bounds");
}

TEST_F(Crafted, SharedXattrIdOutsideImage) {
  // blockdev (nid 235) has one shared id right after its 12-byte header.
  put32(235 * 32 + 32 + 12, 0x7fffffff);
  expect_corrupt("shared xattr id");
}

TEST_F(Crafted, HugeInlineSize) {
  // inline-large3 (nid 313) is the extended inode: i_size is a u64 at offset 8.
  put64(inode_off(313) + 8, std::uint64_t{1} << 62);
  expect_corrupt("nid 313");
}

TEST_F(Crafted, HugeDirectorySize) {
  put32(inode_off(36) + 8, 0xfffffff0u);
  expect_corrupt("nid 36");
}

TEST_F(Crafted, DataBlockBeyondImage) {
  put32(inode_off(311) + 16, 0x00ffffff);  // inline-large1: FLAT_PLAIN raw_blkaddr
  expect_corrupt("beyond the image");
}

TEST_F(Crafted, CompressedLayout) {
  put16(inode_off(309), 1 << 1);  // inline: FLAT_INLINE -> COMPRESSED_FULL
  expect_corrupt("compressed");
}

TEST_F(Crafted, BadMode) {
  put16(inode_off(307) + 4, 0170777);  // fifo -> unknown type
  expect_corrupt("i_mode");
}

TEST_F(Crafted, DirentTypeMismatch) {
  bytes_[root_dirent("fifo") + 10] = std::byte{1};  // claims regular file
  expect_corrupt("file_type");
}

TEST_F(Crafted, OverlappingDataBlocks) {
  put32(inode_off(311) + 16, 3);  // inline-large1 data = the root's directory block
  expect_corrupt("overlaps");
}

TEST_F(Crafted, DirentPointsIntoSuperblock) {
  put64(root_dirent("fifo"), 2);
  expect_corrupt("superblock");
}

TEST_F(Crafted, UnsortedNames) {
  // Swap the names "fifo" and "inline"'s first bytes: "iifo" > "escaped-xattr" still, but
  // "fnline" < "iifo" breaks the order.
  std::uint64_t a = root_dirent("fifo"), b = root_dirent("inline");
  std::uint16_t na, nb;
  std::memcpy(&na, &bytes_[a + 8], 2);
  std::memcpy(&nb, &bytes_[b + 8], 2);
  std::swap(bytes_[3 * 4096 + na], bytes_[3 * 4096 + nb]);
  expect_corrupt("not sorted");
}

TEST_F(Crafted, BadSuperblockMagicAndBlockSize) {
  auto copy = bytes_;
  put32(1024, 0x12345678);
  expect_corrupt("superblock magic");
  bytes_ = copy;
  bytes_[1024 + 12] = std::byte{10};
  expect_corrupt("block size");
}

}  // namespace
}  // namespace cfs::erofs
