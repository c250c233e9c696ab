// SPDX-License-Identifier: Apache-2.0
// The kernel's floor for an import's object files (issues 13 and 17): writes the objects an
// import of an uncompressed layer would write (the same contents, sizes and names: the tar's
// regular files over the inline threshold, one per distinct fs-verity digest, named as the
// repository names them) in the cheapest way the kernel allows, with nothing else going on:
// contents from memory (the tar mapped and populated before the clock starts, digests and
// names computed before it too), N threads taking the objects in stream order, per object
// one creation, the writes and one link (or none) and a close.
//
//   object_floor TAR DIR [--create tmpfile|excl] [--chunk BYTES] [--threads N] [--no-syncfs]
//                [--no-final-sync] [--direct-min BYTES] [--hot BYTES]
//
// --create tmpfile: open(O_TMPFILE) in DIR/objects, write, linkat(AT_EMPTY_PATH) into the
//   fan-out directory, close (what the repository does: objects appear whole or not at all).
// --create excl: open(O_CREAT|O_EXCL) under the final name, write, close (not crash-safe: a
//   torn object keeps its name; measured to price the O_TMPFILE + linkat pair).
// --chunk: write each object in pieces of this many bytes (0, the default: one write).
// --direct-min: objects of at least this many bytes are written with O_DIRECT (their whole
//   4 KiB blocks by DMA, the tail through the page cache after clearing O_DIRECT): what the
//   page-cache copy costs, against waiting for the disk (0, the default: never).
// --hot: every object is written from the start of a per-thread buffer of this many bytes
//   (larger objects in pieces of that size), which stays in the caches, as the import's 16 MiB
//   read ring mostly does; the files' contents then do not match their names (0, the
//   default: each object's own bytes, from the mapping, i.e. from memory the caches do not
//   hold).
// --no-syncfs: no background syncfs every 64 MiB (the repository's BackgroundSync).
// --no-final-sync: no syncfs at the end (an import makes its objects durable before naming
//   the layer: the final sync is part of its time).
//
// DIR must not exist (its fan-out directories are made before the clock starts). Prints one
// line: objects, bytes, wall seconds to the last close, to the end of the final syncfs, and
// the process's user and system CPU seconds over the same span (getrusage, all threads).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "cfs/oci/layer_stream.h"
#include "cfs/oci/tar.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/background_sync.h"
#include "cfs/verity/digest.h"

namespace {

struct Object {
  const std::byte* data;
  std::size_t size;
  std::string fanout;  // two hex digits
  std::string leaf;    // the rest of the digest's hex
};

struct Options {
  std::string tar;
  std::string dir;
  bool excl = false;
  std::size_t chunk = 0;
  unsigned threads = 2;
  bool syncfs = true;
  bool final_sync = true;
  std::size_t direct_min = 0;
  std::size_t hot = 0;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "object_floor: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage() {
  std::fprintf(
      stderr,
      "usage: object_floor TAR DIR [--create tmpfile|excl] [--chunk BYTES] "
      "[--threads N] [--no-syncfs] [--no-final-sync] [--direct-min BYTES] [--hot BYTES]\n");
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--create") {
      std::string v = value();
      if (v != "tmpfile" && v != "excl") usage();
      o.excl = v == "excl";
    } else if (a == "--chunk") {
      o.chunk = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--threads") {
      o.threads = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
    } else if (a == "--no-syncfs") {
      o.syncfs = false;
    } else if (a == "--hot") {
      o.hot = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--direct-min") {
      o.direct_min = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--no-final-sync") {
      o.final_sync = false;
    } else if (a.starts_with("--")) {
      usage();
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2 || o.threads == 0) usage();
  o.tar = pos[0];
  o.dir = pos[1];
  return o;
}

/// The objects of the tar mapped at `base` (`size` bytes), in stream order, each distinct
/// digest once (what split_tar hands to the repository).
std::vector<Object> objects_of(const std::byte* base, std::size_t size) {
  namespace tar = cfs::oci::tar;
  tar::Parser parser;
  std::vector<Object> out;
  std::unordered_set<std::string> seen;
  cfs::verity::Params params;
  std::size_t at = 0;
  for (;;) {
    auto ev = parser.parse(std::span(base + at, size - at), at);
    if (!ev) {
      std::fprintf(stderr, "object_floor: %s\n", ev.error().message().c_str());
      std::exit(1);
    }
    if (ev->kind == tar::EventKind::kNeedData) {
      std::fprintf(stderr, "object_floor: the tar ends early\n");
      std::exit(1);
    }
    at += ev->consumed;
    if (ev->kind == tar::EventKind::kEnd) return out;
    if (ev->kind == tar::EventKind::kGlobal) continue;
    const tar::Entry& e = ev->entry;
    if (e.is_regular() && e.size > cfs::oci::kInlineContentMax) {
      auto content = std::span(base + at, static_cast<std::size_t>(e.size));
      std::string hex = cfs::verity::digest_bytes(content, params).hex();
      if (seen.insert(hex).second)
        out.push_back({content.data(), content.size(), hex.substr(0, 2), hex.substr(2)});
    }
    at += static_cast<std::size_t>(tar::padded(e.size));
  }
}

double seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  int tfd = ::open(o.tar.c_str(), O_RDONLY | O_CLOEXEC);
  if (tfd < 0) die(o.tar);
  struct stat st {};
  if (::fstat(tfd, &st) != 0) die(o.tar);
  const auto tar_size = static_cast<std::size_t>(st.st_size);
  void* map = ::mmap(nullptr, tar_size, PROT_READ, MAP_SHARED | MAP_POPULATE, tfd, 0);
  if (map == MAP_FAILED) die(o.tar);
  std::vector<Object> objects = objects_of(static_cast<const std::byte*>(map), tar_size);

  if (::mkdir(o.dir.c_str(), 0755) != 0) die(o.dir);
  const std::string objdir = o.dir + "/objects";
  if (::mkdir(objdir.c_str(), 0755) != 0) die(objdir);
  int ofd = ::open(objdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (ofd < 0) die(objdir);
  std::vector<int> fanout(256, -1);
  for (unsigned i = 0; i < 256; ++i) {
    char name[3];
    std::snprintf(name, sizeof name, "%02x", i);
    if (::mkdirat(ofd, name, 0755) != 0) die(objdir + "/" + name);
    fanout[i] = ::openat(ofd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fanout[i] < 0) die(objdir + "/" + name);
  }
  std::uint64_t total = 0;
  for (const Object& ob : objects) total += ob.size;

  std::unique_ptr<cfs::BackgroundSync> writeback;
  if (o.syncfs) {
    auto w = cfs::syncfs_every(ofd, objdir);
    if (!w) die("syncfs_every");
    writeback = std::move(*w);
  }

  rusage r0{};
  ::getrusage(RUSAGE_SELF, &r0);
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    cfs::AlignedBuffer hot_mem;  // page-aligned: O_DIRECT takes it
    const std::span<std::byte> hot = hot_mem.get(o.hot);
    if (!hot.empty()) std::memcpy(hot.data(), map, std::min(hot.size(), tar_size));
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < objects.size();) {
      const Object& ob = objects[i];
      const int dirfd = fanout[std::strtoul(ob.fanout.c_str(), nullptr, 16)];
      const bool direct = o.direct_min > 0 && ob.size >= o.direct_min;
      const int flags = O_WRONLY | O_CLOEXEC | (direct ? O_DIRECT : 0);
      int fd = o.excl ? ::openat(dirfd, ob.leaf.c_str(), flags | O_CREAT | O_EXCL, 0644)
                      : ::openat(ofd, ".", flags | O_TMPFILE, 0644);
      if (fd < 0) die("create " + ob.fanout + "/" + ob.leaf);
      std::size_t off = 0;
      if (direct) {  // the tar's data starts on a 512-byte block of the page-aligned mapping
        const std::size_t blocks = ob.size / 4096 * 4096;
        while (off < blocks) {
          ssize_t n = hot.empty() ? ::write(fd, ob.data + off, blocks - off)
                                  : ::write(fd, hot.data(), std::min(blocks - off, hot.size()));
          if (n <= 0) die("direct write " + ob.fanout + "/" + ob.leaf);
          off += static_cast<std::size_t>(n);
        }
        if (off < ob.size && ::fcntl(fd, F_SETFL, O_WRONLY) != 0) die("fcntl");
      }
      std::size_t piece = o.chunk == 0 ? ob.size : o.chunk;
      if (!hot.empty()) piece = std::min(piece, hot.size());
      while (off < ob.size) {
        const std::byte* from = hot.empty() ? ob.data + off : hot.data();
        ssize_t n = ::write(fd, from, std::min(piece, ob.size - off));
        if (n <= 0) die("write " + ob.fanout + "/" + ob.leaf);
        off += static_cast<std::size_t>(n);
      }
      if (!o.excl && ::linkat(fd, "", dirfd, ob.leaf.c_str(), AT_EMPTY_PATH) != 0)
        die("link " + ob.fanout + "/" + ob.leaf);
      if (::close(fd) != 0) die("close " + ob.fanout + "/" + ob.leaf);
      if (writeback) writeback->added(ob.size);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < o.threads; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const auto t1 = std::chrono::steady_clock::now();
  writeback.reset();  // waits for a run in progress, like the repository's at its end
  if (o.final_sync && ::syncfs(ofd) != 0) die("syncfs");
  const auto t2 = std::chrono::steady_clock::now();
  rusage r1{};
  ::getrusage(RUSAGE_SELF, &r1);

  std::printf(
      "objects %zu bytes %llu written %.3f s synced %.3f s user %.3f sys %.3f (create %s, "
      "chunk %zu, threads %u, background syncfs %s, final syncfs %s, direct from %zu, hot %zu)\n",
      objects.size(), static_cast<unsigned long long>(total),
      std::chrono::duration<double>(t1 - t0).count(),
      std::chrono::duration<double>(t2 - t0).count(), seconds(r1.ru_utime) - seconds(r0.ru_utime),
      seconds(r1.ru_stime) - seconds(r0.ru_stime), o.excl ? "excl" : "tmpfile", o.chunk, o.threads,
      o.syncfs ? "on" : "off", o.final_sync ? "on" : "off", o.direct_min, o.hot);
  return 0;
}
