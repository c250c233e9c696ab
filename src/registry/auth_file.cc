// SPDX-License-Identifier: Apache-2.0
// containers-auth.json(5) files: lookup, login and logout (see cfs/registry/auth.h).
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cfs/registry/auth.h"
#include "cfs/registry/reference.h"
#include "cfs/util/atomic_file.h"
#include "cfs/util/sys.h"
#include "registry/base64.h"

namespace cfs::registry {
namespace {

using nlohmann::json;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string home_dir() { return env("HOME"); }

std::string primary_file() {
  std::string runtime = env("XDG_RUNTIME_DIR");
  if (!runtime.empty()) return runtime + "/containers/auth.json";
  return "/run/containers/" + std::to_string(::getuid()) + "/auth.json";
}

// Reads a file that may be absent (nullopt) or must parse as a JSON object.
Result<std::optional<json>> read_json(const std::string& file) {
  auto text = sys::read_file(file);
  if (!text) {
    if (text.error().is_errno(ENOENT) || text.error().is_errno(ENOTDIR)) return std::nullopt;
    return fail(std::move(text).error());
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return fail(Errc::kInvalidInput, "auth file " + file + ": not a JSON object");
  return j;
}

// "https://host:5000/v1/" -> "host:5000"; keys that do not normalise are left as they are.
std::string normal_key(const std::string& key) {
  auto n = normalize_registry_key(key);
  return n ? *n : key;
}

std::optional<Credentials> decode_entry(const json& entry) {
  if (!entry.is_object()) return std::nullopt;
  auto it = entry.find("auth");
  if (it == entry.end() || !it->is_string()) return std::nullopt;
  auto decoded = base64_decode(it->get<std::string>());
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  return Credentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

Status write_json(const std::string& file, const json& j) {
  auto slash = file.rfind('/');
  if (slash != std::string::npos && slash > 0)
    CFS_TRY(sys::mkdirat_p(AT_FDCWD, file.substr(0, slash), 0700));
  CFS_ASSIGN(auto out, AtomicFile::create(file, 0600));
  std::string text = j.dump(1, '\t') + "\n";
  CFS_TRY(sys::write_all(out.fd(), std::as_bytes(std::span(text.data(), text.size())))
              .map_error([&](Error e) { return std::move(e).with_context("write " + file); }));
  return out.commit();
}

}  // namespace

std::string encode_basic(const Credentials& creds) {
  return base64_encode(creds.username + ":" + creds.password);
}

Result<Credentials> parse_credentials(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return fail(Errc::kInvalidInput, "credentials must be USERNAME:PASSWORD");
  return Credentials{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

std::string auth_file_for_writing(const std::optional<std::string>& explicit_path) {
  if (explicit_path && !explicit_path->empty()) return *explicit_path;
  std::string from_env = env("REGISTRY_AUTH_FILE");
  return from_env.empty() ? primary_file() : from_env;
}

std::vector<std::string> auth_file_search_path(const std::optional<std::string>& explicit_path) {
  std::vector<std::string> files;
  bool user_specified =
      (explicit_path && !explicit_path->empty()) || !env("REGISTRY_AUTH_FILE").empty();
  files.push_back(auth_file_for_writing(explicit_path));
  std::string home = home_dir();
  if (!user_specified) {
    std::string config = env("XDG_CONFIG_HOME");
    if (config.empty() && !home.empty()) config = home + "/.config";
    if (!config.empty()) files.push_back(config + "/containers/auth.json");
  }
  std::string docker = env("DOCKER_CONFIG");
  if (!docker.empty())
    files.push_back(docker + "/config.json");
  else if (!home.empty())
    files.push_back(home + "/.docker/config.json");
  if (!home.empty()) files.push_back(home + "/.dockercfg");
  return files;
}

Result<std::optional<FoundCredentials>> lookup_credentials(const std::vector<std::string>& files,
                                                           std::string_view registry,
                                                           std::string_view repository) {
  // Most specific first: registry/a/b/c, registry/a/b, registry/a, registry.
  std::vector<std::string> candidates;
  std::string path = std::string(registry) + "/" + std::string(repository);
  while (true) {
    candidates.push_back(path);
    auto slash = path.rfind('/');
    if (slash == std::string::npos || slash < registry.size()) break;
    path.resize(slash);
  }
  if (candidates.back() != registry) candidates.emplace_back(registry);
  for (const auto& file : files) {
    CFS_ASSIGN(auto doc, read_json(file));
    if (!doc) continue;
    // ~/.dockercfg is the legacy format: the auths object is the whole file.
    bool legacy = file.ends_with("/.dockercfg");
    const json* auths = &*doc;
    if (!legacy) {
      auto it = doc->find("auths");
      if (it == doc->end() || !it->is_object()) continue;
      auths = &*it;
    }
    for (const auto& want : candidates)
      for (const auto& [key, entry] : auths->items())
        if (normal_key(key) == want)
          if (auto c = decode_entry(entry)) return FoundCredentials{*c, file, key};
  }
  return std::nullopt;
}

Status store_credentials(const std::string& file, const std::string& key,
                         const Credentials& creds) {
  CFS_ASSIGN(auto doc, read_json(file));
  json j = doc ? std::move(*doc) : json::object();
  if (!j.contains("auths") || !j["auths"].is_object()) j["auths"] = json::object();
  j["auths"][key] = json{{"auth", encode_basic(creds)}};
  return write_json(file, j);
}

Result<bool> remove_credentials(const std::string& file, const std::string& key) {
  CFS_ASSIGN(auto doc, read_json(file));
  if (!doc || !doc->contains("auths") || !(*doc)["auths"].is_object()) return false;
  json& auths = (*doc)["auths"];
  bool removed = false;
  for (auto it = auths.begin(); it != auths.end();) {
    if (normal_key(it.key()) == key) {
      it = auths.erase(it);
      removed = true;
    } else {
      ++it;
    }
  }
  if (removed) CFS_TRY(write_json(file, *doc));
  return removed;
}

Status remove_all_credentials(const std::string& file) {
  CFS_ASSIGN(auto doc, read_json(file));
  if (!doc) return {};
  (*doc)["auths"] = json::object();
  return write_json(file, *doc);
}

}  // namespace cfs::registry
