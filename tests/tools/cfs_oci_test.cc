// SPDX-License-Identifier: Apache-2.0
// cfs-oci-test: drives the oci and splitstream libraries for the Python integration tests and
// the benchmarks (not installed; the user-facing commands live in `cfs oci`).
//
//   split [--threads N] [--sha512] [--zlib] [--no-write] [--no-read-ahead] [--media-type T]
//         LAYER OBJDIR OUT.ss
//       decompress (oci::LayerInput), split into OUT.ss and OBJDIR/xx/rest; prints JSON with
//       the compression, the sha256 of the blob and of the tar (diff_id), entry and stream
//       stats, and the seconds the split took
//   cat [--sha512] SS OBJDIR          the reassembled stream on stdout
//   entries [--sha512] SS             one JSON object per tar entry
//   decompress [--zlib] FILE          decompressed bytes on stdout (no hashing)
//   apply [--compat] [--keep-user-xattrs] [--sha512] [--image OUT] SS...
//       merges layer streams in order (oci::Merger); one JSON object per name of the merged
//       tree in sorted depth-first order, then the extra names of shared nodes with the
//       path of their owner; --image writes the tree as a format-1 composefs image
//   resolve [--platform P] REF        the image a source reference names, as JSON
//   pull [--platform P] [--compat] [--image OUT] [--sha512] REF OBJDIR WORKDIR
//       every layer split (blob digest and diff_id checked), merged, optionally written;
//       REF is an oci:, oci-archive: or docker-archive: source (docker:// images are pulled
//       by `cfs oci pull`, whose pipeline the registry tests drive)
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cfs/erofs/writer.h"
#include "cfs/oci/decompress.h"
#include "cfs/oci/digest.h"
#include "cfs/oci/layer_input.h"
#include "cfs/oci/layer_stream.h"
#include "cfs/oci/merge.h"
#include "cfs/oci/source.h"
#include "cfs/splitstream/format.h"
#include "cfs/util/hex.h"
#include "cfs/util/sys.h"
#include "tools/dir_objects.h"

namespace {

using namespace cfs;
using json = nlohmann::json;

struct Args {
  std::vector<std::string> pos;
  unsigned threads = 0;
  bool sha512 = false;
  bool zlib = false;
  bool no_write = false;
  bool no_read_ahead = false;
  bool compat = false;
  std::string image;
  std::string platform;
  bool keep_user_xattrs = false;
  std::string media_type;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--threads" && i + 1 < argc)
      a.threads = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (s == "--sha512")
      a.sha512 = true;
    else if (s == "--zlib")
      a.zlib = true;
    else if (s == "--no-write")
      a.no_write = true;
    else if (s == "--platform" && i + 1 < argc)
      a.platform = argv[++i];
    else if (s == "--image" && i + 1 < argc)
      a.image = argv[++i];
    else if (s == "--compat")
      a.compat = true;
    else if (s == "--keep-user-xattrs")
      a.keep_user_xattrs = true;
    else if (s == "--no-read-ahead")
      a.no_read_ahead = true;
    else if (s == "--media-type" && i + 1 < argc)
      a.media_type = argv[++i];
    else
      a.pos.push_back(s);
  }
  return a;
}

verity::HashAlg alg(const Args& a) {
  return a.sha512 ? verity::HashAlg::kSha512 : verity::HashAlg::kSha256;
}

[[noreturn]] void die(const Error& e) {
  fmt::print(stderr, "cfs-oci-test: error: {}\n", e.message());
  std::exit(1);
}
template <typename T>
T check(Result<T> r) {
  if (!r) die(r.error());
  return std::move(*r);
}
void check(Status s) {
  if (!s) die(s.error());
}

Status write_stdout(std::span<const std::byte> b) { return sys::write_all(1, b); }

/// Opens a blob and stacks the decompressor its first bytes call for.
struct Layer {
  std::unique_ptr<oci::ByteSource> file;
  std::unique_ptr<oci::HashingSource> compressed;
  std::unique_ptr<oci::ByteSource> prefixed;
  std::unique_ptr<oci::ByteSource> plain;
  std::unique_ptr<oci::HashingSource> tar;
  oci::Compression kind = oci::Compression::kNone;
};

Layer open_layer(const std::string& path, bool zlib) {
  Layer l;
  l.file = oci::fd_source(check(sys::open(path, O_RDONLY)), path);
  l.compressed = std::make_unique<oci::HashingSource>(*l.file);
  std::string head(8, '\0');
  auto n = check(oci::read_full(*l.compressed, std::as_writable_bytes(std::span(head))));
  head.resize(n);
  l.kind = oci::sniff_compression(std::as_bytes(std::span(head)));
  l.prefixed = oci::prefixed_source(head, *l.compressed);
  l.plain = oci::decompressor(l.kind, *l.prefixed, path,
                              zlib ? oci::GzipEngine::kZlib : oci::GzipEngine::kIsal);
  l.tar = std::make_unique<oci::HashingSource>(*l.plain);
  return l;
}

int cmd_split(const Args& a) {
  if (a.pos.size() != 3) return 2;
  testtools::DirObjects objs(a.pos[1], alg(a), !a.no_write);
  oci::LayerInputOptions lo;
  lo.gzip = a.zlib ? oci::GzipEngine::kZlib : oci::GzipEngine::kIsal;
  lo.read_ahead = !a.no_read_ahead;
  auto input = check(oci::LayerInput::open(
      oci::fd_source(check(sys::open(a.pos[0], O_RDONLY)), a.pos[0]), a.media_type, a.pos[0], lo));
  splitstream::WriterOptions wo;
  wo.content_type = splitstream::kOciLayer;
  wo.threads = a.threads;
  auto w = check(splitstream::Writer::create(objs, wo));
  auto t0 = std::chrono::steady_clock::now();
  auto st = check(oci::split_tar(input->tar(), *w, a.pos[0]));
  auto digests = check(input->finish());
  UniqueFd out = check(sys::open(a.pos[2], O_WRONLY | O_CREAT | O_TRUNC, 0644));
  st.stream =
      check(w->finish([&](std::span<const std::byte> b) { return sys::write_all(out.get(), b); }));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json j;
  j["compression"] = oci::compression_name(digests.compression);
  j["blob_sha256"] = digests.blob.str();
  j["diff_id"] = digests.diff_id.str();
  j["blob_size"] = digests.blob_size;
  j["tar_bytes"] = st.tar_bytes;
  j["entries"] = st.entries;
  j["trailing_bytes"] = st.trailing_bytes;
  j["stream_size"] = st.stream.stream_size;
  j["inline_bytes"] = st.stream.inline_bytes;
  j["external_bytes"] = st.stream.external_bytes;
  j["external_chunks"] = st.stream.external_chunks;
  j["objects"] = st.stream.objects;
  j["splitstream_bytes"] = st.stream.file_size;
  j["seconds"] = secs;
  fmt::print("{}\n", j.dump());
  return 0;
}

splitstream::Reader open_stream(const std::string& path, const Args& a) {
  return check(splitstream::Reader::open(check(sys::open(path, O_RDONLY)), path,
                                         {alg(a), splitstream::kOciLayer}));
}

int cmd_cat(const Args& a) {
  if (a.pos.size() != 2) return 2;
  testtools::DirObjects objs(a.pos[1], alg(a), false);
  auto r = open_stream(a.pos[0], a);
  check(r.reassemble(objs.opener(), write_stdout));
  return 0;
}

std::string hex_of(const std::string& s) {
  return to_hex(std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

int cmd_entries(const Args& a) {
  if (a.pos.size() != 1) return 2;
  auto r = open_stream(a.pos[0], a);
  oci::LayerReader lr(r, a.pos[0]);
  for (;;) {
    auto e = check(lr.next());
    if (!e) break;
    const auto& t = e->tar;
    json j;
    j["path_hex"] = hex_of(t.path);
    j["type"] = std::string(1, t.typeflag == '\0' ? '0' : t.typeflag);
    j["mode"] = t.mode;
    j["uid"] = t.uid;
    j["gid"] = t.gid;
    j["mtime"] = t.mtime;
    j["mtime_nsec"] = t.mtime_nsec;
    j["size"] = t.size;
    j["link_hex"] = hex_of(t.link_target);
    if (t.dev_major) j["devmajor"] = *t.dev_major;
    if (t.dev_minor) j["devminor"] = *t.dev_minor;
    json x = json::object();
    for (const auto& [k, v] : t.xattrs) x[k] = hex_of(v);
    j["xattrs"] = x;
    if (e->inline_content) j["content_hex"] = hex_of(*e->inline_content);
    if (e->object) j["object"] = e->object->hex();
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

std::string type_name(const Node& n) {
  switch (n.type()) {
    case S_IFDIR:
      return "dir";
    case S_IFREG:
      return "file";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "char";
    case S_IFBLK:
      return "block";
    case S_IFIFO:
      return "fifo";
    default:
      return "other";
  }
}

int cmd_apply(const Args& a) {
  if (a.pos.empty()) return 2;
  oci::MergeOptions mo = a.compat ? oci::MergeOptions::compatible() : oci::MergeOptions{};
  if (a.keep_user_xattrs) mo.xattrs = oci::XattrFilter::kKeepUserXattrs;
  oci::Merger m(mo);
  for (const auto& ss : a.pos) {
    auto r = open_stream(ss, a);
    oci::LayerReader lr(r, ss);
    check(m.apply_layer(lr, ss));
  }
  Tree tree = check(m.finish());
  if (!a.image.empty()) {
    UniqueFd out = check(sys::open(a.image, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    check(erofs::write_image(tree, {1, 1}, out.get()));
  }
  // Pre-order, sorted: the path of each node's owner first.
  std::vector<std::string> owner(tree.size());
  std::vector<std::pair<NodeId, std::string>> stack{{tree.root(), ""}};
  std::vector<std::pair<std::string, NodeId>> links;
  while (!stack.empty()) {
    auto [id, path] = stack.back();
    stack.pop_back();
    const Node& n = tree.node(id);
    json j;
    j["path_hex"] = hex_of(path.empty() ? "/" : path);
    j["type"] = type_name(n);
    j["mode"] = n.mode;
    j["uid"] = n.uid;
    j["gid"] = n.gid;
    j["mtime"] = n.mtime_sec;
    j["mtime_nsec"] = n.mtime_nsec;
    j["nlink"] = n.nlink;
    if (n.is_reg()) j["size"] = n.size;
    if (n.content) j["content_hex"] = hex_of(*n.content);
    if (n.digest) j["digest"] = n.digest->hex();
    if (n.is_reg() || n.is_symlink()) j["payload_hex"] = hex_of(n.payload);
    if (n.type() == S_IFCHR || n.type() == S_IFBLK) j["rdev"] = n.rdev;
    json x = json::object();
    for (const auto& xa : n.xattrs) x[xa.key] = hex_of(xa.value);
    j["xattrs"] = x;
    fmt::print("{}\n", j.dump());
    for (auto it = n.children.rbegin(); it != n.children.rend(); ++it) {
      std::string child = path + "/" + it->name;
      if (it->hardlink) {
        links.emplace_back(child, it->node);
        continue;
      }
      owner[it->node] = child;
      stack.emplace_back(it->node, child);
    }
  }
  for (const auto& [path, node] : links) {
    json h;
    h["path_hex"] = hex_of(path);
    h["hardlink_hex"] = hex_of(owner[node]);
    fmt::print("{}\n", h.dump());
  }
  return 0;
}

json descriptor_json(const oci::Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
}

int cmd_resolve(const Args& a) {
  if (a.pos.size() != 1) return 2;
  auto src = check(oci::open_source(a.pos[0]));
  std::optional<oci::Platform> platform;
  if (!a.platform.empty()) platform = check(oci::Platform::parse(a.platform));
  auto img = check(oci::resolve_image(*src, platform));
  json j;
  if (img.index) j["index"] = img.index->digest.str();
  j["manifest"] = img.manifest.digest.str();
  j["manifest_media_type"] = img.manifest.media_type;
  j["manifest_hex"] = hex_of(img.manifest.raw);
  j["config"] = descriptor_json(img.manifest.config);
  j["platform"] = img.config.platform.str();
  j["layers"] = json::array();
  for (const auto& l : img.layers) {
    json lj = descriptor_json(l.blob);
    lj["diff_id"] = l.diff_id.str();
    // What the transport says the blob's length is, before anything is read.
    auto size = check(src->blob(l.blob.digest))->known_size();
    lj["source_size"] = size ? json(*size) : json(nullptr);
    j["layers"].push_back(lj);
  }
  fmt::print("{}\n", j.dump());
  return 0;
}

/// Every layer of an image from a source: split into WORKDIR/layer-N.ss and OBJDIR with both
/// digests checked, then merged (and written as an image with --image).
int cmd_pull(const Args& a) {
  if (a.pos.size() != 3) return 2;
  auto src = check(oci::open_source(a.pos[0]));
  std::optional<oci::Platform> platform;
  if (!a.platform.empty()) platform = check(oci::Platform::parse(a.platform));
  auto img = check(oci::resolve_image(*src, platform));
  testtools::DirObjects objs(a.pos[1], alg(a), !a.no_write);
  oci::MergeOptions mo = a.compat ? oci::MergeOptions::compatible() : oci::MergeOptions{};
  oci::Merger merger(mo);
  auto t0 = std::chrono::steady_clock::now();
  json layers = json::array();
  for (std::size_t i = 0; i < img.layers.size(); ++i) {
    const auto& l = img.layers[i];
    std::string what = fmt::format("layer {} ({})", i, l.blob.digest.str());
    auto input =
        check(oci::LayerInput::open(check(src->blob(l.blob.digest)), l.blob.media_type, what, {}));
    splitstream::WriterOptions wo;
    wo.content_type = splitstream::kOciLayer;
    wo.threads = a.threads;
    auto w = check(splitstream::Writer::create(objs, wo));
    check(oci::split_tar(input->tar(), *w, what));
    auto d = check(input->finish());
    if (d.blob != l.blob.digest || d.blob_size != l.blob.size)
      die(Error(Errc::kDigestMismatch,
                fmt::format("{}: the blob is {} ({} bytes)", what, d.blob.str(), d.blob_size)));
    if (d.diff_id != l.diff_id)
      die(Error(Errc::kDigestMismatch, fmt::format("{}: the tar is {}, the config says {}", what,
                                                   d.diff_id.str(), l.diff_id.str())));
    std::string ss = fmt::format("{}/layer-{}.ss", a.pos[2], i);
    UniqueFd out = check(sys::open(ss, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    auto st = check(
        w->finish([&](std::span<const std::byte> b) { return sys::write_all(out.get(), b); }));
    auto r = open_stream(ss, a);
    oci::LayerReader lr(r, what);
    check(merger.apply_layer(lr, l.diff_id.str()));
    layers.push_back({{"diff_id", d.diff_id.str()},
                      {"compression", oci::compression_name(d.compression)},
                      {"tar_bytes", d.tar_size},
                      {"objects", st.objects}});
  }
  Tree tree = check(merger.finish());
  if (!a.image.empty()) {
    UniqueFd out = check(sys::open(a.image, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    auto res = check(erofs::write_image(tree, {1, 1}, out.get()));
    layers.push_back({{"image_digest", res.digest.hex()}});
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json j{{"manifest", img.manifest.digest.str()}, {"layers", layers}, {"seconds", secs}};
  fmt::print("{}\n", j.dump());
  return 0;
}

int cmd_decompress(const Args& a) {
  if (a.pos.size() != 1) return 2;
  Layer l = open_layer(a.pos[0], a.zlib);
  std::vector<std::byte> buf(1 << 20);
  for (;;) {
    // Straight from the decompressor: no hashing, to measure the decoders alone.
    auto n = check(l.plain->read(buf));
    if (n == 0) break;
    check(write_stdout(std::span(buf.data(), n)));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: cfs-oci-test split|cat|entries|decompress ...\n");
    return 2;
  }
  Args a = parse(argc, argv);
  std::string c = argv[1];
  int rc = 2;
  if (c == "split") rc = cmd_split(a);
  if (c == "cat") rc = cmd_cat(a);
  if (c == "entries") rc = cmd_entries(a);
  if (c == "decompress") rc = cmd_decompress(a);
  if (c == "apply") rc = cmd_apply(a);
  if (c == "resolve") rc = cmd_resolve(a);
  if (c == "pull") rc = cmd_pull(a);
  if (rc == 2) fmt::print(stderr, "cfs-oci-test: bad arguments\n");
  return rc;
}
