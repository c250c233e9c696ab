// SPDX-License-Identifier: Apache-2.0
// Fuzzes the redirect table reader and the rebuild (erofs/slim.h) with untrusted documents
// against a fixed slimmed image: a lazy mount reads one from a registry's blob and rebuilds the
// EROFS from it before checking the EROFS's fs-verity digest. Errors are expected; a document
// that parses must encode back to itself (every varint minimal, nothing ignored), and a
// rebuild that succeeds must change only the listed values, each to the path of the digest
// bytes its entry names.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "cfs/erofs/slim.h"
#include "cfs/erofs/writer.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/sys.h"
#include "fuzz_target.h"
#include "testutil/tree_builder.h"

namespace {

// Four files in two directories (two of one content), a symlink, an inline file, slimmed.
const std::string& slim_image() {
  static const std::string img = [] {
    cfs::testutil::TreeBuilder b("", cfs::verity::HashAlg::kSha512);
    const auto usr = b.dir(b.root(), "usr");
    const auto lib = b.dir(usr, "lib");
    b.file(usr, "a", "alpha");
    b.file(lib, "b", "bravo");
    b.file(lib, "c", std::string(5000, 'c'));
    b.file(usr, "d", "alpha");
    b.symlink(usr, "l", "lib/b");
    b.inline_file(usr, "i", "inline");
    auto fd = cfs::sys::memfd_create("fuzz-image");
    if (!fd || !cfs::erofs::write_image(b.tree(), {}, fd->get())) std::abort();
    if (::lseek(fd->get(), 0, SEEK_SET) != 0) std::abort();
    auto bytes = cfs::sys::read_fd(fd->get(), "fuzz image");
    if (!bytes) std::abort();
    auto s = cfs::erofs::slim_redirects(std::as_bytes(std::span(*bytes)));
    if (!s || s->table.entries.size() != 2) std::abort();  // b and c (a and d share theirs)
    // How the seed corpus/redirect-table/table was written: the image's own table.
    if (const char* seed = std::getenv("CFS_FUZZ_WRITE_SEED")) {
      const std::string doc = cfs::erofs::encode_redirect_table(s->table);
      if (std::FILE* f = std::fopen(seed, "wb")) {
        std::fwrite(doc.data(), 1, doc.size(), f);
        std::fclose(f);
      }
    }
    return s->erofs;
  }();
  return img;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::erofs;
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  const std::string& slim = slim_image();
  auto t = parse_redirect_table(doc, slim.size(), "fuzz");
  if (!t) return 0;
  FUZZ_CHECK(encode_redirect_table(*t) == doc, "a parsed table does not encode to itself");
  std::string img = slim;
  if (!rebuild_redirects(std::as_writable_bytes(std::span(img.data(), img.size())), *t, "fuzz"))
    return 0;
  const std::size_t len = t->value_size(), n = cfs::verity::digest_size(t->alg);
  std::size_t at = 0;
  for (const auto& e : t->entries) {
    FUZZ_CHECK(e.value >= at && e.value + len <= img.size(), "a value outside its place");
    FUZZ_CHECK(std::memcmp(img.data() + at, slim.data() + at, e.value - at) == 0,
               "a byte outside the listed values changed");
    auto d = cfs::verity::Digest::zero(t->alg);
    std::memcpy(d.bytes.data(), img.data() + e.digest, n);
    FUZZ_CHECK(img.substr(e.value, len) == "/" + cfs::tree::object_path(d),
               "a value is not its digest's path");
    at = e.value + len;
  }
  FUZZ_CHECK(img.compare(at, std::string::npos, slim, at, std::string::npos) == 0,
             "a byte after the last value changed");
  return 0;
}
