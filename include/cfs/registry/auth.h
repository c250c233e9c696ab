// SPDX-License-Identifier: Apache-2.0
// Registry credentials in the files podman, skopeo and docker use (containers-auth.json(5)):
//
//   {"auths": {"HOST[:PORT][/NAMESPACE...]": {"auth": base64("USER:PASSWORD")}}}
//
// Lookup order (the first file with a matching entry wins):
//   1. the explicit file (--authfile), else $REGISTRY_AUTH_FILE, else the primary file
//      ${XDG_RUNTIME_DIR}/containers/auth.json (/run/containers/$UID/auth.json without it);
//   2. ${XDG_CONFIG_HOME:-$HOME/.config}/containers/auth.json (only when 1 was not explicit);
//   3. ${DOCKER_CONFIG:-$HOME/.docker}/config.json;
//   4. $HOME/.dockercfg (the legacy format: the "auths" object is the whole file).
// Within a file the most specific key wins: "host/ns/repo", "host/ns", then "host". Keys written
// as URLs by old docker versions ("https://host/v1/") match their host.
// Credential helpers ("credHelpers", "credsStore") are not run; an entry that only names a
// helper is treated as absent.
//
// login/logout write the primary (or explicit) file as podman does: other entries kept, file
// mode 0600, directory 0700, replaced atomically.
// Thread-safety: functions only; files are read on every call.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"

namespace cfs::registry {

struct Credentials {
  std::string username;
  std::string password;
};

/// Parses "USER:PASSWORD" (the password may contain ':'); Errc::kInvalidInput without ':'.
Result<Credentials> parse_credentials(std::string_view user_colon_password);

/// The file login writes: the explicit path if given, else $REGISTRY_AUTH_FILE, else the
/// primary file (see the header comment).
std::string auth_file_for_writing(const std::optional<std::string>& explicit_path);

/// The files lookup reads, in order (they need not exist).
std::vector<std::string> auth_file_search_path(const std::optional<std::string>& explicit_path);

/// Credentials found for REGISTRY/REPOSITORY, and the file they came from (for messages).
struct FoundCredentials {
  Credentials creds;
  std::string file;
  std::string key;
};

/// Searches `files` in order. A file that does not exist is skipped; one that cannot be read
/// or parsed is an error naming it (as podman does: a broken auth file is not ignored).
Result<std::optional<FoundCredentials>> lookup_credentials(const std::vector<std::string>& files,
                                                           std::string_view registry,
                                                           std::string_view repository);

/// Adds or replaces auths[key] in `file` (created with its directory if missing).
Status store_credentials(const std::string& file, const std::string& key, const Credentials& creds);

/// Removes auths[key]; returns false when there was no such entry.
Result<bool> remove_credentials(const std::string& file, const std::string& key);

/// Removes every entry of "auths" (logout --all); other top-level members are kept.
Status remove_all_credentials(const std::string& file);

/// Base64 of "user:password" as auth.json and HTTP Basic auth spell it.
std::string encode_basic(const Credentials& creds);

}  // namespace cfs::registry
