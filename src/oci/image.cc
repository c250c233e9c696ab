// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/image.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace cfs::oci {

namespace {

using json = nlohmann::json;

tl::unexpected<Error> bad(const std::string& what, const std::string& why) {
  return fail(Errc::kInvalidInput, what + ": " + why);
}

Result<json> parse_json(std::string_view raw, const std::string& what) {
  json j = json::parse(raw.begin(), raw.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad(what, "not valid JSON");
  if (!j.is_object()) return bad(what, "not a JSON object");
  return j;
}

/// A string member; "" when absent, an error when of another type.
Result<std::string> str(const json& j, const char* key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return bad(what, fmt::format("'{}' is not a string", key));
  return it->get<std::string>();
}

Result<std::map<std::string, std::string>> annotations(const json& j, const std::string& what) {
  std::map<std::string, std::string> out;
  auto it = j.find("annotations");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_object()) return bad(what, "'annotations' is not an object");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return bad(what, fmt::format("annotation '{}' is not a string", k));
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<Descriptor> descriptor(const json& j, const std::string& what) {
  if (!j.is_object()) return bad(what, "not an object");
  Descriptor d;
  CFS_ASSIGN(d.media_type, str(j, "mediaType", what));
  CFS_ASSIGN(std::string digest, str(j, "digest", what));
  if (digest.empty()) return bad(what, "no 'digest'");
  auto parsed = ContentDigest::parse(digest);
  if (!parsed) return fail(std::move(parsed).error().with_context(what));
  d.digest = std::move(*parsed);
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<std::int64_t>() < 0)
    return bad(what, "'size' is not a non-negative integer");
  d.size = size->get<std::uint64_t>();
  CFS_ASSIGN(d.artifact_type, str(j, "artifactType", what));
  CFS_ASSIGN(d.annotations, annotations(j, what));
  if (auto p = j.find("platform"); p != j.end() && !p->is_null()) {
    if (!p->is_object()) return bad(what, "'platform' is not an object");
    Platform pl;
    CFS_ASSIGN(pl.os, str(*p, "os", what + " platform"));
    CFS_ASSIGN(pl.architecture, str(*p, "architecture", what + " platform"));
    CFS_ASSIGN(pl.variant, str(*p, "variant", what + " platform"));
    d.platform = std::move(pl);
  }
  return d;
}

Result<std::vector<Descriptor>> descriptors(const json& j, const char* key, const std::string& what,
                                            bool required) {
  std::vector<Descriptor> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return bad(what, fmt::format("no '{}'", key));
    return out;
  }
  if (!it->is_array()) return bad(what, fmt::format("'{}' is not an array", key));
  for (std::size_t i = 0; i < it->size(); ++i) {
    CFS_ASSIGN(Descriptor d, descriptor((*it)[i], fmt::format("{} {}[{}]", what, key, i)));
    out.push_back(std::move(d));
  }
  return out;
}

Status schema_version_2(const json& j, const std::string& what) {
  auto v = j.find("schemaVersion");
  if (v == j.end() || !v->is_number_integer() || v->get<std::int64_t>() != 2)
    return bad(what, "'schemaVersion' is not 2");
  return {};
}

bool is_index_type(std::string_view mt) { return mt == kOciIndex || mt == kDockerManifestList; }
bool is_manifest_type(std::string_view mt) { return mt == kOciManifest || mt == kDockerManifest; }

}  // namespace

std::string Platform::str() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

Result<Platform> Platform::parse(std::string_view text) {
  Platform p;
  std::size_t a = text.find('/');
  if (a == std::string_view::npos || a == 0)
    return fail(Errc::kInvalidInput,
                fmt::format("platform '{}': expected os/arch[/variant]", text));
  p.os = std::string(text.substr(0, a));
  std::string_view rest = text.substr(a + 1);
  std::size_t b = rest.find('/');
  p.architecture = std::string(rest.substr(0, b));
  if (b != std::string_view::npos) p.variant = std::string(rest.substr(b + 1));
  if (p.architecture.empty() || p.variant.find('/') != std::string::npos ||
      (b != std::string_view::npos && p.variant.empty()))
    return fail(Errc::kInvalidInput,
                fmt::format("platform '{}': expected os/arch[/variant]", text));
  return p;
}

Platform Platform::current() {
  Platform p{"linux", "unknown", ""};
#if defined(__x86_64__)
  p.architecture = "amd64";
#elif defined(__aarch64__)
  p.architecture = "arm64";
#elif defined(__arm__)
  p.architecture = "arm";
  p.variant = "v7";
#elif defined(__i386__)
  p.architecture = "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  p.architecture = "ppc64le";
#elif defined(__s390x__)
  p.architecture = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  p.architecture = "riscv64";
#endif
  return p;
}

bool Platform::serves(const Platform& want) const {
  if (os != want.os || architecture != want.architecture) return false;
  if (want.variant.empty()) return true;
  auto norm = [&](const std::string& v) { return architecture == "arm64" && v == "v8" ? "" : v; };
  return norm(variant) == norm(want.variant);
}

Result<ManifestKind> manifest_kind(std::string_view raw, std::string_view hint) {
  CFS_ASSIGN(json j, parse_json(raw, "manifest"));
  CFS_ASSIGN(std::string mt, str(j, "mediaType", "manifest"));
  for (std::string_view t : {std::string_view(mt), hint}) {
    if (is_index_type(t)) return ManifestKind::kIndex;
    if (is_manifest_type(t)) return ManifestKind::kManifest;
  }
  if (j.contains("manifests")) return ManifestKind::kIndex;
  if (j.contains("config") || j.contains("layers")) return ManifestKind::kManifest;
  return fail(Errc::kInvalidInput,
              fmt::format("neither an image manifest nor an index (mediaType '{}')", mt));
}

Result<Manifest> parse_manifest(std::string raw, const std::string& what) {
  CFS_ASSIGN(json j, parse_json(raw, what));
  CFS_TRY(schema_version_2(j, what));
  Manifest m;
  CFS_ASSIGN(m.media_type, str(j, "mediaType", what));
  if (m.media_type.empty()) m.media_type = std::string(kOciManifest);
  if (!is_manifest_type(m.media_type))
    return bad(what, fmt::format("media type '{}' is not an image manifest", m.media_type));
  auto config = j.find("config");
  if (config == j.end()) return bad(what, "no 'config'");
  CFS_ASSIGN(m.config, descriptor(*config, what + " config"));
  // Before any layer is parsed: the count is what bounds a pull's merge (kMaxLayers).
  if (auto l = j.find("layers"); l != j.end() && l->is_array() && l->size() > kMaxLayers)
    return bad(what,
               fmt::format("{} layers, more than the {} an image may have", l->size(), kMaxLayers));
  CFS_ASSIGN(m.layers, descriptors(j, "layers", what, /*required=*/true));
  CFS_ASSIGN(m.artifact_type, str(j, "artifactType", what));
  CFS_ASSIGN(m.annotations, annotations(j, what));
  if (auto s = j.find("subject"); s != j.end() && !s->is_null()) {
    CFS_ASSIGN(Descriptor d, descriptor(*s, what + " subject"));
    m.subject = std::move(d);
  }
  m.digest = sha256_of(raw);
  m.raw = std::move(raw);
  return m;
}

Result<Index> parse_index(std::string raw, const std::string& what) {
  CFS_ASSIGN(json j, parse_json(raw, what));
  CFS_TRY(schema_version_2(j, what));
  Index x;
  CFS_ASSIGN(x.media_type, str(j, "mediaType", what));
  if (x.media_type.empty()) x.media_type = std::string(kOciIndex);
  if (!is_index_type(x.media_type))
    return bad(what, fmt::format("media type '{}' is not an image index", x.media_type));
  CFS_ASSIGN(x.manifests, descriptors(j, "manifests", what, /*required=*/true));
  x.digest = sha256_of(raw);
  x.raw = std::move(raw);
  return x;
}

Result<ImageConfig> parse_config(std::string raw, const std::string& what) {
  CFS_ASSIGN(json j, parse_json(raw, what));
  ImageConfig c;
  CFS_ASSIGN(c.platform.os, str(j, "os", what));
  CFS_ASSIGN(c.platform.architecture, str(j, "architecture", what));
  CFS_ASSIGN(c.platform.variant, str(j, "variant", what));
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) return bad(what, "no 'rootfs' object");
  CFS_ASSIGN(std::string type, str(*rootfs, "type", what + " rootfs"));
  if (type != "layers") return bad(what, fmt::format("rootfs type '{}' is not 'layers'", type));
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) return bad(what, "rootfs.diff_ids is not an array");
  for (std::size_t i = 0; i < ids->size(); ++i) {
    const json& d = (*ids)[i];
    if (!d.is_string()) return bad(what, fmt::format("rootfs.diff_ids[{}] is not a string", i));
    auto parsed = ContentDigest::parse(d.get<std::string>());
    if (!parsed)
      return fail(
          std::move(parsed).error().with_context(fmt::format("{} rootfs.diff_ids[{}]", what, i)));
    c.diff_ids.push_back(std::move(*parsed));
  }
  c.digest = sha256_of(raw);
  c.raw = std::move(raw);
  return c;
}

Result<Descriptor> select_platform(const Index& index, const Platform& want,
                                   const std::string& what) {
  std::string have;
  for (const auto& d : index.manifests) {
    if (!d.platform) continue;
    if (d.platform->serves(want)) return d;
    if (!have.empty()) have += ", ";
    have += d.platform->str();
  }
  return bad(what, fmt::format("no image for platform {} (the index has: {})", want.str(),
                               have.empty() ? "no platforms" : have));
}

Result<std::optional<Descriptor>> layout_entry(const Index& index, std::string_view tag,
                                               const std::string& what) {
  std::string tags;
  const Descriptor* pick = nullptr;
  for (const auto& d : index.manifests) {
    auto it = d.annotations.find(std::string(kRefNameAnnotation));
    std::string_view t = it == d.annotations.end() ? "" : std::string_view(it->second);
    if (!t.empty()) tags += (tags.empty() ? "" : ", ") + std::string(t);
    if (!tag.empty() && t == tag && !pick) pick = &d;
  }
  if (tags.empty()) tags = "none";
  if (!tag.empty()) {
    if (!pick) return bad(what, fmt::format("no image tagged '{}' (tags: {})", tag, tags));
    return std::optional<Descriptor>(*pick);
  }
  if (index.manifests.size() == 1) return std::optional<Descriptor>(index.manifests[0]);
  bool platforms = !index.manifests.empty();
  for (const auto& d : index.manifests) platforms = platforms && d.platform.has_value();
  if (!platforms)
    return bad(what, fmt::format("{} images; name one with :TAG (tags: {})", index.manifests.size(),
                                 tags));
  return std::optional<Descriptor>();
}

}  // namespace cfs::oci
