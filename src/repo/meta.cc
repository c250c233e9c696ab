// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/meta.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace cfs::repo {
namespace {

constexpr std::string_view kAlgorithmPrefix = "fsverity-";
constexpr std::string_view kLgBlockSize = "12";

// Features this version understands, per class (composefs-rs has the same lists).
constexpr std::string_view kKnownRoCompat[] = {kFeatureV1Erofs};

bool known(std::span<const std::string_view> list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

Status bad(const std::string& what, const std::string& field, const std::string& why) {
  return fail(Errc::kCorruptImage, what + ": field '" + field + "': " + why);
}

Result<std::vector<std::string>> string_list(const nlohmann::json& obj, const char* key,
                                             const std::string& what) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;  // serde(default)
  if (!it->is_array())
    return fail(bad(what, std::string("features.") + key, "not an array").error());
  for (const auto& v : *it) {
    if (!v.is_string())
      return fail(bad(what, std::string("features.") + key, "not a list of strings").error());
    out.push_back(v.get<std::string>());
  }
  return out;
}

// serde_repr FormatVersion: the integers 0, 1, 2.
Result<std::uint32_t> erofs_version_field(const nlohmann::json& v, const std::string& what,
                                          const std::string& field) {
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() > kMaxErofsVersion)
    return fail(bad(what, field, "not an EROFS format version (0, 1 or 2)").error());
  return static_cast<std::uint32_t>(v.get<std::uint64_t>());
}

}  // namespace

std::string algorithm_name(verity::HashAlg alg) {
  return std::string(kAlgorithmPrefix) + verity::hash_alg_name(alg) + "-" +
         std::string(kLgBlockSize);
}

Result<verity::HashAlg> parse_algorithm(std::string_view name) {
  std::string_view rest = name;
  auto dash = rest.rfind('-');
  if (!rest.starts_with(kAlgorithmPrefix) || dash == std::string_view::npos ||
      dash < kAlgorithmPrefix.size())
    return fail(Errc::kInvalidInput,
                "algorithm '" + std::string(name) + "' is not fsverity-<hash>-<lg_blocksize>");
  std::string_view hash = rest.substr(kAlgorithmPrefix.size(), dash - kAlgorithmPrefix.size());
  std::string_view lg = rest.substr(dash + 1);
  if (lg != kLgBlockSize)
    return fail(Errc::kUnsupportedFeature, "algorithm '" + std::string(name) +
                                               "': only 4096-byte fs-verity blocks (12) are "
                                               "supported");
  auto alg = verity::parse_hash_alg(hash);
  if (!alg)
    return fail(Errc::kUnsupportedFeature,
                "algorithm '" + std::string(name) + "': unknown hash '" + std::string(hash) + "'");
  return *alg;
}

Meta Meta::make(verity::HashAlg algorithm, std::uint32_t erofs_version) {
  Meta m;
  m.algorithm = algorithm;
  m.erofs_formats = ErofsFormats{erofs_version, {}};
  // Tools that predate erofs_formats see this flag and open the repository read-only instead of
  // writing images of another format into it.
  if (erofs_version == 1) m.features.read_only_compatible.emplace_back(kFeatureV1Erofs);
  return m;
}

std::uint32_t Meta::erofs_version() const {
  if (erofs_formats != ErofsFormats{2, {}}) return erofs_formats.default_version;
  const auto& ro = features.read_only_compatible;
  return std::find(ro.begin(), ro.end(), kFeatureV1Erofs) != ro.end() ? 1 : 2;
}

std::string Meta::to_json() const {
  // nlohmann's pretty printer with indent 2 produces serde_json's to_vec_pretty layout for
  // this structure (including "[]" for empty arrays); ordered_json keeps serde's field order.
  nlohmann::ordered_json features_json = {
      {"compatible", features.compatible},
      {"read-only-compatible", features.read_only_compatible},
      {"incompatible", features.incompatible},
  };
  nlohmann::ordered_json formats = {{"default", erofs_formats.default_version}};
  if (!erofs_formats.extra.empty()) formats["extra"] = erofs_formats.extra;
  nlohmann::ordered_json j = {
      {"version", version},
      {"algorithm", algorithm_name(algorithm)},
      {"features", features_json},
      {"erofs_formats", formats},
  };
  return j.dump(2) + "\n";
}

Result<Meta> Meta::parse(std::string_view json, const std::string& what) {
  auto j = nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::kCorruptImage, what + ": not valid JSON");
  if (!j.is_object()) return fail(Errc::kCorruptImage, what + ": not a JSON object");
  Meta m;
  auto version = j.find("version");
  if (version == j.end()) return fail(bad(what, "version", "missing").error());
  if (!version->is_number_unsigned() || version->get<std::uint64_t>() > UINT32_MAX)
    return fail(bad(what, "version", "not an unsigned 32-bit integer").error());
  m.version = static_cast<std::uint32_t>(version->get<std::uint64_t>());

  auto algorithm = j.find("algorithm");
  if (algorithm == j.end()) return fail(bad(what, "algorithm", "missing").error());
  if (!algorithm->is_string()) return fail(bad(what, "algorithm", "not a string").error());
  auto alg = parse_algorithm(algorithm->get<std::string>());
  if (!alg) return fail(std::move(alg).error().with_context(what));
  m.algorithm = *alg;

  if (auto f = j.find("features"); f != j.end()) {
    if (!f->is_object()) return fail(bad(what, "features", "not an object").error());
    CFS_ASSIGN(m.features.compatible, string_list(*f, "compatible", what));
    CFS_ASSIGN(m.features.read_only_compatible, string_list(*f, "read-only-compatible", what));
    CFS_ASSIGN(m.features.incompatible, string_list(*f, "incompatible", what));
  }

  if (auto e = j.find("erofs_formats"); e != j.end()) {
    if (!e->is_object()) return fail(bad(what, "erofs_formats", "not an object").error());
    auto def = e->find("default");
    if (def == e->end()) return fail(bad(what, "erofs_formats.default", "missing").error());
    CFS_ASSIGN(m.erofs_formats.default_version,
               erofs_version_field(*def, what, "erofs_formats.default"));
    m.erofs_formats.extra.clear();
    if (auto x = e->find("extra"); x != e->end()) {
      if (!x->is_array()) return fail(bad(what, "erofs_formats.extra", "not an array").error());
      for (const auto& v : *x) {
        CFS_ASSIGN(auto ver, erofs_version_field(v, what, "erofs_formats.extra"));
        m.erofs_formats.extra.push_back(ver);
      }
      // A set in composefs-rs: sorted, duplicates collapse.
      std::sort(m.erofs_formats.extra.begin(), m.erofs_formats.extra.end());
      m.erofs_formats.extra.erase(
          std::unique(m.erofs_formats.extra.begin(), m.erofs_formats.extra.end()),
          m.erofs_formats.extra.end());
    }
  }
  return m;
}

Result<Access> check(const Meta& meta) {
  if (meta.version > kFormatVersion)
    return fail(Errc::kUnsupportedFeature,
                "repository format version " + std::to_string(meta.version) +
                    " is newer than this cfs understands (" + std::to_string(kFormatVersion) + ")");
  // No incompatible feature is known: any is a reason to refuse.
  if (!meta.features.incompatible.empty()) {
    std::string names;
    for (const auto& f : meta.features.incompatible) names += (names.empty() ? "" : ", ") + f;
    return fail(Errc::kUnsupportedFeature,
                "repository uses incompatible features this cfs does not know: " + names);
  }
  Access a;
  for (const auto& f : meta.features.read_only_compatible)
    if (!known(kKnownRoCompat, f)) a.unknown_ro_compat.push_back(f);
  a.writable = a.unknown_ro_compat.empty();
  return a;
}

}  // namespace cfs::repo
