// SPDX-License-Identifier: Apache-2.0
// Fuzzes the compact object index reader (ocirepo/object_index.h parse_compact_index) with
// untrusted documents against a fixed image: a lazy mount reads one from a registry's manifest.
// Errors are expected; a document that parses must give an index that encodes again (every
// object is a file of the image) to a document that parses to the same index, whose listed
// objects are found, inside their range-fetchable layers.
#include <fcntl.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "cfs/erofs/writer.h"
#include "cfs/ocirepo/object_index.h"
#include "cfs/util/sys.h"
#include "fuzz_target.h"
#include "object_index_checks.h"
#include "testutil/tree_builder.h"

namespace {

// Five files in two directories (two of one content) and a symlink, written by the writer into
// a memfd: nids 0.. of the image are the space the fuzzer's nid columns fall into.
const cfs::erofs::Image& image() {
  static const cfs::erofs::Image img = [] {
    cfs::testutil::TreeBuilder b("", cfs::verity::HashAlg::kSha512);
    const auto usr = b.dir(b.root(), "usr");
    const auto lib = b.dir(usr, "lib");
    b.file(usr, "a", "alpha");
    b.file(lib, "b", "bravo");
    b.file(lib, "c", std::string(5000, 'c'));
    b.file(usr, "d", "alpha");
    b.symlink(usr, "l", "lib/b");
    auto fd = cfs::sys::memfd_create("fuzz-image");
    if (!fd || !cfs::erofs::write_image(b.tree(), {}, fd->get())) std::abort();
    auto i = cfs::erofs::Image::open_fd(fd->get(), "fuzz image");
    if (!i) std::abort();
    return std::move(*i);
  }();
  return img;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::ocirepo;
  std::string_view doc(reinterpret_cast<const char*>(data), size);
  auto ix = parse_compact_index(doc, image(), "fuzz");
  if (!ix) return 0;
  auto again = encode_compact_index(*ix, image());
  FUZZ_CHECK(again.has_value(), "a parsed index does not encode");
  auto back = parse_compact_index(*again, image(), "again");
  FUZZ_CHECK(back.has_value(), "an encoded index does not parse");
  FUZZ_CHECK(encode_object_index(*back) == encode_object_index(*ix), "encoding is not stable");
  check_listed_objects(*ix);
  return 0;
}
