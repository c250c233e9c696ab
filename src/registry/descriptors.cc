// SPDX-License-Identifier: Apache-2.0
#include "registry/descriptors.h"

#include <nlohmann/json.hpp>

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

Result<Descriptor> descriptor(const json& j, const std::string& what) {
  if (!j.is_object()) return fail(Errc::kInvalidInput, what + ": descriptor is not an object");
  Descriptor d;
  d.media_type = string_member(j, "mediaType");
  CFS_ASSIGN(d.digest,
             oci::ContentDigest::parse(string_member(j, "digest")).map_error([&](Error e) {
               return std::move(e).with_context(what);
             }));
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned())
    return fail(Errc::kInvalidInput,
                what + ": descriptor " + d.digest.str() + " has no valid size");
  d.size = size->get<std::uint64_t>();
  d.artifact_type = string_member(j, "artifactType");
  if (auto a = j.find("annotations"); a != j.end() && a->is_object())
    for (const auto& [k, v] : a->items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  return d;
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
  CFS_ASSIGN(auto j, parse_object(bytes, what));
  std::vector<Descriptor> out;
  auto list = [&](const char* member) -> Status {
    auto it = j.find(member);
    if (it == j.end()) return {};
    if (!it->is_array())
      return fail(Errc::kInvalidInput, what + ": '" + member + "' is not an array");
    for (const auto& e : *it) {
      CFS_ASSIGN(auto d, descriptor(e, what + ": " + member));
      out.push_back(std::move(d));
    }
    return {};
  };
  if (is_index_type(media_type) || (media_type.empty() && j.contains("manifests"))) {
    CFS_TRY(list("manifests"));
    return out;
  }
  if (auto c = j.find("config"); c != j.end()) {
    CFS_ASSIGN(auto d, descriptor(*c, what + ": config"));
    out.push_back(std::move(d));
  }
  CFS_TRY(list("layers"));
  return out;
}

Result<std::optional<std::pair<oci::ContentDigest, Descriptor>>> referrer_of(
    std::string_view bytes, std::string_view media_type, const oci::ContentDigest& digest) {
  CFS_ASSIGN(auto j, parse_object(bytes, "manifest " + digest.str()));
  auto subject = j.find("subject");
  if (subject == j.end()) return std::nullopt;
  CFS_ASSIGN(auto s, descriptor(*subject, "manifest " + digest.str() + ": subject"));
  Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = digest;
  d.size = bytes.size();
  d.artifact_type = string_member(j, "artifactType");
  if (d.artifact_type.empty())
    if (auto c = j.find("config"); c != j.end() && c->is_object())
      d.artifact_type = string_member(*c, "mediaType");
  if (auto a = j.find("annotations"); a != j.end() && a->is_object())
    for (const auto& [k, v] : a->items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  return std::make_optional(std::make_pair(s.digest, std::move(d)));
}

Result<std::optional<std::string>> add_to_index(std::string_view index, const Descriptor& d) {
  json j;
  if (index.empty()) {
    j = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
  } else {
    CFS_ASSIGN(j, parse_object(index, "referrers fallback index"));
    if (!j.contains("manifests") || !j["manifests"].is_array()) j["manifests"] = json::array();
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
