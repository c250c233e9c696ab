// SPDX-License-Identifier: Apache-2.0
#include "registry/descriptors.h"

#include <nlohmann/json.hpp>

#include "cfs/oci/image.h"

namespace cfs::registry::detail {
namespace {

using nlohmann::json;

Result<json> parse_object(std::string_view bytes, const std::string& what) {
  json j = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return fail(Errc::kInvalidInput, what + ": not a JSON object");
  return j;
}

std::string string_member(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json to_json(const Descriptor& d) {
  json j = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

}  // namespace

bool is_index_type(std::string_view media_type) {
  return media_type == kOciIndex || media_type == kDockerManifestList;
}

Result<std::vector<Descriptor>> manifest_children(std::string_view bytes,
                                                  std::string_view media_type,
                                                  const std::string& what) {
  CFS_ASSIGN_CTX(auto kind, oci::manifest_kind(bytes, media_type), what);
  if (kind == oci::ManifestKind::kIndex) {
    CFS_ASSIGN(auto x, oci::parse_index(std::string(bytes), what));
    return std::move(x.manifests);
  }
  CFS_ASSIGN(auto m, oci::parse_manifest(std::string(bytes), what));
  std::vector<Descriptor> out{std::move(m.config)};
  for (auto& l : m.layers) out.push_back(std::move(l));
  return out;
}

Result<std::optional<std::pair<oci::ContentDigest, Descriptor>>> referrer_of(
    std::string_view bytes, std::string_view media_type, const oci::ContentDigest& digest) {
  const std::string what = "manifest " + digest.str();
  CFS_ASSIGN_CTX(auto kind, oci::manifest_kind(bytes, media_type), what);
  if (kind == oci::ManifestKind::kIndex) return std::nullopt;  // an index names no subject here
  CFS_ASSIGN(auto m, oci::parse_manifest(std::string(bytes), what));
  if (!m.subject) return std::nullopt;
  Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = digest;
  d.size = bytes.size();
  d.artifact_type = m.artifact_type.empty() ? m.config.media_type : m.artifact_type;
  d.annotations = std::move(m.annotations);
  return std::make_optional(std::make_pair(m.subject->digest, std::move(d)));
}

Result<std::optional<std::string>> add_to_index(std::string_view index, const Descriptor& d) {
  json j;
  if (index.empty()) {
    j = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
  } else {
    // Extended only when it is an index (the oci module's rules): what we write must parse.
    CFS_TRY(oci::parse_index(std::string(index), "referrers fallback index"));
    CFS_ASSIGN(j, parse_object(index, "referrers fallback index"));
  }
  for (const auto& e : j["manifests"])
    if (e.is_object() && string_member(e, "digest") == d.digest.str()) return std::nullopt;
  j["manifests"].push_back(to_json(d));
  return std::make_optional(j.dump());
}

Result<std::string> layout_index_with(std::string_view existing, const Descriptor& d,
                                      const std::string& ref_name) {
  json j;
  if (existing.empty()) {
    j = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
  } else {
    CFS_ASSIGN(j, parse_object(existing, "index.json"));
    if (!j.contains("manifests") || !j["manifests"].is_array()) j["manifests"] = json::array();
  }
  json kept = json::array();
  for (auto& e : j["manifests"]) {
    bool same_name = e.is_object() && e.contains("annotations") && e["annotations"].is_object() &&
                     string_member(e["annotations"], oci::kRefNameAnnotation.data()) == ref_name;
    if (!(same_name && !ref_name.empty())) kept.push_back(e);
  }
  Descriptor named = d;
  if (!ref_name.empty()) named.annotations[std::string(oci::kRefNameAnnotation)] = ref_name;
  kept.push_back(to_json(named));
  j["manifests"] = std::move(kept);
  return j.dump(2) + "\n";
}

}  // namespace cfs::registry::detail

namespace cfs::registry {

std::string declared_media_type(std::string_view manifest) {
  auto j = nlohmann::json::parse(manifest, nullptr, false);
  auto it = j.is_object() ? j.find("mediaType") : j.end();
  return j.is_object() && it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace cfs::registry
