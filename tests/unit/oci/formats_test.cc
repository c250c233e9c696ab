// SPDX-License-Identifier: Apache-2.0
// Small format facts of the oci module: tar numbers and pax times, content digests, media
// types and magic numbers, and the split rule on hand-made archives (the archives written by
// real tools are in tests/integration/test_oci_layers.py).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <random>

#include "cfs/oci/decompress.h"
#include "cfs/oci/digest.h"
#include "cfs/oci/layer_input.h"
#include "cfs/oci/layer_stream.h"
#include "cfs/oci/read_ring.h"
#include "cfs/oci/tar.h"
#include "cfs/splitstream/format.h"
#include "testutil/piece_source.h"
#include "unit/splitstream/memory_objects.h"

namespace cfs::oci {
namespace {

using splitstream::testing::as_bytes_of;
using splitstream::testing::as_string;
using splitstream::testing::MemoryObjects;
using ::testing::HasSubstr;

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s)); }

TEST(Tar, NumericFields) {
  EXPECT_EQ(*tar::parse_numeric(bytes("0000644\0")), 0644u);
  EXPECT_EQ(*tar::parse_numeric(bytes("  755 \0 ")), 0755u);
  EXPECT_EQ(*tar::parse_numeric(bytes("\0\0\0\0")), 0u);
  EXPECT_EQ(*tar::parse_numeric(bytes("        ")), 0u);
  EXPECT_EQ(*tar::parse_numeric(bytes(std::string_view("\x80\0\0\0\0\0\0\x01\0\0\0\0", 12))),
            std::uint64_t{1} << 32);
  EXPECT_FALSE(tar::parse_numeric(bytes("0000089\0")));                         // not octal
  EXPECT_FALSE(tar::parse_numeric(bytes("\xff\xff\xff\xff\xff\xff\xff\xff")));  // negative
  EXPECT_FALSE(tar::parse_numeric(bytes(std::string_view("\x80\x01\0\0\0\0\0\0\0\0\0\0", 12))));
  EXPECT_FALSE(tar::parse_numeric(bytes("7777777777777777777777777")));  // overflows
}

TEST(Tar, PaxMtimeNanoseconds) {
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000.123456789"), 123456789u);
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000.5"), 500000000u);
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000.1234567891234"), 123456789u);
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000.000000001"), 1u);
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000"), 0u);
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000."), 0u);
  EXPECT_EQ(tar::pax_mtime_nsec("1700000000.12x"), 0u);
}

TEST(Digest, ParseChecksTheGrammar) {
  std::string h64(64, 'a'), h128(128, '0');
  auto d = ContentDigest::parse("sha256:" + h64);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->algorithm, "sha256");
  EXPECT_EQ(d->str(), "sha256:" + h64);
  EXPECT_TRUE(ContentDigest::parse("sha512:" + h128));
  EXPECT_FALSE(ContentDigest::parse("sha256:" + h64.substr(1)));
  EXPECT_FALSE(ContentDigest::parse("sha256:" + std::string(64, 'A')));  // upper case
  EXPECT_FALSE(ContentDigest::parse("sha256:../../../../etc/passwd"));
  EXPECT_FALSE(ContentDigest::parse("sha256"));
  EXPECT_FALSE(ContentDigest::parse(":" + h64));
  EXPECT_FALSE(ContentDigest::parse("Sha256:" + h64));
  auto other = ContentDigest::parse("blake3:" + h64);
  ASSERT_FALSE(other);
  EXPECT_TRUE(other.error().is(Errc::kUnsupportedFeature));
  // hashlib.sha256(b"abc")
  EXPECT_EQ(sha256_of(std::string_view("abc")).hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Decompress, MediaTypesAndMagic) {
  EXPECT_EQ(*layer_compression("application/vnd.oci.image.layer.v1.tar"), Compression::kNone);
  EXPECT_EQ(*layer_compression("application/vnd.oci.image.layer.v1.tar+gzip"), Compression::kGzip);
  EXPECT_EQ(*layer_compression("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
            Compression::kZstd);
  EXPECT_EQ(*layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Compression::kGzip);
  EXPECT_FALSE(layer_compression("application/vnd.oci.image.layer.v1.tar+bzip2"));
  EXPECT_EQ(sniff_compression(bytes("\x1f\x8b\x08")), Compression::kGzip);
  EXPECT_EQ(sniff_compression(bytes("\x28\xb5\x2f\xfd")), Compression::kZstd);
  EXPECT_EQ(sniff_compression(bytes("\x5e\x2a\x4d\x18")), Compression::kZstd);
  EXPECT_EQ(sniff_compression(bytes("etc/\0\0\0")), Compression::kNone);
  auto empty = memory_source("");
  auto gz = decompressor(Compression::kGzip, *empty, "blob");
  std::array<std::byte, 16> buf{};
  auto r = gz->read(buf);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("blob: gzip: empty stream"));
}

// 3 MiB of alternating random and repetitive 2 KiB stretches: compressible, not trivially.
std::string half_random(unsigned seed) {
  std::mt19937 rng(seed);
  std::string plain(3u << 20, '\0');
  for (std::size_t i = 0; i < plain.size(); ++i)
    plain[i] = static_cast<char>(i % 4096 < 2048 ? rng() & 0xff : 'a' + (i % 7));
  return plain;
}

// One zstd frame of `in` by libzstd's own compressor (the oracle of the decoder tests).
std::string zstd_frame(std::string_view in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3));
  return out;
}

// The push decoder against libzstd's own compressor (the oracle: the bytes compressed): two
// frames with a skippable frame between, pushed in pieces of every size; then the stream cut
// short, empty, and with a flipped byte.
TEST(Decompress, ZstdPushDecoderDecodesPiecesAsTheyArrive) {
  const std::string plain = half_random(15);
  const std::string skippable = std::string("\x50\x2a\x4d\x18\x04\0\0\0skip", 12);
  const std::string z = zstd_frame(std::string_view(plain).substr(0, 1u << 20)) + skippable +
                        zstd_frame(std::string_view(plain).substr(1u << 20));
  auto decode = [&](std::string_view in, std::string& out, std::size_t piece) -> Status {
    ZstdPushDecoder d("meta", [&](std::span<const std::byte> b) {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      return Status{};
    });
    for (std::size_t at = 0; at < in.size();) {
      auto n = std::min(piece, in.size() - at);
      CFS_TRY(d.write(std::as_bytes(std::span(in.data() + at, n))));
      at += n;
      piece = piece * 7 % 70001 + 1;  // pieces of many sizes
    }
    return d.finish();
  };
  for (std::size_t first : {1u, 13u, 4096u, 65536u, 5u << 20}) {
    std::string out;
    auto st = decode(z, out, first);
    ASSERT_TRUE(st) << first << " " << st.error().message();
    EXPECT_EQ(out, plain) << first;
  }
  std::string out;
  auto cut = decode(std::string_view(z).substr(0, z.size() - 10), out, 4096);
  ASSERT_FALSE(cut);
  EXPECT_THAT(cut.error().message(), HasSubstr("meta: zstd: truncated"));
  auto none = decode("", out, 1);
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message(), HasSubstr("meta: zstd: empty stream"));
  std::string bad = z;
  bad[bad.size() / 3] ^= 0x55;
  out.clear();
  auto flipped = decode(bad, out, 4096);
  EXPECT_TRUE(!flipped || out != plain);
}

// decode_into: the first frame decoded straight into one buffer of its size
// (ZSTD_d_stableOutBuffer), each piece handed on lying inside it, in order, and the frames after
// it through the window as before; the bytes compressed are the oracle. A buffer one byte short
// of the first frame refuses it; a cut stream is still truncated; after reset() the buffer is
// used again.
TEST(Decompress, ZstdPushDecoderDecodesTheFirstFrameIntoOneBuffer) {
  const std::string plain = half_random(16);
  const std::size_t first = 1u << 20;
  const std::string z = zstd_frame(std::string_view(plain).substr(0, first)) +
                        zstd_frame(std::string_view(plain).substr(first));
  std::vector<std::byte> dst;
  std::size_t next = 0;  // where the next piece inside dst must start
  std::string rest;      // the pieces after the first frame
  ZstdPushDecoder d("meta", [&](std::span<const std::byte> b) -> Status {
    if (b.data() >= dst.data() && b.data() < dst.data() + dst.size()) {
      if (b.data() != dst.data() + next || !rest.empty())
        return fail(Errc::kInvalidInput, "piece out of place");
      next += b.size();
    } else {
      rest.append(reinterpret_cast<const char*>(b.data()), b.size());
    }
    return Status{};
  });
  auto decode = [&](std::string_view in) -> Status {
    next = 0;
    rest.clear();
    for (std::size_t at = 0, piece = 4093; at < in.size();) {
      auto n = std::min(piece, in.size() - at);
      CFS_TRY(d.write(std::as_bytes(std::span(in.data() + at, n))));
      at += n;
      piece = piece * 7 % 70001 + 1;
    }
    return d.finish();
  };
  dst.resize(first);
  ASSERT_TRUE(d.decode_into(dst));
  for (int round = 0; round < 2; ++round) {  // the second after reset()
    auto st = decode(z);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_EQ(next, first);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(dst.data()), next) + rest, plain);
    d.reset();
  }
  auto cut = decode(std::string_view(z).substr(0, z.size() - 10));
  ASSERT_FALSE(cut);
  EXPECT_THAT(cut.error().message(), HasSubstr("meta: zstd: truncated"));

  ZstdPushDecoder small("meta", [](std::span<const std::byte>) { return Status{}; });
  std::vector<std::byte> short_dst(first - 1);
  ASSERT_TRUE(small.decode_into(short_dst));
  auto refused = small.write(std::as_bytes(std::span(z.data(), z.size())));
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(),
              HasSubstr(fmt::format("meta: zstd: more than the {} bytes expected", first - 1)));
}

/// One gzip member of `in` by zlib's own writer (the oracle of the header tests): with every
/// optional header field (extra, name, comment, header CRC), or with none.
std::string gzip_member(std::string_view in, bool header_fields = true) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string extra = "XY\x04\0abcd", name = "layer.tar", comment = "made by zlib";
  gz_header h{};
  h.extra = reinterpret_cast<Bytef*>(extra.data());
  h.extra_len = static_cast<uInt>(extra.size());
  h.name = reinterpret_cast<Bytef*>(name.data());
  h.comment = reinterpret_cast<Bytef*>(comment.data());
  h.hcrc = 1;
  if (header_fields) {
    EXPECT_EQ(deflateSetHeader(&z, &h), Z_OK);
  }
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A gzip header that arrives in pieces, so that it lies split between two reads: isa-l's
// inflate misreads one split inside its optional fields (intel/isa-l#224), which the decoder
// must not let it see (decompress_fuzzer found it as "CRC or size mismatch"). Two members with
// every optional header field, by zlib's writer; read 1, 3, 7 and 4096 bytes at a time by both
// engines; the bytes compressed are the oracle. And a reserved flag refused by both.
TEST(Decompress, GzipHeadersSplitBetweenReadsDecodeWithBothEngines) {
  const std::string plain = half_random(17).substr(0, 100000);
  const std::string gz = gzip_member(std::string_view(plain).substr(0, 30000)) +
                         gzip_member(std::string_view(plain).substr(30000));
  for (GzipEngine engine : {GzipEngine::kIsal, GzipEngine::kZlib}) {
    for (std::size_t piece : {1u, 3u, 7u, 4096u}) {
      testutil::PieceSource src(gz, piece);
      auto d = decompressor(Compression::kGzip, src, "blob", engine);
      auto out = read_all(*d, plain.size() + 1, "blob");
      ASSERT_TRUE(out) << static_cast<int>(engine) << " " << piece << " " << out.error().message();
      EXPECT_EQ(*out, plain) << static_cast<int>(engine) << " " << piece;
    }
    // A reserved header flag is an error with either engine (RFC 1952; isa-l decoded it).
    std::string reserved = gzip_member(plain, /*header_fields=*/false);  // no header CRC
    reserved[3] = static_cast<char>(reserved[3] | 0x80);
    auto src = memory_source(reserved);
    auto d = decompressor(Compression::kGzip, *src, "blob", engine);
    auto out = read_all(*d, plain.size() + 1, "blob");
    ASSERT_FALSE(out) << static_cast<int>(engine);
    EXPECT_THAT(out.error().message(), HasSubstr("blob: gzip: ")) << static_cast<int>(engine);
  }
}

/// Memory whose digest, the source claims, it checked before its end (as a registry download).
class VouchedSource final : public ByteSource {
 public:
  VouchedSource(std::string data, ContentDigest d) : in_(memory_source(std::move(data))), d_(d) {}
  Result<std::size_t> read(std::span<std::byte> buf) override { return in_->read(buf); }
  const ContentDigest* verified_digest() const override { return &d_; }

 private:
  std::unique_ptr<ByteSource> in_;
  ContentDigest d_;
};

TEST(LayerInput, BlobHashedOnceAndNotAgainWhenTheSourceVerifiesIt) {
  const std::string tar(1024, '\0');  // two zero blocks: an empty archive
  const ContentDigest real = sha256_of(tar);
  // A source that checks nothing: the blob is hashed here (uncompressed: diff_id too).
  auto plain = LayerInput::open(memory_source(tar), "", "layer");
  ASSERT_TRUE(plain);
  auto d = (*plain)->finish();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->blob, real);
  EXPECT_EQ(d->diff_id, real);
  EXPECT_EQ(d->blob_size, tar.size());
  // A verifying source is taken at its word (its claim here is deliberately another digest,
  // which only a skipped hash can report), and its bytes are still counted.
  const ContentDigest claimed = sha256_of(std::string_view("something else"));
  auto vouched = LayerInput::open(std::make_unique<VouchedSource>(tar, claimed), "", "layer");
  ASSERT_TRUE(vouched);
  d = (*vouched)->finish();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->blob, claimed);
  EXPECT_EQ(d->diff_id, claimed);
  EXPECT_EQ(d->blob_size, tar.size());
}

// LayerInputOptions::check (the import's free-space reserve) sees the tar as it is
// decompressed, every check_every bytes: a 16 MiB tar of zeros in a zstd frame of a few hundred
// bytes is stopped by the check's error once 4 MiB were decompressed, and streamed() says how
// far it got, in tar and in blob bytes.
TEST(LayerInput, ACheckSeesTheTarAsItDecompressesAndItsErrorStopsIt) {
  const std::string tar(16u << 20, '\0');
  const std::string blob = zstd_frame(tar);
  ASSERT_LT(blob.size(), 4096u);
  for (bool read_ahead : {true, false}) {
    LayerInputOptions o;
    o.read_ahead = read_ahead;
    o.check_every = 1u << 20;
    std::vector<std::uint64_t> seen;
    o.check = [&](const LayerProgress& p) -> Status {
      seen.push_back(p.tar_bytes);
      EXPECT_LE(p.blob_bytes, blob.size());
      if (p.tar_bytes >= (4u << 20)) return fail_errno("full", ENOSPC);
      return {};
    };
    auto in = LayerInput::open(memory_source(blob), "", "layer", o);
    ASSERT_TRUE(in);
    auto d = (*in)->finish();
    ASSERT_FALSE(d) << read_ahead;
    EXPECT_TRUE(d.error().is_errno(ENOSPC)) << d.error().message();
    ASSERT_GE(seen.size(), 4u);
    for (std::size_t i = 0; i < seen.size(); ++i)
      EXPECT_GE(seen[i], (i + 1) << 20) << i;  // at most one call per check_every bytes
    EXPECT_LT(seen.back(), 8u << 20);          // stopped at the first mark past 4 MiB
    const LayerProgress at = (*in)->streamed();
    EXPECT_EQ(at.tar_bytes, seen.back());
    EXPECT_GT(at.blob_bytes, 0u);
    EXPECT_LE(at.blob_bytes, blob.size());
  }
  // Without a check the same blob decodes whole.
  auto in = LayerInput::open(memory_source(blob), "", "layer");
  ASSERT_TRUE(in);
  auto d = (*in)->finish();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->tar_size, tar.size());
}

/// A ustar header with a valid checksum.
std::string header(const std::string& name, std::uint64_t size, char type,
                   const std::string& link = "") {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<std::size_t>(name.size(), 100));
  std::snprintf(h.data() + 100, 8, "%07o", 0644);
  std::snprintf(h.data() + 108, 8, "%07o", 0);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h.data() + 136, 12, "%011o", 0);
  h[156] = type;
  std::memcpy(h.data() + 157, link.data(), link.size());
  std::memcpy(h.data() + 257,
              "ustar\0"
              "00",
              8);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

std::string padded(std::string data) {
  data.resize(tar::padded(data.size()), '\0');
  return data;
}

TEST(Split, HandMadeArchiveRoundTripsAndReadsBack) {
  std::string big(5000, 'B'), small(64, 's');
  std::string tar = header("dir/", 0, '5') + header("dir/big", big.size(), '0') + padded(big) +
                    header("dir/small", small.size(), '0') + padded(small) +
                    header("dir/link", 0, '1', "dir/big") + header("dir/c", big.size(), '7') +
                    padded(big) + std::string(1024, '\0') + "junk";
  MemoryObjects objs;
  splitstream::WriterOptions wo;
  wo.content_type = splitstream::kOciLayer;
  auto w = splitstream::Writer::create(objs, wo);
  ASSERT_TRUE(w);
  auto src = memory_source(tar);
  auto st = split_tar(*src, **w, "layer");
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(st->entries, 5u);
  EXPECT_EQ(st->trailing_bytes, 4u);
  std::string ss;
  ASSERT_TRUE((*w)->finish([&](std::span<const std::byte> b) {
    ss += as_string(b);
    return Status{};
  }));
  EXPECT_EQ(objs.size(), 1u);  // the same 5000 bytes twice: one object

  auto open = [&] {
    UniqueFd fd(::memfd_create("ss", MFD_CLOEXEC));
    EXPECT_EQ(::write(fd.get(), ss.data(), ss.size()), static_cast<ssize_t>(ss.size()));
    return splitstream::Reader::open(std::move(fd), "ss");
  };
  auto r = open();
  ASSERT_TRUE(r);
  std::string back;
  ASSERT_TRUE(r->reassemble(objs.opener(), [&](std::span<const std::byte> b) {
    back += as_string(b);
    return Status{};
  }));
  EXPECT_EQ(back, tar);

  auto r2 = open();
  ASSERT_TRUE(r2);
  LayerReader lr(*r2, "layer");
  std::vector<LayerEntry> es;
  for (;;) {
    auto e = lr.next();
    ASSERT_TRUE(e) << e.error().message();
    if (!*e) break;
    es.push_back(std::move(**e));
  }
  ASSERT_EQ(es.size(), 5u);
  EXPECT_EQ(es[1].tar.path, "dir/big");
  ASSERT_TRUE(es[1].object);
  EXPECT_EQ(*es[1].object, verity::digest_bytes(as_bytes_of(big)));
  EXPECT_EQ(es[2].inline_content, small);
  EXPECT_EQ(es[3].tar.link_target, "dir/big");
  EXPECT_EQ(es[4].tar.typeflag, '7');
  EXPECT_TRUE(es[4].object);
}

TEST(Split, ARingOfItsOwnLapsWhileObjectsAreStoredFromIt) {
  // Through a 64 KiB ring (views of up to 16 KiB) the ~1.4 MB archive laps it ~20 times:
  // contents are handed to the writer's workers as views of the ring, some across its end,
  // files over 16 KiB are streamed in pieces, and the ring's bytes are reused as objects are
  // stored. Reassembled, the stream must be the archive, byte for byte, and every object the
  // bytes of its file (a view released too early would store other bytes).
  std::mt19937 rng(3);
  std::string tar;
  std::vector<std::string> files;
  for (int i = 0; i < 120; ++i) {
    std::size_t size = i % 10 == 9 ? 20000 + 977 * static_cast<std::size_t>(i)
                                   : 65 + std::uniform_int_distribution<std::size_t>(0, 16000)(rng);
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    tar += header("f" + std::to_string(i), size, '0') + padded(data);
    files.push_back(std::move(data));
  }
  tar += std::string(1024, '\0');
  tar::Limits limits;
  limits.max_metadata = 4096;  // so the headers fit a 16 KiB view
  limits.max_extensions = 4;
  for (bool threaded : {true, false}) {
    MemoryObjects objs;
    splitstream::WriterOptions wo;
    wo.content_type = splitstream::kOciLayer;
    wo.threads = 2;
    auto w = splitstream::Writer::create(objs, wo);
    ASSERT_TRUE(w);
    auto src = memory_source(tar);
    std::unique_ptr<ReadRing> ring = threaded ? ReadRing::start(std::move(src), 64 << 10, 16 << 10)
                                              : ReadRing::inline_reader(*src, 64 << 10, 16 << 10);
    auto st = split_tar(*ring, **w, "layer", limits);
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_EQ(st->entries, 120u);
    std::string ss;
    ASSERT_TRUE((*w)->finish([&](std::span<const std::byte> b) {
      ss += as_string(b);
      return Status{};
    }));
    EXPECT_EQ(objs.size(), files.size());
    EXPECT_GT(objs.streamed(), 0u);
    for (const auto& f : files)
      EXPECT_TRUE(objs.objects().contains(verity::digest_bytes(as_bytes_of(f)).hex()));
    UniqueFd fd(::memfd_create("ss", MFD_CLOEXEC));
    ASSERT_EQ(::write(fd.get(), ss.data(), ss.size()), static_cast<ssize_t>(ss.size()));
    auto r = splitstream::Reader::open(std::move(fd), "ss");
    ASSERT_TRUE(r);
    std::string back;
    ASSERT_TRUE(r->reassemble(objs.opener(), [&](std::span<const std::byte> b) {
      back += as_string(b);
      return Status{};
    }));
    EXPECT_TRUE(back == tar) << (threaded ? "threaded" : "inline");
  }
}

TEST(Split, LimitsLargerThanTheRingsViewsAreRefused) {
  auto src = memory_source(std::string(1024, '\0'));
  auto ring = ReadRing::inline_reader(*src, 64 << 10, 16 << 10);
  MemoryObjects objs;
  auto w = splitstream::Writer::create(objs, {});
  ASSERT_TRUE(w);
  auto st = split_tar(*ring, **w, "layer L");  // the default limits: 1 MiB of headers
  ASSERT_FALSE(st);
  EXPECT_THAT(st.error().message(), HasSubstr("layer L"));
  EXPECT_THAT(st.error().message(), HasSubstr("the read ring views at most 16384"));
}

TEST(Split, LayerReaderRefusesContentInTheWrongPlace) {
  // A stream whose 100-byte file is inline (composefs-rs would have made it an object).
  std::string content(100, 'x');
  std::string tar = header("f", content.size(), '0') + padded(content) + std::string(1024, '\0');
  MemoryObjects objs;
  auto w = splitstream::Writer::create(objs, {});
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->write_inline(as_bytes_of(tar)));
  std::string ss;
  ASSERT_TRUE((*w)->finish([&](std::span<const std::byte> b) {
    ss += as_string(b);
    return Status{};
  }));
  UniqueFd fd(::memfd_create("ss", MFD_CLOEXEC));
  ASSERT_EQ(::write(fd.get(), ss.data(), ss.size()), static_cast<ssize_t>(ss.size()));
  auto r = splitstream::Reader::open(std::move(fd), "ss");
  ASSERT_TRUE(r);
  LayerReader lr(*r, "layer L");
  auto e = lr.next();
  ASSERT_FALSE(e);
  EXPECT_THAT(e.error().message(), HasSubstr("layer L: tar entry 'f' at byte 0"));
  EXPECT_THAT(e.error().message(), HasSubstr("not an external object"));
}

}  // namespace
}  // namespace cfs::oci
