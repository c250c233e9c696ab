// SPDX-License-Identifier: Apache-2.0
// What the dynamic loader opens for an ELF file, resolved in an image (registry/loader.h
// loader_objects), on a small tree of this host's real ELF files laid out as Debian lays them
// out (/lib and /lib64 symlinks into /usr, ld.so reached through an absolute symlink). The
// expected objects come from binutils' `readelf` on the same files (an independent oracle): its
// interpreter, /etc/ld.so.cache, then each DT_NEEDED library the tree has, in that order. One
// library is left out of the tree (skipped). And the lookup bound a hostile file meets. The loader
// graph push records (registry/loader_graph.h) against the same oracle, its closure walk, and its
// strict, bounded parser.
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
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cfs/erofs/writer.h"
#include "cfs/registry/loader_graph.h"
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

/// A small tree of this host's real ELF files laid out as Debian lays them out, in an image.
struct HostTree {
  testutil::TempDir tmp;
  std::unique_ptr<testutil::TreeBuilder> builder;
  /// The tree's ELF files: path in the image -> host file.
  std::map<std::string, std::string> elf;
  /// Every regular file: path in the image -> its bytes.
  std::map<std::string, std::string> content;
  std::optional<erofs::Image> image;
  std::string skip;  ///< why the host cannot build it (then nothing else is set)
  verity::Digest digest_at(const std::string& path) const {
    return builder->digest_of(content.at(path));
  }
};

std::unique_ptr<HostTree> host_tree() {
  auto t = std::make_unique<HostTree>();
  const std::string host = "/usr/lib/x86_64-linux-gnu/";
  // libpcre2-8.so.0 (libselinux's) is left out; libmd.so.0 is a symlink to its versioned file,
  // as Debian ships it.
  t->elf = {
      {"usr/bin/dpkg", "/usr/bin/dpkg"},
      {"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", host + "ld-linux-x86-64.so.2"},
      {"usr/lib/x86_64-linux-gnu/libc.so.6", host + "libc.so.6"},
      {"usr/lib/x86_64-linux-gnu/libselinux.so.1", host + "libselinux.so.1"},
      {"usr/lib/x86_64-linux-gnu/libmd.so.0.0.5", host + "libmd.so.0"},
  };
  auto& content = t->content;
  for (const auto& [path, from] : t->elf) {
    content[path] = slurp(from);
    if (content[path].empty() || !readelf(from).ok) {
      t->skip = from + " or readelf is not on this host";
      return t;
    }
  }
  content["etc/ld.so.cache"] = "glibc-ld.so.cache1.1 and so on";
  content["usr/share/doc/dpkg/README"] = std::string(5000, 'r');
  if (!t->tmp.ok()) {
    t->skip = "no temporary directory";
    return t;
  }
  t->builder = std::make_unique<testutil::TreeBuilder>(t->tmp / "objects");
  testutil::TreeBuilder& b = *t->builder;
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
  auto fd = sys::openat(AT_FDCWD, t->tmp / "image", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (!fd) {
    t->skip = fd.error().message();
    return t;
  }
  auto w = erofs::write_image(b.tree(), {}, fd->get());
  if (!w) {
    t->skip = w.error().message();
    return t;
  }
  auto image = erofs::Image::open(t->tmp / "image");
  if (!image) {
    t->skip = image.error().message();
    return t;
  }
  t->image = std::move(*image);
  return t;
}

/// The objects readelf says the loader opens for the tree's ELF file `path` (host file `from`):
/// its interpreter, ld.so.cache, then its DT_NEEDED names that the tree's library directory has
/// (each object once, never the file itself).
std::vector<verity::Digest> readelf_loads(const HostTree& t, const std::string& path,
                                          const std::string& from) {
  const Readelf r = readelf(from);
  std::vector<verity::Digest> want;
  auto add = [&](const verity::Digest& d) {
    if (d != t.digest_at(path) && std::find(want.begin(), want.end(), d) == want.end())
      want.push_back(d);
  };
  if (!r.interp.empty()) {
    add(t.digest_at("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
    add(t.digest_at("etc/ld.so.cache"));
  }
  for (const auto& name : r.needed) {
    const std::string lib = "usr/lib/x86_64-linux-gnu/" + name;
    if (t.content.count(lib))
      add(t.digest_at(lib));
    else if (name == "libmd.so.0")
      add(t.digest_at("usr/lib/x86_64-linux-gnu/libmd.so.0.0.5"));
  }
  return want;
}

TEST(LoaderObjects, AreWhatReadelfSaysTheLoaderOpens) {
  auto t = host_tree();
  if (!t->skip.empty()) GTEST_SKIP() << t->skip;
  ASSERT_EQ(readelf("/usr/bin/dpkg").interp, "/lib64/ld-linux-x86-64.so.2");
  const auto& content = t->content;
  const erofs::Image& image_ref = *t->image;
  const auto* image = &image_ref;
  auto digest_at = [&](const std::string& path) { return t->digest_at(path); };
  // The oracle: readelf_loads (loader_objects lists each file it would open, so repeats are
  // the caller's).
  for (const auto& entry : t->elf) {
    const std::string& path = entry.first;
    const std::vector<verity::Digest> want = readelf_loads(*t, path, entry.second);
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

// The loader graph `cfs oci push` records (registry/loader_graph.h build_loader_graph) is
// readelf's view of every ELF object of the tree, as positions in the index's objects (sorted
// by digest, as pushed), and nothing for the files that are not ELF.
TEST(LoaderGraph, IsReadelfsViewOfEveryObject) {
  auto t = host_tree();
  if (!t->skip.empty()) GTEST_SKIP() << t->skip;
  ocirepo::ObjectIndex index;
  std::map<verity::Digest, std::string> bytes_of;
  for (const auto& [path, bytes] : t->content) {
    const auto d = t->digest_at(path);
    bytes_of[d] = bytes;
    index.objects.push_back(
        {d, 0, 0, bytes.size(), bytes.size(), ocirepo::ObjectCompression::kNone});
  }
  ocirepo::sort_and_dedup(index.objects);
  auto pos_of = [&](const verity::Digest& d) {
    return static_cast<std::uint32_t>(index.find(d) - index.objects.data());
  };
  LoaderGraphStats stats;
  const LoaderGraph g = build_loader_graph(
      *t->image, index,
      [&](const verity::Digest& d) -> Result<UniqueFd> {
        CFS_ASSIGN(auto fd, sys::memfd_create("object"));
        const auto& b = bytes_of.at(d);
        CFS_TRY(sys::write_all(fd.get(), std::as_bytes(std::span(b.data(), b.size()))));
        return fd;
      },
      &stats);
  EXPECT_EQ(stats.elf, t->elf.size());
  EXPECT_EQ(g.objects, index.objects.size());
  std::size_t edges = 0;
  for (const auto& [path, from] : t->elf) {
    std::vector<std::uint32_t> want;
    for (const auto& d : readelf_loads(*t, path, from)) want.push_back(pos_of(d));
    const auto got = g.of(pos_of(t->digest_at(path)));
    EXPECT_EQ(std::vector<std::uint32_t>(got.begin(), got.end()), want) << path;
    edges += want.size();
  }
  EXPECT_EQ(g.edges(), edges);
  EXPECT_TRUE(g.of(pos_of(t->digest_at("etc/ld.so.cache"))).empty());
  EXPECT_TRUE(g.of(pos_of(t->digest_at("usr/share/doc/dpkg/README"))).empty());
  // What a mount reads back is what was built.
  auto again = parse_loader_graph(encode_loader_graph(g), index.objects.size(), "graph");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->loads, g.loads);
}

const std::string kHead =
    R"({"mediaType":"application/vnd.cfs.loader-graph.v1+json","version":1,"objects":8,)";

// A program's closure: breadth first (the loader's order), each object once (cycles and
// repeats), never the program itself, at most `max` objects.
TEST(LoaderGraph, ClosureIsBreadthFirstAndBounded) {
  auto g =
      parse_loader_graph(kHead + R"("loads":[[0,3,1],[1,5,3],[3,4,0],[4,6],[5,1]]})", 8, "graph");
  ASSERT_TRUE(g) << g.error().message();
  using V = std::vector<std::uint32_t>;
  EXPECT_EQ(loader_closure(*g, 0, 100), (V{3, 1, 4, 5, 6}));
  EXPECT_EQ(loader_closure(*g, 1, 100), (V{5, 3, 4, 0, 6}));
  EXPECT_EQ(loader_closure(*g, 0, 3), (V{3, 1, 4}));
  EXPECT_EQ(loader_closure(*g, 2, 100), V{});
  EXPECT_EQ(loader_closure(*g, 6, 100), V{});
}

// Hostile documents are refused, naming the field.
TEST(LoaderGraph, HostileDocumentsAreRefusedNamingTheField) {
  auto err = [](const std::string& doc, std::size_t objects = 8) {
    auto g = parse_loader_graph(doc, objects, "graph G");
    return g ? std::string("parsed") : g.error().message();
  };
  using ::testing::HasSubstr;
  EXPECT_EQ(err(kHead + R"("loads":[[0,1,2],[7,0]]})"), "parsed");
  EXPECT_THAT(err(kHead + R"("loads":[[0,1,8]]})"),
              HasSubstr("graph G: loads[0][2]: 8 is not a position"));
  EXPECT_THAT(err(kHead + R"("loads":[[2,1],[1,3]]})"),
              HasSubstr("loads[1][0]: objects not in ascending"));
  EXPECT_THAT(err(kHead + R"("loads":[[2,1],[2,3]]})"),
              HasSubstr("loads[1][0]: objects not in ascending order, or listed twice"));
  EXPECT_THAT(err(kHead + R"("loads":[[2,2]]})"),
              HasSubstr("loads[0][1]: an object loading itself"));
  EXPECT_THAT(err(kHead + R"("loads":[[2,3,4,3]]})"), HasSubstr("loads[0][3]: loaded twice"));
  EXPECT_THAT(err(kHead + R"("loads":[[2]]})"), HasSubstr("loads[0]: not an array of an object"));
  EXPECT_THAT(err(kHead + R"("loads":[[2,-1]]})"),
              HasSubstr("loads[0][1]: not an object position"));
  EXPECT_THAT(err(kHead + R"("loads":[[2,1.0]]})"),
              HasSubstr("loads[0][1]: not an object position"));
  EXPECT_THAT(err(kHead + R"("loads":{}})"), HasSubstr("graph G: loads: not an array"));
  EXPECT_THAT(err(kHead + R"("loads":[],"loads":[]})"),
              HasSubstr("graph G: loads: repeated member"));
  EXPECT_THAT(err(kHead + R"("loads":[],"more":1})"), HasSubstr("graph G: more: unknown member"));
  EXPECT_THAT(err(kHead + R"("loads":[]})", 9),
              HasSubstr("graph G: objects: not the object index's count, 9"));
  EXPECT_THAT(err(R"({"mediaType":"x","version":1,"objects":8,"loads":[]})"),
              HasSubstr("graph G: mediaType"));
  EXPECT_THAT(
      err(R"({"mediaType":"application/vnd.cfs.loader-graph.v1+json","version":2,"objects":8,"loads":[]})"),
      HasSubstr("graph G: version: not 1"));
  EXPECT_THAT(
      err(R"({"mediaType":"application/vnd.cfs.loader-graph.v1+json","version":1,"objects":8})"),
      HasSubstr("graph G: loads: missing"));
  EXPECT_THAT(err("[1"), HasSubstr("graph G: document: not JSON"));
  // The bounds: one object's loads, the edges in all, the document's size.
  const std::size_t n = 100000;
  std::string many =
      R"({"mediaType":"application/vnd.cfs.loader-graph.v1+json","version":1,"objects":)" +
      std::to_string(n) + R"(,"loads":[[0)";
  for (std::size_t k = 1; k <= kMaxObjectLoads; ++k) many += "," + std::to_string(k);
  EXPECT_EQ(err(many + "]]}", n), "parsed");
  EXPECT_THAT(err(many + ",99999]]}", n),
              HasSubstr("loads[0]: 257 objects loaded, more than the 256 allowed"));
  std::string wide =
      R"({"mediaType":"application/vnd.cfs.loader-graph.v1+json","version":1,"objects":)" +
      std::to_string(n) + R"(,"loads":[)";
  std::size_t edges = 0;
  for (std::uint32_t from = 0; edges <= kMaxLoaderGraphEdges; ++from) {
    wide += (from ? ",[" : "[") + std::to_string(from);
    for (std::uint32_t k = 1; k <= 64; ++k) wide += "," + std::to_string((from + k) % n);
    wide += "]";
    edges += 64;
  }
  EXPECT_THAT(err(wide + "]}", n), HasSubstr("more than the 131072 edges allowed in all"));
  EXPECT_THAT(err(kHead + R"("loads":[])" + std::string(kMaxLoaderGraphSize, ' ') + "}"),
              HasSubstr("more than the 1048576 allowed"));
}

}  // namespace
}  // namespace cfs::registry::detail
