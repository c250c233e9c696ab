// SPDX-License-Identifier: Apache-2.0
// The local transports and image resolution (see cfs/oci/source.h).
#include "cfs/oci/source.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>

#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "cfs/oci/decompress.h"
#include "cfs/oci/tar.h"
#include "cfs/util/aligned_buffer.h"
#include "cfs/util/sys.h"
#include "oci/layout_json.h"

namespace cfs::oci {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

tl::unexpected<Error> bad(const std::string& what, const std::string& why) {
  return fail(Errc::kInvalidInput, what + ": " + why);
}

/// The files of a layout: a directory, or the members of an archive.
class Files {
 public:
  virtual ~Files() = default;
  /// nullopt when the file does not exist.
  virtual Result<std::optional<std::uint64_t>> size(const std::string& rel) = 0;
  virtual Result<std::unique_ptr<ByteSource>> open(const std::string& rel) = 0;

  Result<std::string> read(const std::string& rel, std::uint64_t max, const std::string& what) {
    CFS_ASSIGN(auto src, open(rel));
    return read_all(*src, max, what);
  }
};

class DirFiles final : public Files {
 public:
  DirFiles(UniqueFd dir, std::string path) : dir_(std::move(dir)), path_(std::move(path)) {}

  Result<std::optional<std::uint64_t>> size(const std::string& rel) override {
    auto fd = open_fd(rel);
    if (!fd && fd.error().is_errno(ENOENT)) return std::optional<std::uint64_t>{};
    if (!fd) return fail(fd.error());
    CFS_ASSIGN(struct stat st, sys::fstat(fd->get(), path_ + "/" + rel));
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(st.st_size));
  }
  Result<std::unique_ptr<ByteSource>> open(const std::string& rel) override {
    CFS_ASSIGN(UniqueFd fd, open_fd(rel));
    return fd_source(std::move(fd), path_ + "/" + rel);
  }

 private:
  /// Never leaves the layout directory, whatever symlinks it holds.
  Result<UniqueFd> open_fd(const std::string& rel) {
    auto fd = sys::openat2(dir_.get(), rel, O_RDONLY, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    if (!fd && fd.error().is_errno(ENOSYS))
      fd = sys::openat(dir_.get(), rel, O_RDONLY | O_NOFOLLOW);
    if (!fd) return fail(std::move(fd).error().with_context(path_));
    return fd;
  }

  UniqueFd dir_;
  std::string path_;
};

/// An uncompressed tar archive, indexed once by a scan of its headers.
class ArchiveFiles final : public Files {
 public:
  static Result<std::unique_ptr<ArchiveFiles>> open_archive(const std::string& path) {
    auto a = std::unique_ptr<ArchiveFiles>(new ArchiveFiles());
    a->path_ = path;
    CFS_ASSIGN(a->fd_, sys::open(path, O_RDONLY));
    CFS_TRY(a->scan());
    return a;
  }

  Result<std::optional<std::uint64_t>> size(const std::string& rel) override {
    CFS_ASSIGN(const Member* m, find(rel));
    if (!m) return std::optional<std::uint64_t>{};
    return std::optional<std::uint64_t>(m->size);
  }
  Result<std::unique_ptr<ByteSource>> open(const std::string& rel) override {
    CFS_ASSIGN(const Member* m, find(rel));
    if (!m) return fail(Errc::kObjectMissing, fmt::format("{}: no member '{}'", path_, rel));
    return range_source(fd_.get(), m->offset, m->size, path_ + ":" + rel);
  }
  /// Where the data of the member `rel` names starts, links followed: the same for every name
  /// (symlink or hardlink) of one member. nullopt when there is no such member.
  Result<std::optional<std::uint64_t>> identity(const std::string& rel) {
    CFS_ASSIGN(const Member* m, find(rel));
    if (!m) return std::optional<std::uint64_t>{};
    return std::optional<std::uint64_t>(m->offset);
  }

 private:
  struct Member {
    std::uint64_t offset = 0, size = 0;
    std::string link;  ///< symlink or hardlink target (archive path)
    bool symlink = false;
  };

  static std::string normalize(std::string_view p) {
    std::vector<std::string_view> parts;
    for (std::size_t pos = 0; pos <= p.size();) {
      std::size_t end = p.find('/', pos);
      if (end == std::string_view::npos) end = p.size();
      std::string_view c = p.substr(pos, end - pos);
      pos = end + 1;
      if (c.empty() || c == ".") continue;
      if (c == "..") {
        if (!parts.empty()) parts.pop_back();
        continue;
      }
      parts.push_back(c);
    }
    std::string out;
    for (auto c : parts) {
      if (!out.empty()) out += '/';
      out += c;
    }
    return out;
  }

  Status scan() {
    CFS_ASSIGN(struct stat st, sys::fstat(fd_.get(), path_));
    auto file_size = static_cast<std::uint64_t>(st.st_size);
    std::string head(8, '\0');
    CFS_TRY(sys::pread_full(fd_.get(), std::as_writable_bytes(std::span(head)), 0));
    if (sniff_compression(std::as_bytes(std::span(head))) != Compression::kNone)
      return bad(path_, "compressed archives are not supported (decompress it first)");
    tar::Parser parser;
    std::string buf;
    std::uint64_t off = 0;
    for (;;) {
      auto ev = parser.parse(std::as_bytes(std::span(buf)), off);
      if (!ev) return fail(std::move(ev).error().with_context(path_));
      if (ev->kind == tar::EventKind::kNeedData) {
        std::size_t old = buf.size();
        auto want =
            std::min<std::uint64_t>(ev->need - old, file_size - std::min(file_size, off + old));
        if (want == 0) {
          auto end = parser.at_eof(std::as_bytes(std::span(buf)), off);
          if (!end) return fail(std::move(end).error().with_context(path_));
          return {};
        }
        buf.resize(old + want);
        CFS_TRY(sys::pread_full(fd_.get(), std::as_writable_bytes(std::span(buf)).subspan(old),
                                off + old));
        continue;
      }
      if (ev->kind == tar::EventKind::kEnd) return {};
      off += ev->consumed;
      buf.clear();
      if (ev->kind != tar::EventKind::kEntry) continue;
      const tar::Entry& e = ev->entry;
      // Not off + size: a size near 2^64 (base-256 or pax) wraps it, and the scan with it
      // (oci_json_fuzzer: back to offset 0, forever).
      if (off > file_size || e.size > file_size - off)
        return bad(path_, fmt::format("member '{}' extends past the end of the archive", e.path));
      std::string name = normalize(e.path);
      Member m{off, e.size, {}, false};
      if (e.typeflag == '1' || e.typeflag == '2') {
        m.symlink = e.typeflag == '2';
        // An absolute symlink target is from the archive's root, as `docker load` resolves it
        // (the archive extracted, then FollowSymlinkInScope); containers/image joins it to the
        // link's directory (Go's path.Join), a quirk no writer relies on: podman and docker
        // save write relative targets (docs/design.md "Docker archive symlinks").
        std::string dir =
            e.link_target.starts_with('/')
                ? std::string()
                : name.substr(0, name.rfind('/') == std::string::npos ? 0 : name.rfind('/'));
        m.link = m.symlink ? normalize(dir + "/" + e.link_target) : normalize(e.link_target);
      }
      if (e.is_regular() || !m.link.empty()) members_[name] = std::move(m);
      off += tar::padded(e.size);
    }
  }

  Result<const Member*> find(const std::string& rel) {
    std::string name = normalize(rel);
    for (int depth = 0; depth < 16; ++depth) {
      auto it = members_.find(name);
      if (it == members_.end()) return static_cast<const Member*>(nullptr);
      if (it->second.link.empty()) return &it->second;
      name = it->second.link;
    }
    return bad(path_, fmt::format("member '{}': too many links", rel));
  }

  ArchiveFiles() = default;
  std::string path_;
  UniqueFd fd_;
  std::unordered_map<std::string, Member> members_;
};

Status verify(const std::string& bytes, const Descriptor& d, const std::string& what) {
  if (bytes.size() != d.size)
    return bad(what, fmt::format("{} bytes, its descriptor says {}", bytes.size(), d.size));
  ContentHasher h(d.digest.algorithm);
  h.update(std::as_bytes(std::span(bytes)));
  ContentDigest got = h.finish();
  if (got != d.digest)
    return fail(Errc::kDigestMismatch, fmt::format("{}: content is {}, its descriptor says {}",
                                                   what, got.str(), d.digest.str()));
  return {};
}

std::string blob_path(const ContentDigest& d) { return "blobs/" + d.algorithm + "/" + d.hex; }

/// oci: and oci-archive:.
class LayoutSource final : public ImageSource {
 public:
  LayoutSource(std::string name, std::unique_ptr<Files> files, std::string tag)
      : name_(std::move(name)), files_(std::move(files)), tag_(std::move(tag)) {}

  const std::string& name() const noexcept override { return name_; }

  Result<std::pair<RawManifest, std::optional<Descriptor>>> top() override {
    CFS_ASSIGN(auto layout, files_->size("oci-layout"));
    if (!layout) return bad(name_, "not an OCI image layout (no oci-layout file)");
    CFS_ASSIGN(std::string raw,
               files_->read("index.json", kMaxManifestSize, name_ + " index.json"));
    CFS_ASSIGN(Index idx, parse_index(raw, name_ + " index.json"));
    CFS_ASSIGN(std::optional<Descriptor> pick, layout_entry(idx, tag_, name_));
    // One image per platform: index.json itself is the index to choose from.
    if (!pick)
      return std::make_pair(RawManifest{std::move(raw), std::string(kOciIndex)},
                            std::optional<Descriptor>{});
    CFS_ASSIGN(RawManifest m, manifest(*pick));
    return std::make_pair(std::move(m), std::move(pick));
  }

  Result<RawManifest> manifest(const Descriptor& d) override {
    CFS_ASSIGN(std::string raw,
               files_->read(blob_path(d.digest), kMaxManifestSize, name_ + " " + d.digest.str()));
    return RawManifest{std::move(raw), d.media_type};
  }

  Result<std::unique_ptr<ByteSource>> blob(const ContentDigest& d) override {
    CFS_ASSIGN(auto size, files_->size(blob_path(d)));
    if (!size) return fail(Errc::kObjectMissing, fmt::format("{}: no blob {}", name_, d.str()));
    return files_->open(blob_path(d));
  }
  Result<std::uint64_t> blob_size(const ContentDigest& d) override {
    CFS_ASSIGN(auto size, files_->size(blob_path(d)));
    if (!size) return fail(Errc::kObjectMissing, fmt::format("{}: no blob {}", name_, d.str()));
    return *size;
  }

 private:
  std::string name_;
  std::unique_ptr<Files> files_;
  std::string tag_;
};

/// docker-archive: a manifest.json naming the config and layer members; the schema 2 manifest
/// is made up here (as skopeo does), so it has no digest to check.
class DockerArchiveSource final : public ImageSource {
 public:
  DockerArchiveSource(std::string name, std::unique_ptr<ArchiveFiles> files, std::string ref)
      : name_(std::move(name)), files_(std::move(files)), ref_(std::move(ref)) {}

  const std::string& name() const noexcept override { return name_; }

  Result<std::pair<RawManifest, std::optional<Descriptor>>> top() override {
    CFS_ASSIGN(std::string raw,
               files_->read("manifest.json", kMaxManifestSize, name_ + " manifest.json"));
    CFS_ASSIGN(detail::DockerArchiveImage image,
               detail::docker_archive_image(raw, ref_, name_ + " manifest.json"));
    const std::string& config_member = image.config;
    CFS_ASSIGN(std::string config_raw,
               files_->read(config_member, kMaxConfigSize, name_ + " " + config_member));
    ContentDigest config_digest = sha256_of(config_raw);
    members_[config_digest.str()] = config_member;
    auto config_doc = parse_config(config_raw, name_ + " " + config_member);
    // Field order of skopeo's schema 2 structs, so the bytes can match what it makes up.
    ordered_json m = {{"schemaVersion", 2},
                      {"mediaType", kDockerManifest},
                      {"config",
                       {{"mediaType", kDockerConfig},
                        {"size", config_raw.size()},
                        {"digest", config_digest.str()}}},
                      {"layers", ordered_json::array()}};
    // Each member is read once, however many entries (and names: links) list it: a hostile
    // manifest.json may list one large member thousands of times, and hashing it for each was
    // that many times the archive's work (kMaxLayers refuses such a manifest only after this).
    struct Read {
      Compression compression = Compression::kNone;
      std::optional<ContentDigest> digest;
    };
    std::unordered_map<std::uint64_t, Read> read;  // by ArchiveFiles::identity
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
      const std::string& member = image.layers[i];
      CFS_ASSIGN(auto size, files_->size(member));
      CFS_ASSIGN(auto id, files_->identity(member));
      if (!size || !id)
        return bad(name_, fmt::format("manifest.json Layers[{}]: no member '{}'", i, member));
      auto [seen, fresh] = read.try_emplace(*id);
      if (fresh) {
        CFS_ASSIGN(auto src, files_->open(member));
        std::string head(8, '\0');
        CFS_ASSIGN(std::size_t n, read_full(*src, std::as_writable_bytes(std::span(head))));
        head.resize(n);
        seen->second.compression = sniff_compression(std::as_bytes(std::span(head)));
      }
      const Compression c = seen->second.compression;
      ContentDigest digest;
      if (c == Compression::kNone && config_doc && i < config_doc->diff_ids.size()) {
        digest = config_doc->diff_ids[i];  // an uncompressed layer's digest is its diff_id
      } else {
        if (!seen->second.digest) {
          CFS_ASSIGN(auto whole, files_->open(member));
          HashingSource h(*whole);
          AlignedBuffer mem;
          const std::span<std::byte> buf = mem.get(1u << 20);
          for (;;) {
            CFS_ASSIGN(std::size_t got, h.read(buf));
            if (got == 0) break;
          }
          seen->second.digest = h.finish();
        }
        digest = *seen->second.digest;
      }
      const char* mt = c == Compression::kGzip ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                       : c == Compression::kZstd
                           ? "application/vnd.docker.image.rootfs.diff.tar.zstd"
                           : "application/vnd.docker.image.rootfs.diff.tar";
      m["layers"].push_back({{"mediaType", mt}, {"size", *size}, {"digest", digest.str()}});
      members_[digest.str()] = member;
    }
    return std::make_pair(RawManifest{m.dump(), std::string(kDockerManifest)},
                          std::optional<Descriptor>{});
  }

  Result<RawManifest> manifest(const Descriptor& d) override {
    return bad(name_, fmt::format("docker archives hold no index (asked for {})", d.digest.str()));
  }

  Result<std::unique_ptr<ByteSource>> blob(const ContentDigest& d) override {
    auto it = members_.find(d.str());
    if (it == members_.end())
      return fail(Errc::kObjectMissing, fmt::format("{}: no blob {}", name_, d.str()));
    return files_->open(it->second);
  }
  Result<std::uint64_t> blob_size(const ContentDigest& d) override {
    auto it = members_.find(d.str());
    if (it == members_.end())
      return fail(Errc::kObjectMissing, fmt::format("{}: no blob {}", name_, d.str()));
    CFS_ASSIGN(auto size, files_->size(it->second));
    return size.value_or(0);
  }

 private:
  std::string name_;
  std::unique_ptr<ArchiveFiles> files_;
  std::string ref_;
  std::map<std::string, std::string> members_;  // digest -> member
};

/// "PATH[:TAG]": the text after the last ':' is a tag if it has no '/'.
std::pair<std::string, std::string> split_tag(std::string_view rest) {
  std::size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || rest.substr(colon + 1).find('/') != std::string_view::npos)
    return {std::string(rest), ""};
  return {std::string(rest.substr(0, colon)), std::string(rest.substr(colon + 1))};
}

}  // namespace

namespace detail {

Result<DockerArchiveImage> docker_archive_image(std::string_view raw, std::string_view ref,
                                                const std::string& what) {
  json j = json::parse(raw.begin(), raw.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array() || j.empty())
    return bad(what, "not a non-empty JSON array");
  std::optional<std::size_t> pick;
  std::string tags;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const json& e = j[i];
    if (!e.is_object()) return bad(what, fmt::format("[{}] is not an object", i));
    auto t = e.find("RepoTags");
    if (t == e.end() || t->is_null()) continue;
    if (!t->is_array()) return bad(what, fmt::format("[{}] RepoTags is not an array", i));
    for (std::size_t k = 0; k < t->size(); ++k) {
      const json& tag = (*t)[k];
      if (!tag.is_string())
        return bad(what, fmt::format("[{}] RepoTags[{}] is not a string", i, k));
      const auto& s = tag.get_ref<const std::string&>();
      tags += (tags.empty() ? "" : ", ") + s;
      if (!ref.empty() && s == ref && !pick) pick = i;
    }
  }
  if (tags.empty()) tags = "none";
  if (ref.empty()) {
    if (j.size() != 1)
      return bad(what, fmt::format("{} images; name one with :REF (tags: {})", j.size(), tags));
    pick = 0;
  }
  if (!pick) return bad(what, fmt::format("no image tagged '{}' (tags: {})", ref, tags));
  const json& e = j[*pick];
  DockerArchiveImage out;
  auto config = e.find("Config");
  if (config == e.end() || !config->is_string())
    return bad(what, fmt::format("[{}] Config is not a string", *pick));
  out.config = config->get<std::string>();
  auto layers = e.find("Layers");
  if (layers == e.end() || !layers->is_array())
    return bad(what, fmt::format("[{}] Layers is not an array", *pick));
  for (std::size_t i = 0; i < layers->size(); ++i) {
    const json& l = (*layers)[i];
    if (!l.is_string()) return bad(what, fmt::format("[{}] Layers[{}] is not a string", *pick, i));
    out.layers.push_back(l.get<std::string>());
  }
  return out;
}

}  // namespace detail

Result<std::unique_ptr<ImageSource>> open_source(std::string_view reference,
                                                 std::string_view other_forms) {
  std::string ref(reference);
  if (reference.starts_with("oci:")) {
    auto [path, tag] = split_tag(reference.substr(4));
    CFS_ASSIGN(UniqueFd dir, sys::open(path, O_RDONLY | O_DIRECTORY));
    return std::unique_ptr<ImageSource>(
        std::make_unique<LayoutSource>(ref, std::make_unique<DirFiles>(std::move(dir), path), tag));
  }
  if (reference.starts_with("oci-archive:")) {
    auto [path, tag] = split_tag(reference.substr(12));
    CFS_ASSIGN(auto files, ArchiveFiles::open_archive(path));
    return std::unique_ptr<ImageSource>(std::make_unique<LayoutSource>(ref, std::move(files), tag));
  }
  if (reference.starts_with("docker-archive:")) {
    // A docker reference has ':' itself ("name:tag"): the path ends at the first ':'.
    std::string_view rest = reference.substr(15);
    std::size_t colon = rest.find(':');
    std::string path(rest.substr(0, colon));
    std::string tag = colon == std::string_view::npos ? "" : std::string(rest.substr(colon + 1));
    CFS_ASSIGN(auto files, ArchiveFiles::open_archive(path));
    return std::unique_ptr<ImageSource>(
        std::make_unique<DockerArchiveSource>(ref, std::move(files), tag));
  }
  const std::string forms = "oci:DIR[:TAG], oci-archive:FILE[:TAG]";
  const std::string last = "docker-archive:FILE[:REF]";
  return fail(Errc::kInvalidInput, fmt::format("image reference '{}': expected {}", reference,
                                               other_forms.empty() ? forms + " or " + last
                                                                   : forms + ", " + last + " or " +
                                                                         std::string(other_forms)));
}

Result<std::string> read_verified(ImageSource& source, const Descriptor& d, std::uint64_t max_size,
                                  const std::string& what) {
  if (d.size > max_size)
    return bad(what, fmt::format("{} bytes exceed the limit of {}", d.size, max_size));
  CFS_ASSIGN(auto src, source.blob(d.digest));
  CFS_ASSIGN(std::string bytes, read_all(*src, max_size, what));
  CFS_TRY(verify(bytes, d, what));
  return bytes;
}

Result<ResolvedImage> resolve_manifest(ImageSource& source,
                                       const std::optional<Platform>& platform) {
  const std::string& name = source.name();
  CFS_ASSIGN(auto top, source.top());
  RawManifest raw = std::move(top.first);
  if (top.second)
    CFS_TRY(verify(raw.bytes, *top.second, name + " manifest " + top.second->digest.str()));
  std::string hint = raw.media_type.empty() && top.second ? top.second->media_type : raw.media_type;
  ResolvedImage out;
  Platform want = platform.value_or(Platform::current());
  for (int depth = 0;; ++depth) {
    auto kind = manifest_kind(raw.bytes, hint);
    if (!kind) return fail(std::move(kind).error().with_context(name));
    if (*kind == ManifestKind::kManifest) break;
    if (depth == 2) return bad(name, "indexes nested more than twice");
    CFS_ASSIGN(Index idx, parse_index(std::move(raw.bytes), name + " index"));
    CFS_ASSIGN(Descriptor d, select_platform(idx, want, name));
    CFS_ASSIGN(raw, source.manifest(d));
    CFS_TRY(verify(raw.bytes, d, name + " manifest " + d.digest.str()));
    hint = raw.media_type.empty() ? d.media_type : raw.media_type;
    out.index = std::move(idx);
  }
  CFS_ASSIGN(out.manifest, parse_manifest(std::move(raw.bytes), name + " manifest"));
  return out;
}

Status resolve_config(ImageSource& source, ResolvedImage& image) {
  const Manifest& m = image.manifest;
  CFS_ASSIGN(std::string config, read_verified(source, m.config, kMaxConfigSize,
                                               source.name() + " config " + m.config.digest.str()));
  return adopt_config(image, std::move(config), source.name(), /*verified=*/true);
}

Status adopt_config(ResolvedImage& image, std::string config, const std::string& name,
                    bool verified) {
  const Manifest& m = image.manifest;
  if (!verified) {
    if (config.size() > kMaxConfigSize)
      return bad(name + " config " + m.config.digest.str(),
                 fmt::format("{} bytes exceed the limit of {}", config.size(), kMaxConfigSize));
    CFS_TRY(verify(config, m.config, name + " config " + m.config.digest.str()));
  }
  ImageConfig parsed;
  if (m.is_image()) {
    CFS_ASSIGN(parsed, parse_config(std::move(config), name + " config"));
    if (parsed.diff_ids.size() != m.layers.size())
      return bad(name, fmt::format("the manifest has {} layers, the config {} diff_ids",
                                   m.layers.size(), parsed.diff_ids.size()));
  } else {
    parsed.raw = std::move(config);
    parsed.digest = m.config.digest;
  }
  std::vector<LayerRef> layers;
  for (std::size_t i = 0; i < m.layers.size(); ++i)
    layers.push_back({m.layers[i], m.is_image() ? parsed.diff_ids[i] : m.layers[i].digest});
  image.config = std::move(parsed);
  image.layers = std::move(layers);
  return {};
}

Result<ResolvedImage> resolve_image(ImageSource& source, const std::optional<Platform>& platform) {
  CFS_ASSIGN(ResolvedImage out, resolve_manifest(source, platform));
  CFS_TRY(resolve_config(source, out));
  return out;
}

}  // namespace cfs::oci
