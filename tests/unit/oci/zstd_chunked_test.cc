// SPDX-License-Identifier: Apache-2.0
// zstd:chunked writer (oci/zstd_chunked.h). The integration test checks blobs with the zstd
// CLI and an independent TOC parser; here: the CRC against Go's published check value, and a
// hand-made tar whose layout is known by construction, decoded with libzstd frame by frame.
#include "cfs/oci/zstd_chunked.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "cfs/oci/digest.h"
#include "cfs/oci/tar.h"
#include "testutil/ustar.h"

namespace cfs::oci {
namespace {

using ::testing::HasSubstr;

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s)); }

TEST(ZstdChunked, Crc64IsoCheckValue) {
  // CRC-64/GO-ISO check value (the CRC catalogue's "123456789").
  EXPECT_EQ(crc64_iso(0, bytes("123456789")), 0xB90956C775A41001ull);
  EXPECT_EQ(crc64_iso(crc64_iso(0, bytes("1234")), bytes("56789")), 0xB90956C775A41001ull);
}

// Mode 0755, uid 1000, mtime one day after the epoch: values the TOC must carry.
std::string header(const std::string& name, std::uint64_t size, char type) {
  return testutil::ustar_header(name, size, type, 0755, 1000, 86400);
}
std::string padded(std::string d) { return testutil::ustar_padded(std::move(d)); }

std::string decompress(std::string_view z) {
  std::string out;
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ZSTD_inBuffer in{z.data(), z.size(), 0};
  std::vector<char> buf(1 << 16);
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    const std::size_t rc = ZSTD_decompressStream(d, &o, &in);
    EXPECT_FALSE(ZSTD_isError(rc)) << ZSTD_getErrorName(rc);
    if (ZSTD_isError(rc)) break;
    out.append(buf.data(), o.pos);
  }
  ZSTD_freeDCtx(d);
  return out;
}

TEST(ZstdChunked, EveryFileIsAFrameAndTheWholeBlobIsTheTar) {
  const std::string big(100000, 'x'), small = "hello\n";
  const std::string tar = header("dir/", 0, '5') + header("dir/big", big.size(), '0') +
                          padded(big) + header("dir/empty", 0, '0') +
                          header("dir/small", small.size(), '0') + padded(small) +
                          std::string(1024, '\0');
  std::string blob;
  ZstdChunkedWriter w(
      [&](std::span<const std::byte> b) {
        blob.append(reinterpret_cast<const char*>(b.data()), b.size());
        return Status{};
      },
      "layer");
  // Fed in odd pieces: frame boundaries must not depend on how the tar arrives.
  for (std::size_t off = 0; off < tar.size(); off += 777)
    ASSERT_TRUE(w.write(bytes(std::string_view(tar).substr(off, 777))));
  auto r = w.finish();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->blob_size, blob.size());
  EXPECT_EQ(decompress(blob), tar);

  ASSERT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->files[0].tar_offset, 1024u);
  EXPECT_EQ(r->files[0].size, big.size());
  EXPECT_EQ(decompress(std::string_view(blob).substr(r->files[0].offset, r->files[0].length)), big);
  EXPECT_EQ(r->files[1].tar_offset, 1024u + tar::padded(big.size()) + 1024u);
  EXPECT_EQ(decompress(std::string_view(blob).substr(r->files[1].offset, r->files[1].length)),
            small);

  // The footer and the annotations agree; the TOC lists the entries with their frames.
  ASSERT_GE(blob.size(), 72u);
  ZstdChunkedFooter f;
  std::memcpy(&f, blob.data() + blob.size() - 64, 64);
  EXPECT_EQ(f.magic, kZstdChunkedFooterMagic);
  EXPECT_EQ(f.toc_type.get(), 1u);
  const std::string toc_z = blob.substr(f.toc_offset, f.toc_length);
  EXPECT_EQ(r->annotations.at(std::string(kZstdChunkedManifestChecksum)),
            sha256_of(std::string_view(toc_z)).str());
  EXPECT_EQ(r->annotations.at(std::string(kZstdChunkedManifestPosition)),
            std::to_string(f.toc_offset) + ":" + std::to_string(f.toc_length) + ":" +
                std::to_string(f.toc_uncompressed) + ":1");
  // The keys of containers/storage before 1.44 name the same TOC.
  EXPECT_EQ(r->annotations.at(std::string(kZstdChunkedLegacyManifestChecksum)),
            r->annotations.at(std::string(kZstdChunkedManifestChecksum)));
  EXPECT_EQ(r->annotations.at(std::string(kZstdChunkedLegacyManifestPosition)),
            r->annotations.at(std::string(kZstdChunkedManifestPosition)));
  EXPECT_EQ(r->annotations.size(), 5u);
  const auto toc = nlohmann::json::parse(decompress(toc_z));
  ASSERT_EQ(toc["entries"].size(), 4u);
  EXPECT_EQ(toc["entries"][0]["type"], "dir");
  EXPECT_EQ(toc["entries"][1]["name"], "dir/big");
  EXPECT_EQ(toc["entries"][1]["offset"], r->files[0].offset);
  EXPECT_EQ(toc["entries"][1]["endOffset"], r->files[0].offset + r->files[0].length);
  EXPECT_EQ(toc["entries"][1]["digest"], sha256_of(big).str());
  EXPECT_EQ(toc["entries"][1]["mode"], 0755);
  EXPECT_EQ(toc["entries"][1]["uid"], 1000);
  EXPECT_EQ(toc["entries"][1]["modtime"], "1970-01-02T00:00:00Z");
  EXPECT_FALSE(toc["entries"][2].contains("digest"));
  const std::string split_z = blob.substr(f.tar_split_offset, f.tar_split_length);
  EXPECT_EQ(toc["tarSplitDigest"], sha256_of(std::string_view(split_z)).str());
  EXPECT_EQ(decompress(split_z).size(), f.tar_split_uncompressed.get());
}

TEST(ZstdChunked, ATarMayStopInsideTheLastPadding) {
  // umoci 0.4.7 writes layers without end blocks that stop inside the last entry's padding.
  const std::string tar = header("f", 5000, '0') + std::string(5000, 'x') + std::string(7, '\0');
  std::string blob;
  ZstdChunkedWriter w(
      [&](std::span<const std::byte> b) {
        blob.append(reinterpret_cast<const char*>(b.data()), b.size());
        return Status{};
      },
      "layer");
  ASSERT_TRUE(w.write(bytes(tar)));
  auto r = w.finish();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(decompress(blob), tar);
}

TEST(ZstdChunked, RefusesATarCutInsideData) {
  std::string blob;
  ZstdChunkedWriter w([&](std::span<const std::byte>) { return Status{}; }, "layer");
  const std::string tar = header("f", 5000, '0') + std::string(100, 'x');
  ASSERT_TRUE(w.write(bytes(tar)));
  auto r = w.finish();
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("layer: the tar ends inside the data of 'f'"));
}

}  // namespace
}  // namespace cfs::oci
