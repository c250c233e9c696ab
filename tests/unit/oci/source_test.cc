// SPDX-License-Identifier: Apache-2.0
// The local transports on hand-made archives that lie (the archives written by skopeo, umoci
// and docker are in tests/integration/test_oci_sources.py).
#include "cfs/oci/source.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string_view>

#include "testutil/temp_dir.h"
#include "testutil/ustar.h"

namespace cfs::oci {
namespace {

using ::testing::HasSubstr;

// A member whose size (base-256, 2^64 - 512) wraps its end offset past zero: the index scan
// refused it only when the sum did not wrap, and otherwise started again at byte 0, forever
// (oci_json_fuzzer; its input is tests/fuzz/corpus/oci-json/tar-size-wraps-offset).
TEST(Source, ArchiveMemberSizeThatWrapsTheOffsetIsRefused) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string h = testutil::ustar_header("index.json", 0, '0');
  std::memset(h.data() + 124, 0, 12);
  h[124] = '\x80';  // base-256: 0xffff'ffff'ffff'fe00 = 2^64 - 512 in the last 8 bytes
  std::memset(h.data() + 128, 0xff, 6);
  h[134] = '\xfe';
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  for (const char* kind : {"oci-archive:", "docker-archive:"}) {
    auto src = open_source(kind + dir.write("a.tar", h + std::string(1024, '\0')));
    ASSERT_FALSE(src) << kind;
    EXPECT_THAT(src.error().message(),
                HasSubstr("a.tar: member 'index.json' extends past the end of the archive"));
  }
}

/// A regular member and its data; a link member (`type` '1' hardlink, '2' symlink).
std::string member(const std::string& name, const std::string& data) {
  return testutil::ustar_header(name, data.size(), '0') + testutil::ustar_padded(data);
}
std::string link_member(const std::string& name, char type, const std::string& target) {
  return testutil::ustar_header(name, 0, type, 0777, 0, 0, target);
}

/// A docker archive of one image whose manifest.json lists `layers` (member names), with the
/// members `rest` (which should hold them).
std::string docker_archive(const testutil::TempDir& dir, const std::vector<std::string>& layers,
                           const std::string& rest) {
  std::string list;
  for (const auto& l : layers) list += (list.empty() ? "\"" : ",\"") + l + "\"";
  const std::string manifest =
      R"([{"Config": "config.json", "RepoTags": null, "Layers": [)" + list + "]}]";
  const std::string config = R"({"rootfs": {"type": "layers", "diff_ids": []}})";
  return dir.write("docker.tar", member("manifest.json", manifest) + member("config.json", config) +
                                     rest + std::string(1024, '\0'));
}

/// A gzip layer as sniffed (its magic), `n` bytes: docker-archive: hashes it for its digest.
std::string gzip_looking(std::size_t n) {
  std::string data = "\x1f\x8b\x08";
  data.resize(n, 'z');
  return data;
}

/// Bytes this process has read through read(2)/pread(2) so far (/proc/self/io "rchar").
std::uint64_t bytes_read() {
  std::ifstream io("/proc/self/io");
  std::string key;
  std::uint64_t value = 0;
  while (io >> key >> value)
    if (key == "rchar:") return value;
  return 0;
}

// A manifest.json may list one large member many times, under its own name and through links
// to it: it is hashed once (it was hashed for every entry, that many times the archive's work).
TEST(Source, DockerArchiveHashesAMemberListedManyTimesOnce) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string data = gzip_looking(4u << 20);
  std::vector<std::string> layers;
  for (int i = 0; i < 30; ++i)
    for (const char* name : {"blobs/l.gz", "a/layer.tar", "b/layer.tar"}) layers.push_back(name);
  const std::string path =
      docker_archive(dir, layers,
                     member("blobs/l.gz", data) + link_member("a/layer.tar", '2', "../blobs/l.gz") +
                         link_member("b/layer.tar", '1', "blobs/l.gz"));
  auto src = open_source("docker-archive:" + path);
  ASSERT_TRUE(src) << src.error().message();
  const std::uint64_t before = bytes_read();
  auto top = (*src)->top();
  const std::uint64_t read = bytes_read() - before;
  ASSERT_TRUE(top) << top.error().message();
  auto m = parse_manifest(top->first.bytes, "made up");
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->layers.size(), layers.size());
  for (const auto& l : m->layers) EXPECT_EQ(l.digest, sha256_of(std::string_view(data)));
  // Once is 4 MiB (and the archive's small members); every entry was 90 times that.
  EXPECT_LT(read, 2 * data.size()) << "bytes read for " << layers.size() << " entries";
}

// Every source reaches the layers through parse_manifest's cap: docker-archive: too, whose
// manifest is made up from manifest.json.
TEST(Source, DockerArchiveWithMoreLayersThanTheCapIsRefused) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path =
      docker_archive(dir, std::vector<std::string>(kMaxLayers + 1, "blobs/l.gz"),
                     member("blobs/l.gz", gzip_looking(1000)));
  auto src = open_source("docker-archive:" + path);
  ASSERT_TRUE(src) << src.error().message();
  auto image = resolve_manifest(**src, std::nullopt);
  ASSERT_FALSE(image);
  EXPECT_THAT(image.error().message(),
              HasSubstr(fmt::format("docker-archive:{} manifest: {} layers, more than the {}", path,
                                    kMaxLayers + 1, kMaxLayers)));
}

// An absolute symlink target is from the archive's root, as docker load resolves it (it was
// taken from the link's directory: "a/blobs/l.gz", no such member).
TEST(Source, DockerArchiveAbsoluteSymlinkIsFromTheArchiveRoot) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string data = gzip_looking(3000);
  const std::string path =
      docker_archive(dir, {"a/layer.tar", "b/c/layer.tar"},
                     member("blobs/l.gz", data) + link_member("a/layer.tar", '2', "/blobs/l.gz") +
                         // ".." stops at the root, as it does in a chroot.
                         link_member("b/c/layer.tar", '2', "/../../blobs/./l.gz"));
  auto src = open_source("docker-archive:" + path);
  ASSERT_TRUE(src) << src.error().message();
  auto top = (*src)->top();
  ASSERT_TRUE(top) << top.error().message();
  auto m = parse_manifest(top->first.bytes, "made up");
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->layers.size(), 2u);
  for (const auto& l : m->layers) {
    EXPECT_EQ(l.digest, sha256_of(std::string_view(data)));
    EXPECT_EQ(l.size, data.size());
  }
}

}  // namespace
}  // namespace cfs::oci
