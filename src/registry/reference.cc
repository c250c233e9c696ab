// SPDX-License-Identifier: Apache-2.0
// docker:// references (the grammar of distribution's reference package, written from the
// distribution spec's rules) and content digests.
#include "cfs/registry/reference.h"

#include <algorithm>
#include <cctype>

namespace cfs::registry {
namespace {

constexpr std::string_view kDockerHub = "docker.io";
constexpr std::size_t kMaxNameLength = 255;  // distribution: repository names up to 255

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_word(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '_'; }

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | "__" | "-"+
bool valid_component(std::string_view c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  for (std::size_t i = 0; i < c.size();) {
    if (is_lower_alnum(c[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < c.size() && !is_lower_alnum(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" ||
              std::all_of(sep.begin(), sep.end(), [](char x) { return x == '-'; });
    if (!ok) return false;
    i = j;
  }
  return true;
}

// tag := [\w][\w.-]{0,127}
bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128 || !is_word(t.front())) return false;
  return std::all_of(t.begin(), t.end(), [](char c) { return is_word(c) || c == '.' || c == '-'; });
}

// host := domain-component ('.' domain-component)* | '[' ipv6 ']', then optional ':' port
bool valid_host(std::string_view h) {
  if (h.empty()) return false;  // "https://" names no host (registry_parse_fuzzer)
  std::string_view host = h;
  std::string_view port;
  if (h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : h.substr(1, close - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    host = {};
    if (close + 1 < h.size()) {
      if (h[close + 1] != ':') return false;
      port = h.substr(close + 2);
      if (port.empty()) return false;
    }
  } else if (auto colon = h.rfind(':'); colon != std::string_view::npos) {
    host = h.substr(0, colon);
    port = h.substr(colon + 1);
    if (port.empty()) return false;
  }
  if (!port.empty() && (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
                          return c >= '0' && c <= '9';
                        })))
    return false;
  if (h.front() == '[') return true;
  if (host.empty()) return false;
  std::size_t start = 0;
  while (start <= host.size()) {
    auto dot = host.find('.', start);
    std::string_view label =
        host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

tl::unexpected<Error> bad_ref(std::string_view text, const std::string& why) {
  return fail(Errc::kInvalidInput, "image reference '" + std::string(text) + "': " + why);
}

}  // namespace

std::string referrers_tag(const oci::ContentDigest& d) { return d.algorithm + "-" + d.hex; }

std::string Reference::api_host() const {
  return registry == kDockerHub ? "registry-1.docker.io" : registry;
}

std::string Reference::str() const {
  std::string s = "docker://" + registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

Reference Reference::with_digest(const std::string& d) const {
  Reference r = *this;
  r.tag.clear();
  r.digest = d;
  return r;
}

Reference Reference::with_tag(const std::string& t) const {
  Reference r = *this;
  r.tag = t;
  r.digest.clear();
  return r;
}

Result<Reference> parse_reference(std::string_view text) {
  std::string_view rest = text;
  if (rest.starts_with("docker://")) rest.remove_prefix(9);
  if (rest.starts_with("//")) return bad_ref(text, "unexpected '//'");
  if (rest.empty()) return bad_ref(text, "empty");
  Reference ref;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    CFS_ASSIGN(auto d, oci::ContentDigest::parse(rest.substr(at + 1)).map_error([&](Error e) {
      return std::move(e).with_context("image reference '" + std::string(text) + "'");
    }));
    ref.digest = d.str();
    rest = rest.substr(0, at);
  }
  // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
  auto slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!valid_tag(ref.tag)) return bad_ref(text, "invalid tag '" + ref.tag + "'");
  }
  std::string_view name = rest;
  auto first_slash = rest.find('/');
  std::string_view first =
      first_slash == std::string_view::npos ? std::string_view() : rest.substr(0, first_slash);
  if (!first.empty() &&
      (first.find_first_of(".:[") != std::string_view::npos || first == "localhost")) {
    if (!valid_host(first))
      return bad_ref(text, "invalid registry host '" + std::string(first) + "'");
    ref.registry = std::string(first);
    name = rest.substr(first_slash + 1);
  } else {
    ref.registry = std::string(kDockerHub);
  }
  if (ref.registry == "index.docker.io" || ref.registry == "registry-1.docker.io")
    ref.registry = std::string(kDockerHub);
  if (name.empty()) return bad_ref(text, "no repository name");
  std::size_t start = 0;
  while (true) {
    auto s = name.find('/', start);
    std::string_view comp = name.substr(start, s == std::string_view::npos ? s : s - start);
    if (!valid_component(comp))
      return bad_ref(text, "invalid repository name component '" + std::string(comp) +
                               "' (lowercase letters, digits and . _ __ - separators)");
    if (s == std::string_view::npos) break;
    start = s + 1;
  }
  ref.repository = std::string(name);
  if (ref.registry == kDockerHub && ref.repository.find('/') == std::string::npos)
    ref.repository = "library/" + ref.repository;
  if (ref.registry.size() + 1 + ref.repository.size() > kMaxNameLength)
    return bad_ref(text, "name longer than 255 characters");
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

Result<std::string> normalize_registry_key(std::string_view text) {
  std::string_view s = text;
  if (s.starts_with("docker://")) s.remove_prefix(9);
  if (s.starts_with("https://")) s.remove_prefix(8);
  if (s.starts_with("http://")) s.remove_prefix(7);
  while (s.ends_with('/')) s.remove_suffix(1);
  auto slash = s.find('/');
  std::string_view host = s.substr(0, slash);
  if (!valid_host(host))
    return fail(Errc::kInvalidInput, "registry '" + std::string(text) + "': invalid host");
  std::string out(host);
  if (out == "index.docker.io" || out == "registry-1.docker.io") out = kDockerHub;
  if (slash != std::string_view::npos) {
    std::string_view path = s.substr(slash + 1);
    if (path == "v1" || path == "v2") return out;  // docker's "https://index.docker.io/v1/"
    if (path.find_first_of(":@") != std::string_view::npos)
      return fail(Errc::kInvalidInput,
                  "registry '" + std::string(text) + "': a namespace key takes no tag or digest");
    // Appended piecewise: `"/" + std::string(path)` trips GCC 12's -O3 -Wrestrict false
    // positive (see repo/names.cc).
    out.append("/").append(path);
  }
  return out;
}

}  // namespace cfs::registry
