// SPDX-License-Identifier: Apache-2.0
// Fuzzes the OCI metadata a registry or an archive hands over: the first input byte picks the
// parser, the rest is the document.
//   0 image manifest   1 index (and the platform and layout-tag choices)   2 image config
//   3 manifest_kind, then the parser it picks   4 composefs seal manifest
//   5 docker archive manifest.json   6 "os/arch[/variant]" and "alg:hex" texts
//   7, 8 a docker / OCI archive built from the rest (below), resolved to one image
//   9, 10 the rest as the tar of a docker / OCI archive, resolved to one image
// Built archives: "TAG\n--- NAME\nCONTENT\n--- NAME\nCONTENT...": each "--- " section is a
// member (NAME "a -> b" a symlink, "a => b" a hardlink); in a section, "%N" becomes the
// sha256 hex and "#N" the size of member N's content (N = 1..9; in a CONTENT a later member,
// in a NAME any), so index, manifest, config and blob names can name each other by digest. Any
// crash, sanitizer report or broken invariant is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/digest.h"
#include "cfs/oci/image.h"
#include "cfs/oci/source.h"
#include "cfs/ocirepo/seal.h"
#include "fuzz_target.h"
#include "oci/layout_json.h"
#include "testutil/ustar.h"

namespace {

using namespace cfs;
using namespace cfs::oci;

void check_digest(const ContentDigest& d) {
  auto again = ContentDigest::parse(d.str());
  FUZZ_CHECK(again && *again == d, "a parsed digest does not parse to itself");
  FUZZ_CHECK((d.algorithm == "sha256" && d.hex.size() == 64) ||
                 (d.algorithm == "sha512" && d.hex.size() == 128),
             "a parsed digest has an unexpected algorithm or length");
  for (char c : d.hex)
    FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), "digest hex is not lowercase");
}

/// Errors name the document (every parser gets `what` = "DOC").
template <typename T>
bool named(const Result<T>& r, std::string_view what = "DOC") {
  if (!r) {
    if (fuzz_verbose()) std::fprintf(stderr, "%s\n", r.error().message().c_str());
    FUZZ_CHECK(r.error().context().find(what) != std::string::npos,
               "an error that does not name the document");
  }
  return r.has_value();
}

void check_descriptor(const Descriptor& d) {
  check_digest(d.digest);
  if (d.platform) {
    // What select_platform() matches: an entry serves its own platform.
    FUZZ_CHECK(d.platform->serves(*d.platform), "a platform does not serve itself");
  }
}

void manifest(const std::string& raw) {
  auto m = parse_manifest(raw, "DOC");
  if (!named(m)) return;
  FUZZ_CHECK(m->raw == raw && m->digest == sha256_of(raw), "manifest raw bytes or digest");
  check_descriptor(m->config);
  for (const auto& l : m->layers) check_descriptor(l);
  if (m->subject) check_descriptor(*m->subject);
  auto kind = manifest_kind(raw, kOciManifest);
  FUZZ_CHECK(kind && *kind == ManifestKind::kManifest,
             "a parsed manifest is not a manifest by manifest_kind");
}

void index(const std::string& raw) {
  auto x = parse_index(raw, "DOC");
  if (!named(x)) return;
  FUZZ_CHECK(x->raw == raw && x->digest == sha256_of(raw), "index raw bytes or digest");
  auto kind = manifest_kind(raw, kOciIndex);
  FUZZ_CHECK(kind && *kind == ManifestKind::kIndex, "a parsed index is not an index");
  for (const auto& d : x->manifests) check_descriptor(d);
  std::vector<Platform> wants = {
      Platform::current(), {"linux", "arm64", "v8"}, {"linux", "arm", ""}};
  for (const auto& d : x->manifests)
    if (d.platform) wants.push_back(*d.platform);
  for (const auto& want : wants) {
    auto s = select_platform(*x, want, "DOC");
    named(s);
    bool has = false;
    for (const auto& d : x->manifests) has = has || (d.platform && d.platform->serves(want));
    FUZZ_CHECK(s.has_value() == has, "select_platform misses an entry that serves");
    if (!s) continue;
    bool member = false;
    for (const auto& d : x->manifests) member = member || (d.digest == s->digest && d.platform);
    FUZZ_CHECK(member && s->platform && s->platform->serves(want),
               "the selected entry is not one of the index's for that platform");
  }
  // An OCI layout's choice of entry: by tag, or the only one, or none (one per platform).
  std::string tag;
  for (const auto& d : x->manifests)
    if (auto it = d.annotations.find(std::string(kRefNameAnnotation)); it != d.annotations.end())
      tag = it->second;
  for (std::string_view t : {std::string_view(), std::string_view(tag)}) {
    auto e = layout_entry(*x, t, "DOC");
    if (!named(e)) continue;
    if (!*e) {
      FUZZ_CHECK(t.empty() && x->manifests.size() > 1, "layout_entry chose no entry");
      continue;
    }
    bool member = false;
    for (const auto& d : x->manifests) member = member || d.digest == (*e)->digest;
    FUZZ_CHECK(member, "layout_entry chose an entry the index does not have");
    if (!t.empty())
      FUZZ_CHECK((*e)->annotations.at(std::string(kRefNameAnnotation)) == t,
                 "layout_entry chose an entry of another tag");
  }
}

void config(const std::string& raw) {
  auto c = parse_config(raw, "DOC");
  if (!named(c)) return;
  FUZZ_CHECK(c->raw == raw && c->digest == sha256_of(raw), "config raw bytes or digest");
  for (const auto& d : c->diff_ids) check_digest(d);
}

void kind(std::uint8_t sel, const std::string& raw) {
  static constexpr std::string_view kHints[] = {
      "", kOciManifest, kOciIndex, kDockerManifest, kDockerManifestList, "text/plain"};
  auto k = manifest_kind(raw, kHints[sel % std::size(kHints)]);
  if (!named(k, "manifest")) return;
  if (*k == ManifestKind::kManifest)
    manifest(raw);
  else
    index(raw);
}

const ContentDigest& seal_subject() {
  static const ContentDigest d = ContentDigest::parse("sha256:" + std::string(64, 'a')).value();
  return d;
}

void seal(std::uint8_t sel, const std::string& raw) {
  auto alg = sel & 1 ? verity::HashAlg::kSha512 : verity::HashAlg::kSha256;
  auto s = ocirepo::parse_seal(raw, seal_subject(), alg, "DOC");
  if (!named(s) || !*s) return;
  const auto& m = (*s)->manifest;
  FUZZ_CHECK(m.artifact_type == ocirepo::kSealArtifactType, "a seal of another artifact type");
  FUZZ_CHECK(m.subject && m.subject->digest == seal_subject(), "a seal of another subject");
  FUZZ_CHECK((*s)->image.alg == alg, "a seal digest of another algorithm");
  if ((*s)->signature)
    FUZZ_CHECK((*s)->signature->size <= ocirepo::kMaxSealSignatureSize &&
                   (*s)->signature->media_type == ocirepo::kSealSignatureType,
               "a seal signature layer too large or of another type");
}

void docker_manifest_json(const std::string& raw) {
  auto all = detail::docker_archive_image(raw, "", "DOC");
  named(all);
  // The first RepoTags entry, when there is one, must pick an image.
  std::string first;
  if (auto at = raw.find("\"RepoTags\""); at != std::string::npos) {
    auto q = raw.find('"', raw.find('[', at) + 1);
    auto e = q == std::string::npos ? q : raw.find('"', q + 1);
    if (e != std::string::npos) first = raw.substr(q + 1, e - q - 1);
  }
  auto tagged = detail::docker_archive_image(raw, first, "DOC");
  named(tagged);
  if (all && tagged && !first.empty())
    FUZZ_CHECK(all->config == tagged->config && all->layers == tagged->layers,
               "a one-image archive picks another image by its tag");
}

void texts(const std::string& raw) {
  if (auto p = Platform::parse(raw)) {
    auto again = Platform::parse(p->str());
    FUZZ_CHECK(again && again->os == p->os && again->architecture == p->architecture &&
                   again->variant == p->variant && p->str() == raw,
               "platform text round trip");
  }
  if (auto d = ContentDigest::parse(raw)) {
    check_digest(*d);
    FUZZ_CHECK(d->str() == raw, "digest text round trip");
  }
}

// ---- archives ----

struct Member {
  std::string name, content;
};

/// Tokens of members from `first` on replaced.
std::string substitute(std::string s, const std::vector<Member>& members, std::size_t first) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if ((c == '%' || c == '#') && i + 1 < s.size() && s[i + 1] >= '1' && s[i + 1] <= '9') {
      std::size_t n = static_cast<std::size_t>(s[i + 1] - '1');
      if (n >= first && n < members.size()) {
        const std::string& body = members[n].content;
        out += c == '%' ? sha256_of(body).hex : std::to_string(body.size());
        ++i;
        continue;
      }
    }
    out += c;
  }
  return out;
}

/// "TAG\n--- NAME\nCONTENT..." as a ustar archive; the tag goes to `tag`.
std::string build_archive(std::string_view rest, std::string& tag) {
  std::vector<std::string_view> pieces;
  for (std::size_t pos = 0;;) {
    std::size_t at = rest.find("\n--- ", pos);
    pieces.push_back(rest.substr(pos, at == std::string_view::npos ? at : at - pos));
    if (at == std::string_view::npos) break;
    pos = at + 5;
  }
  tag = std::string(pieces[0]);
  std::vector<Member> members;
  for (std::size_t i = 1; i < pieces.size() && members.size() < 16; ++i) {
    std::size_t nl = pieces[i].find('\n');
    Member m{std::string(pieces[i].substr(0, nl)),
             nl == std::string_view::npos ? "" : std::string(pieces[i].substr(nl + 1))};
    members.push_back(std::move(m));
  }
  for (std::size_t i = members.size(); i-- > 0;)
    members[i].content = substitute(members[i].content, members, i + 1);
  // A layout names a blob by its own digest, a link names another member: names use any.
  for (auto& m : members) m.name = substitute(m.name, members, 0);
  std::string tar;
  for (const auto& m : members) {
    char type = '0';
    std::string name = m.name, link;
    for (auto [arrow, t] : {std::pair{" -> ", '2'}, std::pair{" => ", '1'}}) {
      if (auto a = name.find(arrow); a != std::string::npos) {
        link = name.substr(a + 4);
        name.resize(a);
        type = t;
        break;
      }
    }
    std::size_t size = type == '0' ? m.content.size() : 0;
    tar += testutil::ustar_header(name, size, type, 0644, 0, 0, link);
    if (type == '0') tar += testutil::ustar_padded(m.content);
  }
  tar += std::string(1024, '\0');
  return tar;
}

void resolve(bool docker, const std::string& tar, const std::string& tag) {
  UniqueFd fd(::memfd_create("archive", MFD_CLOEXEC));
  FUZZ_CHECK(fd && ::write(fd.get(), tar.data(), tar.size()) == static_cast<ssize_t>(tar.size()),
             "memfd");
  std::string ref = std::string(docker ? "docker-archive:" : "oci-archive:") + "/proc/self/fd/" +
                    std::to_string(fd.get());
  if (!tag.empty()) ref += ":" + tag;
  const std::string path = "/proc/self/fd/" + std::to_string(fd.get());
  auto src = open_source(ref);
  if (!named(src, path)) return;
  if (docker) {
    // The schema 2 manifest made up from manifest.json must be one the parser takes.
    if (auto top = (*src)->top()) {
      FUZZ_CHECK(!top->second, "a docker archive's manifest has a descriptor");
      auto m = parse_manifest(top->first.bytes, "made-up");
      FUZZ_CHECK(m.has_value(), "the manifest made up from manifest.json does not parse");
    }
  }
  auto img = resolve_image(**src, Platform{"linux", "amd64", ""});
  if (!named(img, path)) return;
  FUZZ_CHECK(img->layers.size() == img->manifest.layers.size(), "one layer ref per layer");
  if (img->manifest.is_image())
    FUZZ_CHECK(img->config.diff_ids.size() == img->layers.size(), "one diff_id per layer");
  for (const auto& l : img->layers) {
    check_digest(l.diff_id);
    auto b = (*src)->blob(l.blob.digest);
    if (!named(b, path)) continue;
    auto all = read_all(**b, 1u << 20, "layer");
    (void)all;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0] % 11, sel = data[1];
  std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (mode) {
    case 0:
      manifest(rest);
      break;
    case 1:
      index(rest);
      break;
    case 2:
      config(rest);
      break;
    case 3:
      kind(sel, rest.substr(1));
      break;
    case 4:
      seal(sel, rest.substr(1));
      break;
    case 5:
      docker_manifest_json(rest);
      break;
    case 6:
      texts(rest);
      break;
    case 7:
    case 8: {
      std::string tag;
      std::string tar = build_archive(rest, tag);
      resolve(mode == 7, tar, tag);
      break;
    }
    default:
      resolve(mode == 9, rest, "");
      break;
  }
  return 0;
}
