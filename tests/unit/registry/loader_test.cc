// SPDX-License-Identifier: Apache-2.0
// What the dynamic loader opens for an ELF file, resolved in an image (registry/loader.h
// loader_objects), on a small tree of this host's real ELF files laid out as Debian lays them
// out (/lib and /lib64 symlinks into /usr, ld.so reached through an absolute symlink). The
// expected objects come from binutils' `readelf` on the same files (an independent oracle): its
// interpreter, /etc/ld.so.cache, then each DT_NEEDED library the tree has, in that order. One
// library is left out of the tree (skipped). And the lookup bound a hostile file meets.
#include "registry/loader.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cfs/erofs/writer.h"
#include "cfs/util/sys.h"
#include "testutil/temp_dir.h"
#include "testutil/tree_builder.h"

namespace cfs::registry::detail {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// What readelf says the loader needs for `path`.
struct Readelf {
  bool ok = false;
  std::string interp;
  std::vector<std::string> needed;
};
Readelf readelf(const std::string& path) {
  Readelf r;
  const std::string cmd = "readelf -W -l -d '" + path + "' 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  if (!p) return r;
  char line[4096];
  auto between = [](const std::string& s, const std::string& open) {
    auto a = s.find(open);
    if (a == std::string::npos) return std::string();
    a += open.size();
    return s.substr(a, s.find(']', a) - a);
  };
  while (std::fgets(line, sizeof line, p.get())) {
    const std::string s = line;
    r.ok = true;
    if (auto i = between(s, "[Requesting program interpreter: "); !i.empty()) r.interp = i;
    if (s.find("(NEEDED)") != std::string::npos)
      r.needed.push_back(between(s, "Shared library: ["));
  }
  return r;
}

TEST(LoaderObjects, AreWhatReadelfSaysTheLoaderOpens) {
  const std::string host = "/usr/lib/x86_64-linux-gnu/";
  // The tree's files: path in the image -> host file. libpcre2-8.so.0 (libselinux's) is left
  // out; libmd.so.0 is a symlink to its versioned file, as Debian ships it.
  const std::map<std::string, std::string> elf = {
      {"usr/bin/dpkg", "/usr/bin/dpkg"},
      {"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", host + "ld-linux-x86-64.so.2"},
      {"usr/lib/x86_64-linux-gnu/libc.so.6", host + "libc.so.6"},
      {"usr/lib/x86_64-linux-gnu/libselinux.so.1", host + "libselinux.so.1"},
      {"usr/lib/x86_64-linux-gnu/libmd.so.0.0.5", host + "libmd.so.0"},
  };
  std::map<std::string, std::string> content;
  for (const auto& [path, from] : elf) {
    content[path] = slurp(from);
    if (content[path].empty() || !readelf(from).ok)
      GTEST_SKIP() << from << " or readelf is not on this host";
  }
  ASSERT_EQ(readelf("/usr/bin/dpkg").interp, "/lib64/ld-linux-x86-64.so.2");
  content["etc/ld.so.cache"] = "glibc-ld.so.cache1.1 and so on";
  content["usr/share/doc/dpkg/README"] = std::string(5000, 'r');

  testutil::TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  testutil::TreeBuilder b(tmp / "objects");
  std::map<std::string, NodeId> dirs{{"", b.root()}};
  auto dir_of = [&](const std::string& path) {
    std::string cur;
    NodeId at = b.root();
    for (std::size_t s = 0, e; (e = path.find('/', s)) != std::string::npos; s = e + 1) {
      cur += (cur.empty() ? "" : "/") + path.substr(s, e - s);
      if (!dirs.count(cur)) dirs[cur] = b.dir(at, path.substr(s, e - s));
      at = dirs[cur];
    }
    return at;
  };
  for (const auto& [path, bytes] : content)
    b.file(dir_of(path), path.substr(path.rfind('/') + 1), bytes);
  b.symlink(b.root(), "lib", "usr/lib");
  b.symlink(b.root(), "lib64", "usr/lib64");
  b.symlink(b.dir(dirs["usr"], "lib64"), "ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
  b.symlink(dirs["usr/lib/x86_64-linux-gnu"], "libmd.so.0", "libmd.so.0.0.5");
  auto fd = sys::openat(AT_FDCWD, tmp / "image", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_TRUE(fd);
  auto w = erofs::write_image(b.tree(), {}, fd->get());
  ASSERT_TRUE(w) << w.error().message();
  auto image = erofs::Image::open(tmp / "image");
  ASSERT_TRUE(image) << image.error().message();

  // The oracle: for each ELF file, readelf's interpreter, ld.so.cache, then its DT_NEEDED names
  // that the tree's library directory has (each object once, never the file itself: the
  // loader's view; loader_objects lists each file it would open, so repeats are the caller's).
  auto digest_at = [&](const std::string& path) { return b.digest_of(content.at(path)); };
  for (const auto& entry : elf) {
    // Named variables, not a structured binding: clang 14 cannot capture those in `add`.
    const std::string& path = entry.first;
    const Readelf r = readelf(entry.second);
    std::vector<verity::Digest> want;
    auto add = [&](const verity::Digest& d) {
      if (d != digest_at(path) && std::find(want.begin(), want.end(), d) == want.end())
        want.push_back(d);
    };
    if (!r.interp.empty()) {
      add(digest_at("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
      add(digest_at("etc/ld.so.cache"));
    }
    for (const auto& name : r.needed) {
      const std::string lib = "usr/lib/x86_64-linux-gnu/" + name;
      if (content.count(lib))
        add(digest_at(lib));
      else if (name == "libmd.so.0")
        add(digest_at("usr/lib/x86_64-linux-gnu/libmd.so.0.0.5"));
    }
    const auto& bytes = content.at(path);
    auto info = parse_elf_load_info(std::as_bytes(std::span(bytes.data(), bytes.size())), path);
    ASSERT_TRUE(info) << info.error().message();
    std::vector<verity::Digest> got;
    if (*info)
      for (const auto& d : loader_objects(*image, **info))
        if (d != digest_at(path) && std::find(got.begin(), got.end(), d) == got.end())
          got.push_back(d);
    EXPECT_EQ(got, want) << path;
  }
  // dpkg: ld.so, the cache, libmd, libselinux, libc (readelf's order); libselinux: libc and ld.so
  // but not the missing libpcre2-8.
  auto count = [&](const std::string& path) {
    const auto& bytes = content.at(path);
    auto info = parse_elf_load_info(std::as_bytes(std::span(bytes.data(), bytes.size())), path);
    return info && *info ? loader_objects(*image, **info).size() : 0;
  };
  EXPECT_EQ(count("usr/bin/dpkg"), 5u);
  EXPECT_EQ(count("usr/lib/x86_64-linux-gnu/libselinux.so.1"), 2u);
}

// A hostile file's search costs at most kMaxLoaderLookups path lookups: a library that only the
// 5,000th DT_RUNPATH directory's successor (/usr/lib) holds is not found, while behind ten
// directories it is.
TEST(LoaderObjects, TheSearchIsBounded) {
  testutil::TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  testutil::TreeBuilder b(tmp / "objects");
  const NodeId usr = b.dir(b.root(), "usr");
  b.file(b.dir(usr, "lib"), "libx.so.1", std::string(100, 'x'));
  auto fd = sys::openat(AT_FDCWD, tmp / "image", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(erofs::write_image(b.tree(), {}, fd->get()));
  auto image = erofs::Image::open(tmp / "image");
  ASSERT_TRUE(image) << image.error().message();
  ElfLoadInfo info;
  info.elf64 = true;
  info.machine = 62;
  info.needed = {"libx.so.1"};
  for (int i = 0; i < 10; ++i) info.runpath.push_back("/nowhere/" + std::to_string(i));
  auto found = loader_objects(*image, info);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0], b.digest_of(std::string(100, 'x')));
  for (int i = 10; i < 5000; ++i) info.runpath.push_back("/nowhere/" + std::to_string(i));
  EXPECT_TRUE(loader_objects(*image, info).empty());
}

}  // namespace
}  // namespace cfs::registry::detail
