// SPDX-License-Identifier: Apache-2.0
// Fuzzes the image reader: open, the structural check, load_tree (plus both printers on what
// it loads) and the random-access API a mount uses (inode, readdir with cookies, lookup,
// xattrs, read, readlink). Every failure must be kCorruptImage (or ENOTDIR/EINVAL/ENOENT for
// misuse the walk cannot cause); anything else, a crash, a sanitizer report or a hang is a bug.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "cfs/dump/print.h"
#include "cfs/erofs/reader.h"
#include "fuzz_target.h"

namespace {

template <typename R>
void expect_ok_or_corrupt(const R& r, const char* what) {
  if (r || r.error().is(cfs::Errc::kCorruptImage)) return;
  std::fprintf(stderr, "image_reader_fuzzer: %s: unexpected error %s\n", what,
               r.error().message().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::erofs;
  auto img = Image::from_bytes(std::as_bytes(std::span(data, size)));
  expect_ok_or_corrupt(img, "open");
  if (!img) return 0;
  expect_ok_or_corrupt(check_image(*img), "check_image");
  auto tree = load_tree(*img);
  expect_ok_or_corrupt(tree, "load_tree");
  if (tree) {
    std::string out;
    cfs::dump::print_dump(*tree, out);
    cfs::dump::print_ls(*tree, out);
  }
  // Random access, bounded (directories may loop in a hostile image).
  std::vector<std::uint64_t> todo{img->root_nid()};
  for (std::size_t i = 0; i < todo.size() && i < 300; ++i) {
    auto ino = img->inode(todo[i]);
    expect_ok_or_corrupt(ino, "inode");
    if (!ino) continue;
    expect_ok_or_corrupt(img->xattrs(*ino), "xattrs");
    expect_ok_or_corrupt(img->read(*ino, 0, 9000), "read");
    expect_ok_or_corrupt(img->read(*ino, 4095, 3), "read(4095)");
    if (ino->is_symlink()) expect_ok_or_corrupt(img->readlink(ino->nid), "readlink");
    if (!ino->is_dir()) continue;
    std::uint64_t cookie = 0;
    std::vector<std::string> names;
    for (int round = 0; round < 4096; ++round) {  // readdir in pages of 7, as FUSE would
      int n = 0;
      std::uint64_t next = cookie;
      auto st = img->iterate_dir(*ino, cookie, [&](const DirentView& e) {
        names.emplace_back(e.name);
        if (e.name != "." && e.name != "..") todo.push_back(e.nid);
        next = e.next_offset;
        return ++n < 7;
      });
      expect_ok_or_corrupt(st, "iterate_dir");
      if (!st || n == 0 || next <= cookie) break;
      cookie = next;
    }
    for (std::size_t k = 0; k < names.size() && k < 64; ++k)
      expect_ok_or_corrupt(img->lookup(ino->nid, names[k]), "lookup");
    expect_ok_or_corrupt(img->lookup(ino->nid, "zz-not-there"), "lookup(absent)");
  }
  auto r = img->resolve("/00/x");
  if (!r && !r.error().is_errno(ENOENT) && !r.error().is_errno(ENOTDIR))
    expect_ok_or_corrupt(r, "resolve");
  return 0;
}
