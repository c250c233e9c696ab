// SPDX-License-Identifier: Apache-2.0
// The object index (ocirepo/object_index.h): its JSON round trip, the parser's refusals (each
// naming the field), and the builder's tar offsets against a hand-made ustar archive whose
// layout is known by construction.
#include "cfs/ocirepo/object_index.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "cfs/erofs/writer.h"
#include "cfs/oci/tar.h"
#include "cfs/ocirepo/pull.h"
#include "cfs/util/sys.h"
#include "testutil/temp_dir.h"
#include "testutil/tree_builder.h"
#include "testutil/ustar.h"

namespace cfs::ocirepo {
namespace {

using ::testing::HasSubstr;

oci::ContentDigest cd(char c) { return *oci::ContentDigest::parse("sha256:" + std::string(64, c)); }

verity::Digest vd(std::uint8_t first, verity::HashAlg alg = verity::HashAlg::kSha512) {
  auto d = verity::Digest::zero(alg);
  d.bytes[0] = first;
  d.bytes[1] = 0x5a;
  return d;
}

ObjectIndex sample() {
  ObjectIndex ix;
  ix.algorithm = verity::HashAlg::kSha512;
  ix.image = vd(0xee);
  ix.layers.push_back({cd('a'), cd('b'), 100000, "application/vnd.oci.image.layer.v1.tar", true});
  ix.layers.push_back(
      {cd('c'), cd('d'), 5000, "application/vnd.oci.image.layer.v1.tar+gzip", false});
  ix.layers.push_back(
      {cd('e'), cd('f'), 9000, "application/vnd.oci.image.layer.v1.tar+zstd", true});
  ix.objects.push_back({vd(3), 0, 1536, 4096, 4096, ObjectCompression::kNone});
  ix.objects.push_back({vd(1), 2, 77, 900, 70000, ObjectCompression::kZstd});
  ix.objects.push_back({vd(3), 2, 1, 2, 4096, ObjectCompression::kZstd});  // repeat: dropped
  sort_and_dedup(ix.objects);
  return ix;
}

TEST(ObjectIndex, RoundTripsAndFinds) {
  auto ix = sample();
  ASSERT_EQ(ix.objects.size(), 2u);
  EXPECT_EQ(ix.objects[1].layer, 0u);  // the first location of vd(3) is kept
  const std::string json = encode_object_index(ix);
  auto back = parse_object_index(json, "index");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(encode_object_index(*back), json);
  EXPECT_EQ(back->image, ix.image);
  ASSERT_EQ(back->layers.size(), 3u);
  EXPECT_FALSE(back->layers[1].range_fetchable);
  const auto* o = back->find(vd(1));
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->compression, ObjectCompression::kZstd);
  EXPECT_EQ(o->offset, 77u);
  EXPECT_EQ(o->size, 70000u);
  EXPECT_EQ(back->find(vd(2)), nullptr);
  EXPECT_THAT(json, HasSubstr("\"mediaType\":\"application/vnd.cfs.object-index.v1+json\""));
}

// Replaces the first occurrence of `from` in the sample document.
std::string edited(std::string_view from, std::string_view to) {
  std::string json = encode_object_index(sample());
  auto pos = json.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) json.replace(pos, from.size(), to);
  return json;
}

TEST(ObjectIndex, RefusesWhatItDoesNotKnowNamingTheField) {
  struct Case {
    std::string json;
    std::string message;
  };
  const std::string d3 = vd(3).hex();
  const std::vector<Case> cases = {
      {"", "not valid JSON"},
      {"[]", "not an object"},
      {edited("\"version\":1", "\"version\":2"), "version: 2 is not the supported 1"},
      {edited("\"version\":1", "\"version\":-1"), "version: not an unsigned integer"},
      {edited("\"version\":1", "\"version\":1,\"extra\":0"), "extra: unknown member"},
      {edited("\"algorithm\":\"sha512\"", "\"algorithm\":\"md5\""), "algorithm: 'md5'"},
      {edited("\"algorithm\":\"sha512\"", "\"algorithm\":\"sha256\""), "image: '"},
      {edited("object-index.v1", "object-index.v9"), "mediaType: '"},
      {edited("\"rangeFetchable\":true", "\"rangeFetchable\":1"),
       "layers[0].rangeFetchable: not a boolean"},
      {edited("\"diffId\":\"sha256:b", "\"diffId\":\"sha256:B"), "layers[0].diffId"},
      {edited("\"layer\":2", "\"layer\":3"), "objects[0].layer: 3 is not below the 3 layers"},
      {edited("\"layer\":2", "\"layer\":1"), "objects[0].layer: layer 1 is not range-fetchable"},
      {edited("\"offset\":77", "\"offset\":8101"), "objects[0]: bytes 8101+900 are outside"},
      {edited("\"offset\":77", "\"offset\":18446744073709551615"), "are outside"},
      {edited("\"length\":4096", "\"length\":4095"), "length 4095 is not size 4096"},
      {edited("\"compression\":\"zstd\"", "\"compression\":\"gzip\""),
       "objects[0].compression: 'gzip'"},
      {edited("\"size\":70000", "\"size\":0"), "objects[0]: an object of zero bytes"},
      {edited(d3, vd(1).hex()), "objects[1].digest: not sorted"},
      {edited(d3, d3.substr(0, 126)), "objects[1].digest: '"},
      {edited("\"compression\":\"none\"", "\"compression\":\"none\",\"x\":1"),
       "objects[1].x: unknown member"},
      {edited(",\"compression\":\"none\"", ""), "objects[1].compression: missing"},
  };
  for (const auto& c : cases) {
    auto r = parse_object_index(c.json, "idx");
    ASSERT_FALSE(r) << c.json;
    EXPECT_THAT(r.error().message(), HasSubstr("idx: ")) << c.json;
    EXPECT_THAT(r.error().message(), HasSubstr(c.message)) << c.json;
  }
}

// The reader is JSON, not the encoder's exact bytes: members in any order, whitespace, escapes
// (the oracle is the sample's own encoding, which any JSON tool would produce from these).
TEST(ObjectIndex, ReadsAnyJsonSpellingOfTheDocument) {
  const std::string json = encode_object_index(sample());
  std::string spelled = json;
  // "layers" and "objects" before the header members they are checked against.
  auto layers_at = spelled.find("\"layers\":");
  std::string tail = spelled.substr(layers_at, spelled.size() - 1 - layers_at);
  spelled = "{" + tail + "," + spelled.substr(1, layers_at - 2) + "}";
  // An object's members in another order: compression first.
  const std::string d1 = "\"digest\":\"" + vd(1).hex() + "\"";
  auto zstd = spelled.find(",\"compression\":\"zstd\"");
  ASSERT_NE(zstd, std::string::npos);
  spelled.erase(zstd, 21);
  spelled.replace(spelled.find(d1), d1.size(), "\"compression\":\"zstd\"," + d1);
  // Whitespace everywhere JSON allows it, and escapes in strings.
  std::string spaced;
  bool in_string = false;  // the encoder writes no escapes
  for (char c : spelled) {
    spaced.push_back(c);
    if (c == '"') in_string = !in_string;
    if (!in_string && (c == ',' || c == ':' || c == '[' || c == '{')) spaced += " \n\t\r";
  }
  auto pos = spaced.find("application/vnd.oci.image.layer.v1.tar\"");
  ASSERT_NE(pos, std::string::npos);
  spaced.replace(pos, 12, "\\u0061pplication\\/");  // "application/" escaped
  auto back = parse_object_index(" " + spaced + "\n", "idx");
  ASSERT_TRUE(back) << back.error().message() << "\n" << spaced;
  EXPECT_EQ(encode_object_index(*back), json);
}

TEST(ObjectIndex, RefusesWhatJsonOrTheFormatForbids) {
  struct Case {
    std::string json;
    std::string message;
  };
  const std::vector<Case> cases = {
      {edited("\"version\":1", "\"version\":1,\"version\":1"), "version: repeated member"},
      {edited("\"version\":1", "\"version\":1.0"), "version: not an unsigned integer"},
      {edited("\"version\":1", "\"version\":1e0"), "version: not an unsigned integer"},
      {edited("\"version\":1", "\"version\":\"1\""), "version: not an unsigned integer"},
      {edited("\"version\":1", "\"version\":01"), "not valid JSON"},
      {edited("\"size\":100000", "\"size\":18446744073709551616"),
       "layers[0].size: not an unsigned integer"},
      {edited("\"offset\":77", "\"offset\":-0"), "objects[0].offset: not an unsigned integer"},
      {edited("\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\"",
              "\"mediaType\":\"\xc0\xaf\""),
       "not valid JSON"},  // an overlong '/'
      {edited("\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\"",
              "\"mediaType\":\"\\ud800\""),
       "not valid JSON"},  // a lone surrogate
      {edited("\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\"", "\"mediaType\":\"a\tb\""),
       "not valid JSON"},  // a raw control character
      {edited("\"layers\":[", "\"layers\":{"), "layers: not an array"},
      {edited("\"objects\":[", "\"objects\":7,\"x\":["), "objects: not an array"},
      {edited("\"rangeFetchable\":true", "\"rangeFetchable\":tru"), "not a boolean"},
      {encode_object_index(sample()) + "x", "not valid JSON"},
      {encode_object_index(sample()) + " {}", "not valid JSON"},  // a second document after it
      {edited("\"version\":1", "\"version\":1,\"\\u0076ersion\":1"),
       "version: repeated member"},  // the same name, escaped
      {encode_object_index(sample()).substr(0, 300), "not valid JSON"},
      {"{\"layers\":[],\"objects\":[{}]}", "objects[0].digest: missing"},
  };
  for (const auto& c : cases) {
    auto r = parse_object_index(c.json, "idx");
    ASSERT_FALSE(r) << c.json;
    EXPECT_THAT(r.error().message(), HasSubstr("idx: ")) << c.json;
    EXPECT_THAT(r.error().message(), HasSubstr(c.message)) << c.json;
  }
}

// A document read where it is (its buffer readable kObjectIndexPadding bytes past its end, as
// a lazy mount's decoded index is): the same table, the same refusals, and what lies after the
// document in that padding (here a second document, then garbage) is not part of it.
TEST(ObjectIndex, ReadsInPlaceWhatItReadsFromACopy) {
  const std::string json = encode_object_index(sample());
  const std::string after = " {\"version\":2} x\x01\xff";
  auto in_buffer = [&](const std::string& doc) {
    std::string buf = doc + after;
    buf.resize(doc.size() + kObjectIndexPadding, '}');
    return buf;
  };
  {
    const std::string buf = in_buffer(json);
    auto back = parse_object_index(std::string_view(buf).substr(0, json.size()), "idx", buf.size());
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(encode_object_index(*back), json);
  }
  for (const auto& [doc, message] : std::vector<std::pair<std::string, std::string>>{
           {json.substr(0, 300), "not valid JSON"},
           {edited("\"version\":1", "\"version\":1,\"version\":1"), "version: repeated member"},
           {edited("\"offset\":77", "\"offset\":-0"), "objects[0].offset: not an unsigned integer"},
       }) {
    const std::string buf = in_buffer(doc);
    auto r = parse_object_index(std::string_view(buf).substr(0, doc.size()), "idx", buf.size());
    ASSERT_FALSE(r) << doc;
    EXPECT_THAT(r.error().message(), HasSubstr(message)) << doc;
    EXPECT_EQ(r.error().message(), parse_object_index(doc, "idx").error().message());
  }
}

std::string header(const std::string& name, std::uint64_t size, char type) {
  return testutil::ustar_header(name, size, type);
}
std::string padded(std::string d) { return testutil::ustar_padded(std::move(d)); }

TEST(ObjectIndex, TarOffsetsOfALayer) {
  testutil::TempDir dir;
  repo::InitOptions io;
  io.algorithm = verity::HashAlg::kSha256;
  io.insecure = true;
  auto repo = repo::Repository::init(dir.path() + "/repo", io);
  ASSERT_TRUE(repo) << repo.error().message();
  const std::string big(5000, 'B'), small(64, 's'), other(70000, 'o');
  // Offsets by construction: big's data at 512; small inline; other's data at
  // 512 + 5120 (big) + 512 + 512 (small) + 512 = 7168; big again at 7168 + 70144 + 512.
  const std::string tar = header("big", big.size(), '0') + padded(big) +
                          header("small", small.size(), '0') + padded(small) +
                          header("other", other.size(), '0') + padded(other) +
                          header("again", big.size(), '0') + padded(big) + std::string(1024, '\0');
  const auto diff_id = oci::sha256_of(tar);
  auto stream = import_layer(*repo, oci::memory_source(tar), diff_id, std::nullopt);
  ASSERT_TRUE(stream) << stream.error().message();
  auto objs = layer_tar_objects(*repo, StoredLayer{diff_id, *stream, {}, std::nullopt});
  ASSERT_TRUE(objs) << objs.error().message();
  ASSERT_EQ(objs->size(), 3u);
  const auto d = [](const std::string& s) {
    return verity::digest_bytes(std::as_bytes(std::span(s.data(), s.size())));
  };
  EXPECT_EQ((*objs)[0].digest, d(big));
  EXPECT_EQ((*objs)[0].tar_offset, 512u);
  EXPECT_EQ((*objs)[0].size, big.size());
  EXPECT_EQ((*objs)[1].digest, d(other));
  EXPECT_EQ((*objs)[1].tar_offset, 7168u);
  EXPECT_EQ((*objs)[2].digest, d(big));
  EXPECT_EQ((*objs)[2].tar_offset, 7168u + 70144u + 512u);
  for (const auto& o : *objs)
    EXPECT_EQ(tar.substr(o.tar_offset, o.size), o.size == big.size() ? big : other);
}

// The size bound, computed by hand from the document's form (object_index.h):
//  header  {"mediaType":"<40>","version":<20>,"algorithm":"sha512","image":"<hex>","layers":[
//          ],"objects":[ ]}  = 14+40+12+20+14+6+11+hex+12+13+2 = 144 + hex
//  object  ,{"digest":"<hex>","layer":<d>,"offset":<20>,"length":<20>,"size":<20>,
//          "compression":"none"}  = 12+hex+10+d+10+20+10+20+8+20+16+4+2 = 132 + hex + d
TEST(ObjectIndex, SizeBoundByHand) {
  // sha512 (128 hex), 5,189 objects (the Debian image), 1 layer (d = 1):
  // 272 + 1024 + 5189 * 261
  EXPECT_EQ(object_index_size_bound(verity::HashAlg::kSha512, 5189, 1),
            272u + 1024u + 5189u * 261u);
  EXPECT_EQ(object_index_size_bound(verity::HashAlg::kSha512, 5189, 1), 1355625u);
  // sha256 (64 hex), 3 objects, 2 layers: 208 + 2048 + 3 * 197
  EXPECT_EQ(object_index_size_bound(verity::HashAlg::kSha256, 3, 2), 2847u);
  // No objects: the header and the layers.
  EXPECT_EQ(object_index_size_bound(verity::HashAlg::kSha256, 0, 1), 1232u);
  // 12 layers: the layer index takes 2 digits.
  EXPECT_EQ(object_index_size_bound(verity::HashAlg::kSha256, 1, 12) -
                object_index_size_bound(verity::HashAlg::kSha256, 1, 10),
            2u * 1024u + 1u);
  // Saturates rather than wrapping.
  EXPECT_EQ(object_index_size_bound(verity::HashAlg::kSha512, UINT64_MAX / 2, 1), UINT64_MAX);
}

// The per-object width against the writer: each object with every number at its widest adds
// exactly the bound's per-object bytes (the first one without its comma).
TEST(ObjectIndex, SizeBoundCoversTheWidestObjects) {
  ObjectIndex ix;
  ix.algorithm = verity::HashAlg::kSha512;
  ix.image = vd(0xee);
  ix.layers.push_back(
      {cd('a'), cd('b'), UINT64_MAX, "application/vnd.oci.image.layer.v1.tar", true});
  const std::size_t empty = encode_object_index(ix).size();
  for (std::uint8_t i = 0; i < 3; ++i)
    ix.objects.push_back({vd(i), 0, UINT64_MAX, UINT64_MAX, UINT64_MAX, ObjectCompression::kZstd});
  const std::string json = encode_object_index(ix);
  EXPECT_EQ(json.size() - empty, 3u * 261u - 1u);
  EXPECT_LE(json.size(), object_index_size_bound(verity::HashAlg::kSha512, 3, 1));
  EXPECT_TRUE(check_object_index_size(json.size(), verity::HashAlg::kSha512, 3, 1, "index"));
}

TEST(ObjectIndex, SizeCheckNamesTheIndexItsSizeAndTheBound) {
  const std::uint64_t bound = object_index_size_bound(verity::HashAlg::kSha256, 3, 2);
  EXPECT_TRUE(check_object_index_size(bound, verity::HashAlg::kSha256, 3, 2, "index sha256:ab"));
  auto st = check_object_index_size(bound + 1, verity::HashAlg::kSha256, 3, 2, "index sha256:ab");
  ASSERT_FALSE(st);
  EXPECT_TRUE(st.error().is(Errc::kInvalidInput));
  EXPECT_THAT(st.error().message(),
              HasSubstr("index sha256:ab: 2848 bytes, more than the 2847 an index of an image of "
                        "at most 3 objects in 2 layers can take"));
  // Never more than the parser's own limit, whatever the image.
  EXPECT_FALSE(check_object_index_size(kMaxObjectIndexSize + 1, verity::HashAlg::kSha512,
                                       UINT64_MAX, 1, "index"));
}

// A superblock by hand: magic at 1024, inos at 1024 + 16 (erofs_fs.h).
std::vector<std::byte> image_with_inos(std::size_t size, std::uint64_t inos,
                                       std::uint32_t magic = 0xE0F5E1E2) {
  std::vector<std::byte> b(size);
  for (unsigned i = 0; i < 4; ++i) b[1024 + i] = std::byte((magic >> (8 * i)) & 0xff);
  for (unsigned i = 0; i < 8; ++i) b[1024 + 16 + i] = std::byte((inos >> (8 * i)) & 0xff);
  return b;
}

TEST(ObjectIndex, MaxImageObjects) {
  // The inode count, when the image's bytes can hold that many digests.
  auto n = max_image_objects(image_with_inos(8192, 10), verity::HashAlg::kSha512);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 10u);
  // A superblock claiming more: one object per digest of its bytes (8192 / 64, 8192 / 32).
  n = max_image_objects(image_with_inos(8192, 1ull << 40), verity::HashAlg::kSha512);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 128u);
  n = max_image_objects(image_with_inos(8192, 1ull << 40), verity::HashAlg::kSha256);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 256u);
  // No superblock: not a composefs image.
  auto bad = max_image_objects(image_with_inos(8192, 10, 0x12345678), verity::HashAlg::kSha512);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(Errc::kCorruptImage));
  EXPECT_FALSE(max_image_objects(std::vector<std::byte>(1100), verity::HashAlg::kSha512));
}

TEST(ObjectIndex, RefusesMoreLayersThanAllowed) {
  ObjectIndex ix;
  ix.algorithm = verity::HashAlg::kSha256;
  ix.image = vd(0xee, verity::HashAlg::kSha256);
  for (std::uint64_t i = 0; i <= kMaxIndexLayers; ++i)
    ix.layers.push_back({cd('a'), cd('b'), 1, "application/vnd.oci.image.layer.v1.tar", true});
  auto r = parse_object_index(encode_object_index(ix), "index");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("layers[4096]: more than the 4096 layers allowed"));
  ix.layers.pop_back();
  EXPECT_TRUE(parse_object_index(encode_object_index(ix), "index"));
}

// --- The compact index -------------------------------------------------------------------------

// An image of six files (two with the same content: one object) and a symlink, its EROFS
// written by the writer and read back by the reader, and an index of its objects whose digests
// are the builder's (fs-verity of the content, computed apart from the EROFS).
struct CompactFixture {
  testutil::TempDir tmp;
  testutil::TreeBuilder b{"", verity::HashAlg::kSha512};
  std::vector<std::string> contents{"alpha", "bravo bravo", std::string(5000, 'c'),
                                    "delta", "alpha",       std::string(70000, 'e')};
  std::optional<erofs::Image> image;
  ObjectIndex ix;

  CompactFixture() {
    const NodeId usr = b.dir(b.root(), "usr");
    const NodeId lib = b.dir(usr, "lib");
    for (std::size_t i = 0; i < contents.size(); ++i)
      b.file(i % 2 ? lib : usr, "f" + std::to_string(i), contents[i]);
    b.symlink(usr, "link", "lib/f1");
    auto fd = sys::openat(AT_FDCWD, tmp / "image", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    EXPECT_TRUE(fd);
    EXPECT_TRUE(erofs::write_image(b.tree(), {}, fd->get()));
    auto img = erofs::Image::open(tmp / "image");
    EXPECT_TRUE(img) << img.error().message();
    image.emplace(std::move(*img));
    ix.algorithm = verity::HashAlg::kSha512;
    ix.image = vd(0xee);
    ix.layers.push_back(
        {cd('a'), cd('b'), 1u << 20, "application/vnd.oci.image.layer.v1.tar", true});
    ix.layers.push_back(
        {cd('c'), cd('d'), 5000, "application/vnd.oci.image.layer.v1.tar+gzip", false});
    ix.layers.push_back(
        {cd('e'), cd('f'), 90000, "application/vnd.oci.image.layer.v1.tar+zstd", true});
    std::uint64_t at = 512;
    for (std::size_t i = 0; i < contents.size(); ++i) {
      const auto d = b.digest_of(contents[i]);
      if (i == 5)
        ix.objects.push_back({d, 2, 100, 3000, contents[i].size(), ObjectCompression::kZstd});
      else
        ix.objects.push_back(
            {d, 0, at, contents[i].size(), contents[i].size(), ObjectCompression::kNone});
      at += (contents[i].size() + 511) / 512 * 512 + 512;
    }
    sort_and_dedup(ix.objects);
  }
};

// A varint as the format defines it (LEB128), written here apart from the encoder's.
std::string leb(std::uint64_t v) {
  std::string out;
  do {
    std::uint8_t b = v & 0x7f;
    v >>= 7;
    out.push_back(static_cast<char>(v ? b | 0x80 : b));
  } while (v);
  return out;
}

TEST(CompactIndex, RoundTripsToTheSameIndexAsTheJson) {
  CompactFixture f;
  ASSERT_EQ(f.ix.objects.size(), 5u);  // "alpha" twice: one object
  auto doc = encode_compact_index(f.ix, *f.image);
  ASSERT_TRUE(doc) << doc.error().message();
  EXPECT_EQ(doc->substr(0, 8), "cfs-oidx");
  auto back = parse_compact_index(*doc, *f.image, "idx", f.ix.image);
  ASSERT_TRUE(back) << back.error().message();
  // The JSON encoder is the comparison: the same document, digests and all.
  EXPECT_EQ(encode_object_index(*back), encode_object_index(f.ix));
  // No digest travels: 5 objects and 3 layers in a few hundred bytes.
  EXPECT_LT(doc->size(), encode_object_index(f.ix).size() / 3);
  EXPECT_LE(doc->size(), compact_index_size_bound(verity::HashAlg::kSha512, 5, 3));
}

TEST(CompactIndex, ObjectsNotInTheImageAreNotEncoded) {
  CompactFixture f;
  f.ix.objects.push_back({vd(0x01), 0, 0, 10, 10, ObjectCompression::kNone});
  sort_and_dedup(f.ix.objects);
  auto doc = encode_compact_index(f.ix, *f.image);
  ASSERT_FALSE(doc);
  EXPECT_THAT(doc.error().message(), HasSubstr("no regular file of the image holds it"));
}

// Documents written by hand from the format's description, one field wrong at a time: each is
// refused naming it, nothing crashes.
TEST(CompactIndex, RefusesWhatItDoesNotKnowNamingTheField) {
  CompactFixture f;
  auto doc = encode_compact_index(f.ix, *f.image);
  ASSERT_TRUE(doc);
  std::string header = "cfs-oidx" + leb(2) + std::string(1, '\2') +
                       std::string(reinterpret_cast<const char*>(f.ix.image.bytes.data()), 64);
  std::string layer = leb(1) + leb(71) + cd('a').str() + leb(71) + cd('b').str() + leb(100000) +
                      leb(38) + "application/vnd.oci.image.layer.v1.tar" + std::string(1, '\1');
  // The root directory's nid: not a file (the checks before the nids' come first).
  const std::uint64_t root = f.image->root_nid();
  // One object in a document whose nid column is `nid`, layer 0, size 10, offset 7.
  auto one = [&](std::string nid, std::string layer_col = leb(0), std::string size = leb(10),
                 std::string offset = leb(14)) {
    return header + layer + leb(1) + nid + layer_col + size + offset;
  };
  struct Case {
    std::string doc, needle;
  };
  std::vector<Case> cases = {
      {"cfs-oidy" + std::string(10, '\0'), "idx: magic"},
      {"cfs-oidx" + leb(3), "idx: version: 3"},
      {"cfs-oidx" + leb(2) + std::string(1, '\3'), "idx: algorithm"},
      {header.substr(0, 40), "idx: image"},
      {header + leb(5000), "idx: layers: 5000 is more than"},
      {header + leb(1) + leb(71) + cd('a').str() + leb(2) + "zz", "idx: layers[0].diffId"},
      {header + layer.substr(0, layer.size() - 1) + std::string(1, '\4'), "idx: layers[0].flags"},
      {header + layer + leb(1000), "idx: objects: 1000 objects cannot fit"},
      {header + leb(1) + leb(71) + cd('a').str() + leb(71) + cd('b').str() + leb(100000) + leb(2) +
           "\xc3\x28" + std::string(1, '\1'),
       "idx: layers[0].mediaType: not printable ASCII"},
      {one(leb(root)), "idx: objects[0].nid: " + std::to_string(root) + " is not a regular file"},
      {one(leb(root), leb(2)), "idx: objects[0].layer: 1 is not below the 1 layers"},
      {one(leb(root), leb(0), leb(0)), "idx: objects[0].size: an object of zero bytes"},
      {one(leb(root), leb(0), leb(10), leb(200000)), "idx: objects[0]: bytes 100000+10"},
      {one(leb(root)) + "x", "idx: objects: 1 bytes after the last column"},
      {one(std::string("\x81\x00", 2)), "idx: objects[0].nid: a varint with redundant bytes"},
      {one(std::string(10, '\xff') + "\x01"), "idx: objects[0].nid: more than 64 bits"},
  };
  for (const auto& c : cases) {
    auto r = parse_compact_index(c.doc, *f.image, "idx");
    ASSERT_FALSE(r) << c.needle;
    EXPECT_THAT(r.error().message(), HasSubstr(c.needle));
  }
  // Every prefix of a good document is refused (and nothing reads past it: ASan).
  for (std::size_t n = 0; n < doc->size(); ++n)
    EXPECT_FALSE(parse_compact_index(std::string_view(*doc).substr(0, n), *f.image, "idx")) << n;
  // Another image's document (the digest given) is refused before its nids are read.
  auto other = parse_compact_index(*doc, *f.image, "idx", vd(0x42));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), Errc::kDigestMismatch);
  EXPECT_THAT(other.error().message(), HasSubstr("the index names"));
}

// A nid names the object of its file, found in the image by its path (the reader's
// directories, not the index code): a hand-written document placing f0's nid gets f0's digest
// (the builder's). Two entries of one file, or another file's nid, cannot serve wrong bytes:
// the first is refused, the second gives that file's digest, which the bytes read then fail.
TEST(CompactIndex, ANidNamesItsFilesObject) {
  CompactFixture f;
  auto nid_of = [&](std::uint64_t dir, std::string_view name) {
    std::uint64_t found = 0;
    EXPECT_TRUE(f.image->iterate_dir(dir, 0, [&](const erofs::DirentView& e) {
      if (e.name == name) found = e.nid;
      return true;
    }));
    return found;
  };
  const std::uint64_t usr = nid_of(f.image->root_nid(), "usr");
  const std::uint64_t f0 = nid_of(usr, "f0"), f2 = nid_of(usr, "f2");
  ASSERT_NE(f0, 0u);
  ASSERT_NE(f2, 0u);
  const std::string header =
      "cfs-oidx" + leb(2) + std::string(1, '\2') +
      std::string(reinterpret_cast<const char*>(f.ix.image.bytes.data()), 64) + leb(1) + leb(71) +
      cd('a').str() + leb(71) + cd('b').str() + leb(100000) + leb(38) +
      "application/vnd.oci.image.layer.v1.tar" + std::string(1, '\1');
  // Two objects: nids a < b, layer 0, sizes 5 and 11, offsets 512 and 2048 (zigzag deltas).
  auto two = [&](std::uint64_t a, std::uint64_t b) {
    return header + leb(2) + leb(a) + leb(b - a) + leb(0) + leb(0) + leb(5) + leb(11) + leb(1024) +
           leb(2 * (2048 - 517));
  };
  auto ix = parse_compact_index(two(std::min(f0, f2), std::max(f0, f2)), *f.image, "idx");
  ASSERT_TRUE(ix) << ix.error().message();
  ASSERT_EQ(ix->objects.size(), 2u);
  const auto* o0 = ix->find(f.b.digest_of(f.contents[0]));
  const auto* o2 = ix->find(f.b.digest_of(f.contents[2]));
  ASSERT_NE(o0, nullptr);
  ASSERT_NE(o2, nullptr);
  EXPECT_EQ(o0->offset, f0 < f2 ? 512u : 2048u);
  EXPECT_EQ(o2->offset, f0 < f2 ? 2048u : 512u);
  // The same file twice (the step 0), and two files of one object (f0 and f4 hold "alpha").
  auto same = parse_compact_index(two(f0, f0), *f.image, "idx");
  ASSERT_FALSE(same);
  EXPECT_THAT(same.error().message(), HasSubstr("objects[1].nid: the same nid"));
  const std::uint64_t f4 = nid_of(usr, "f4");
  auto dup = parse_compact_index(two(std::min(f0, f4), std::max(f0, f4)), *f.image, "idx");
  ASSERT_FALSE(dup);
  EXPECT_THAT(dup.error().message(), HasSubstr("objects[1].nid: object sha512:"));
}

}  // namespace
}  // namespace cfs::ocirepo
