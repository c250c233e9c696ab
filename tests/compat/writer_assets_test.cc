// SPDX-License-Identifier: Apache-2.0
// Byte compatibility of the image writer with composefs 1.0.8 over the upstream assets in
// $CFS_SHARED_DIR/compat/composefs-assets (read at run time; tests skip when absent):
//   * every asset with a .sha256: dump -> image has that sha256, its fs-verity digest equals
//     `fsverity digest` of the file and reference-outputs/DIGESTS.txt, fsck.erofs accepts it;
//   * every reference image: reader -> tree -> writer reproduces the image byte for byte;
//   * every should-fail-*.dump is rejected (by the parser or the writer).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cfs/dump/parse.h"
#include "cfs/erofs/reader.h"
#include "cfs/erofs/writer.h"
#include "cfs/util/hex.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"

namespace cfs {
namespace {

namespace fs = std::filesystem;

fs::path assets_dir() {
  const char* env = std::getenv("CFS_SHARED_DIR");
  return fs::path(env ? env : CFS_SHARED_DIR) / "compat" / "composefs-assets";
}

// Parsed in strict mode except these (README §2, DIGESTS.txt strict=0).
bool lenient(const std::string& name) {
  return name == "no-newline" || name == "longlink" || name == "honggfuzz-longlink-unterminated";
}

std::string read_file(const fs::path& p) {
  auto r = sys::read_file(p.string());
  return r ? *r : std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Runs a shell command, returns (exit status, stdout).
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return {-1, out};
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = ::pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool have_tool(const std::string& tool) {
  return run("command -v " + tool + " >/dev/null 2>&1").first == 0;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Dump text of an asset: gunzipped if needed; a symlink that was stored as a plain file
// holding its target name (special_v1.dump -> special.dump) is followed.
std::string load_dump(const fs::path& p) {
  if (p.extension() == ".gz") return run("gzip -dc " + quote(p.string())).second;
  std::string text = read_file(p);
  if (!text.empty() && text.size() < 256 && text.find('\n') == std::string::npos &&
      fs::is_regular_file(p.parent_path() / text))
    return read_file(p.parent_path() / text);
  return text;
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return to_hex(std::span<const std::uint8_t>(md, len));
}

struct Expected {
  std::string fsverity;
  std::uint64_t size = 0;
};

// reference-outputs/DIGESTS.txt: "NAME.dump[.gz] flags=[...] strict=N sha256=H fsverity=H size=N"
std::map<std::string, Expected> load_digests() {
  std::map<std::string, Expected> m;
  std::istringstream in(read_file(assets_dir() / "reference-outputs" / "DIGESTS.txt"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string file, tok;
    ls >> file;
    Expected e;
    while (ls >> tok) {
      if (tok.starts_with("fsverity=")) e.fsverity = tok.substr(9);
      if (tok.starts_with("size=")) e.size = std::stoull(tok.substr(5));
    }
    m[file] = e;
  }
  return m;
}

class TempFile {
 public:
  TempFile() {
    char path[] = "/tmp/cfs-compat-XXXXXX";
    fd_ = ::mkstemp(path);
    path_ = path;
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Asset names: "<file>.sha256" -> "<file>" (e.g. "config.dump.gz").
std::vector<std::string> digest_assets() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(assets_dir(), ec))
    if (e.path().extension() == ".sha256") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("none");
  return names;
}

std::vector<std::string> should_fail_assets() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(assets_dir(), ec)) {
    std::string n = e.path().filename().string();
    if (n.starts_with("should-fail-") && n.ends_with(".dump")) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("none");
  return names;
}

std::vector<std::string> reference_images() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(assets_dir() / "reference-outputs", ec))
    if (e.path().extension() == ".cfs") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("none");
  return names;
}

std::string test_name(const testing::TestParamInfo<std::string>& info) {
  std::string s;
  for (char c : info.param) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s;
}

std::string base_name(std::string file) {  // "config.dump.gz" -> "config"
  for (const char* ext : {".gz", ".dump"})
    if (file.ends_with(ext)) file.resize(file.size() - std::strlen(ext));
  return file;
}

// --- dump -> image ----------------------------------------------------------------------

class DumpAsset : public testing::TestWithParam<std::string> {};

TEST_P(DumpAsset, ImageMatchesUpstream) {
  const std::string file = GetParam();
  const fs::path dir = assets_dir();
  if (file == "none") GTEST_SKIP() << "compat assets not found in " << dir;
  const fs::path input = dir / file;
  if (!fs::exists(input)) GTEST_SKIP() << "no input for " << file << " in the asset pack";
  const std::string name = base_name(file);
  const std::string expected_sha = trim(read_file(dir / (file + ".sha256")));

  erofs::WriteOptions opts;
  if (auto v = trim(read_file(dir / (name + ".dump.version"))); !v.empty()) {
    opts.min_version = static_cast<std::uint32_t>(std::stoul(v));
    opts.max_version = opts.min_version;
  }
  dump::ParseOptions po;
  po.strict = !lenient(name);
  po.source_name = file;
  auto tree = dump::parse(load_dump(input), po);
  if (!tree && tree.error().is(Errc::kUnsupportedFeature))
    GTEST_SKIP() << "dump parser unavailable: " << tree.error().message();
  ASSERT_TRUE(tree) << tree.error().message();

  TempFile out;
  ASSERT_GE(out.fd(), 0);
  auto r = erofs::write_image(*tree, opts, out.fd());
  ASSERT_TRUE(r) << r.error().message();
  std::string image = read_file(out.path());
  ASSERT_EQ(image.size(), r->size);
  EXPECT_EQ(sha256_hex(image), expected_sha)
      << file << ": image differs from upstream; "
      << "compare with reference-outputs/" << name << ".cfs (cmp -l, cfs inspect)";

  auto digests = load_digests();
  if (auto it = digests.find(file); it != digests.end()) {
    EXPECT_EQ(r->digest.hex(), it->second.fsverity);
    EXPECT_EQ(r->size, it->second.size);
  }
  if (have_tool("fsverity")) {
    auto [st, text] = run("fsverity digest " + quote(out.path()));
    EXPECT_EQ(st, 0);
    EXPECT_EQ(text.substr(0, 7 + 64), "sha256:" + r->digest.hex());
  }
  if (have_tool("fsck.erofs")) {
    auto [st, text] = run("fsck.erofs " + quote(out.path()) + " 2>&1");
    EXPECT_EQ(st, 0) << "fsck.erofs rejects the image of " << file << ":\n" << text;
  }
}

INSTANTIATE_TEST_SUITE_P(Assets, DumpAsset, testing::ValuesIn(digest_assets()), test_name);

// --- should-fail inputs -----------------------------------------------------------------

class ShouldFail : public testing::TestWithParam<std::string> {};

TEST_P(ShouldFail, IsRejected) {
  const std::string file = GetParam();
  if (file == "none") GTEST_SKIP() << "compat assets not found in " << assets_dir();
  dump::ParseOptions po;  // upstream runs these with default flags, lenient parsing
  po.source_name = file;
  auto tree = dump::parse(load_dump(assets_dir() / file), po);
  if (!tree && tree.error().is(Errc::kUnsupportedFeature))
    GTEST_SKIP() << "dump parser unavailable: " << tree.error().message();
  if (!tree) {
    EXPECT_FALSE(tree.error().message().empty());
    return;
  }
  auto r = erofs::write_image(*tree, {}, -1);
  ASSERT_FALSE(r) << file << " was accepted by the parser and the writer";
  EXPECT_TRUE(r.error().is(Errc::kInvalidInput)) << r.error().message();
}

INSTANTIATE_TEST_SUITE_P(Assets, ShouldFail, testing::ValuesIn(should_fail_assets()), test_name);

// --- reference image -> reader -> writer ------------------------------------------------

class ReferenceImage : public testing::TestWithParam<std::string> {};

TEST_P(ReferenceImage, RewritesIdentically) {
  const std::string name = GetParam();
  if (name == "none") GTEST_SKIP() << "reference images not found in " << assets_dir();
  const fs::path path = assets_dir() / "reference-outputs" / (name + ".cfs");
  auto img = erofs::Image::open(path.string());
  ASSERT_TRUE(img) << img.error().message();
  auto tree = erofs::load_tree(*img);
  ASSERT_TRUE(tree) << tree.error().message();
  erofs::WriteOptions opts;
  opts.min_version = img->format_version();  // the version the image was written with
  opts.max_version = opts.min_version;
  auto r = erofs::write_image(*tree, opts, -1);
  ASSERT_TRUE(r) << r.error().message();
  std::string want = read_file(path);
  EXPECT_EQ(r->size, want.size());
  auto d = verity::digest_bytes(std::as_bytes(std::span(want.data(), want.size())));
  EXPECT_EQ(r->digest, d) << name << ": reader -> writer does not reproduce the image";
}

INSTANTIATE_TEST_SUITE_P(Assets, ReferenceImage, testing::ValuesIn(reference_images()), test_name);

// --- fuzzing seeds ------------------------------------------------------------------------

// Images of the upstream fuzzing seeds (fuzzing-data/, lenient parsing) as composefs v1.0.8
// writes them (mkcomposefs --from-file, built from the v1.0.8 tag): these seeds have no
// .sha256 in the pack, so the values were produced with that build, not with cfs.
struct SeedImage {
  const char* seed;
  std::uint32_t min_version;
  const char* sha256;
  std::uint64_t size;
};
constexpr SeedImage kSeedImages[] = {
    {"alpine", 0, "57b3e6d396fc5151a2a4e39de2297d20cc0b4fabbff95262ea6d127157c93165", 90112},
    {"alpine", 1, "f118ac18b9bf77c88c583546044383abb9a8e1ac1b0a23c25dfab81f58c33d41", 90112},
    {"busybox", 0, "a637b2755cb8bce1457da708b9186d0c07bc3a1c8e9dbf2bcb04d1d7f89b5dc2", 28672},
    {"busybox", 1, "341a2b724d9939c28dd12c086d3ba30f0052ce974f82ab08ae913e972c1f9689", 28672},
    {"dump-example", 0, "dfca9418c5e753f7cd151079c44fc711c7732cab69a8dc59f19c1f46c944dd07", 32768},
    {"dump-example", 1, "0bfd3d96b309981e7c722cf965d9350a9cc2645c0277997be12fb9ae6e17c6d8", 32768},
    {"fedora.gz", 0, "050841eecf894725e5232a640584ac4317cfcc40e2418a4143324e91fe0a57a4", 1392640},
    {"fedora.gz", 1, "199b7593d8fbb04ee416b19f6dc9576f4ce5e5b17d63fd84e92c978157eeca0f", 1392640},
};

TEST(FuzzSeeds, ImagesMatchUpstream) {
  const fs::path dir = assets_dir() / "fuzzing-data";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "fuzzing seeds not found in " << dir;
  for (const SeedImage& s : kSeedImages) {
    SCOPED_TRACE(std::string(s.seed) + " min-version " + std::to_string(s.min_version));
    dump::ParseOptions po;
    po.source_name = s.seed;
    auto tree = dump::parse(load_dump(dir / s.seed), po);
    if (!tree && tree.error().is(Errc::kUnsupportedFeature))
      GTEST_SKIP() << "dump parser unavailable: " << tree.error().message();
    ASSERT_TRUE(tree) << tree.error().message();
    erofs::WriteOptions opts;
    opts.min_version = s.min_version;
    TempFile out;
    auto r = erofs::write_image(*tree, opts, out.fd());
    ASSERT_TRUE(r) << r.error().message();
    std::string image = read_file(out.path());
    EXPECT_EQ(image.size(), s.size);
    EXPECT_EQ(sha256_hex(image), s.sha256);
  }
}

}  // namespace
}  // namespace cfs
