// SPDX-License-Identifier: Apache-2.0
// `cfs oci mount --lazy [registry options] SOURCE MOUNTPOINT` (docs/lazy.md): serves an image
// through the verified FUSE mount before its objects are in the repository, fetching each file's
// object from the registry the first time it is opened (registry/lazy.h). Built only with both the
// registry client and FUSE (CFS_WITH_LAZY).
//
// SOURCE docker://...: the manifest, the merged image and the object index are fetched (the
// composefs artifact `cfs oci push` attaches), the image is registered in the repository
// (images/<hex>, images/refs/lazy/<encoded source>) with the index and the source beside it
// (repo/lazy.h), so it is there next time. SOURCE NAME: an image registered that way before. The
// mount holds a lease like every repository mount (gc keeps its objects).
#include <fcntl.h>
#include <fmt/core.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "cfs/fuse/mount.h"
#include "cfs/mount/options.h"
#include "cfs/ocirepo/images.h"
#include "cfs/ocirepo/names.h"
#include "cfs/ocirepo/object_index.h"
#include "cfs/registry/lazy.h"
#include "cfs/registry/lazy_metadata.h"
#include "cfs/registry/pull.h"
#include "cfs/repo/lazy.h"
#include "cfs/repo/lease.h"
#include "cfs/util/json.h"
#include "cfs/util/sys.h"
#include "tools/command.h"
#include "tools/oci_registry.h"
#include "tools/progress.h"
#include "tools/registry_options.h"
#include "tools/repo_common.h"

namespace cfs::tools {
namespace {

constexpr std::string_view kIndexPart = "index";

/// The image ref a lazy registration of SOURCE gets: one component below images/refs/lazy/.
std::string lazy_ref(std::string_view source) { return "lazy/" + ocirepo::encode_tag(source); }

/// The "source" part: the registry repository and the manifest the image came from.
std::string source_json(const registry::Reference& ref, const oci::ContentDigest& manifest) {
  nlohmann::json j;
  j["reference"] = ref.with_digest(manifest.str()).str();
  j["manifest"] = manifest.str();
  return j.dump() + "\n";
}

Result<registry::Reference> source_from_json(const std::string& text, const std::string& what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("reference") || !j["reference"].is_string())
    return fail(Errc::kCorruptImage, what + ": no \"reference\"");
  return registry::parse_reference(j["reference"].get<std::string>());
}

/// Fetches the lazy metadata of a registry image and registers it: parts first (source last), then
/// the image and its ref, so a crash leaves at worst unused parts. nullopt: the image has no lazy
/// metadata.
Result<std::optional<std::pair<verity::Digest, ocirepo::ObjectIndex>>> register_from_registry(
    repo::Repository& repo, registry::Client& client, const registry::Reference& ref,
    const std::string& source, const registry::LazyFetchOptions& fetch) {
  CFS_ASSIGN(auto found, registry::find_lazy_metadata(client, source, fetch));
  if (std::holds_alternative<registry::NoLazyMetadata>(found)) return std::nullopt;
  auto& meta = std::get<registry::LazyMetadata>(found);
  if (meta.index.algorithm != repo.algorithm())
    return fail(Errc::kUnsupportedFeature,
                fmt::format("{}: its objects are {} digests, the repository's {}", source,
                            verity::hash_alg_name(meta.index.algorithm),
                            verity::hash_alg_name(repo.algorithm())));
  CFS_ASSIGN(repo::NewObject obj, repo.create_object());
  CFS_TRY(sys::write_all(obj.fd(), std::as_bytes(std::span(meta.erofs))));
  CFS_ASSIGN(verity::Digest image, repo.commit_object(std::move(obj)));
  if (!(image == meta.index.image))
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the merged image has fs-verity digest {}, its index says {}",
                            source, image.hex(), meta.index.image.hex()));
  CFS_TRY(repo::write_lazy_part(repo, image, kIndexPart, ocirepo::encode_object_index(meta.index)));
  CFS_TRY(repo::write_lazy_part(repo, image, repo::kLazySourcePart,
                                source_json(ref, meta.manifest.digest)));
  CFS_TRY(repo.publish_image(image, lazy_ref(source)));
  return std::make_optional(std::pair{image, std::move(meta.index)});
}

/// An image registered by an earlier lazy mount: NAME as given to it, a ref, or a digest.
Result<verity::Digest> resolve_local(const repo::Repository& repo, const std::string& name) {
  if (auto d = repo.resolve_image(lazy_ref(name))) return d;
  if (auto d = repo.resolve_image(name)) return d;
  auto img = ocirepo::open_image(repo, name);
  if (img && img->image) return *img->image;
  return fail(Errc::kObjectMissing, fmt::format("no image '{}' in {}", name, repo.path()));
}

/// The registry could not be reached (not: it answered something wrong).
bool unreachable(const Error& e) {
  for (int err : {ECONNREFUSED, ETIMEDOUT, ECONNRESET, EHOSTUNREACH, ENETUNREACH})
    if (e.is_errno(err)) return true;
  return false;
}

Result<std::vector<std::string>> read_lines(const std::string& path) {
  CFS_ASSIGN(std::string text, sys::read_file(path));
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line[0] != '#') out.push_back(std::move(line));
  }
  return out;
}

}  // namespace

int run_oci_lazy_mount(int argc, char** argv) {
  CLI::App app{
      "Mount an image before it has downloaded: the tree at once, each file's object fetched from "
      "the registry when it is first opened (only its byte range), verified whole against the "
      "image's fs-verity digest and stored in the repository, then served verified as by `cfs "
      "mount --fuse`.",
      "cfs oci mount --lazy"};
  std::string repo_path, source, dir, prefetch_file;
  std::vector<std::string> option_strings;
  double timeout = 30;
  unsigned fetchers = 4;
  bool lazy = true, no_fill = false, no_full_pull = false, foreground = false, json = false,
       verbose = false;
  RegistryOptions reg;
  add_repo_option(app, repo_path);
  app.add_flag("--lazy", lazy, "fetch objects on demand (this command)");
  reg.add(app, /*with_json=*/false);
  app.add_option(
         "SOURCE", source,
         "docker://HOST[:PORT]/NAME[:TAG|@DIGEST], or an image an earlier lazy mount registered")
      ->required();
  app.add_option("MOUNTPOINT", dir, "directory to mount on")->required();
  app.add_option("--timeout", timeout,
                 "seconds an open waits for its object before failing with EIO (default 30)");
  app.add_option("--prefetch", prefetch_file,
                 "a file listing image paths, one per line: fetched first, in that order");
  app.add_flag("--no-full-pull", no_full_pull,
               "an image without lazy metadata is an error instead of being pulled whole and "
               "mounted");
  app.add_flag("--no-fill", no_fill,
               "do not fetch the rest of the image in the background (only what is opened)");
  app.add_option("--fetchers", fetchers, "objects fetched at once (default 4)");
  registry::LazyFetchOptions fetch;
  std::string seal_cert;
  auto* require_seal =
      app.add_option("--require-seal", seal_cert,
                     "docker:// only: a composefs seal must name the merged image; with CERT "
                     "(PEM), signed by its key (a sealed image always needs a matching seal)")
          ->expected(0, 1);
  app.add_option("-o,--options", option_strings,
                 "further mount options (ro, nosuid, threads=N, upperdir=, workdir=, ...)");
  app.add_flag("-f,--foreground", foreground, "serve in the foreground");
  app.add_flag("--json", json, "print what was mounted as JSON");
  app.add_flag("-v,--verbose", verbose, "print what was mounted");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  // CLI11 gives an optional value the next word: `--require-seal docker://…` would take the
  // image for the certificate.
  if (seal_cert.starts_with("docker://")) {
    fmt::print(stderr, "cfs: error: --require-seal takes a certificate as --require-seal=CERT\n");
    return kExitUsage;
  }
  if (!(timeout > 0)) {
    fmt::print(stderr, "cfs: error: --timeout must be positive\n");
    return kExitUsage;
  }
  mount::Options mo;
  for (const auto& s : option_strings) {
    if (auto r = mount::parse_options(s, mo, mount::Dialect::kFuse); !r) {
      fmt::print(stderr, "cfs: error: {}\n", r.error().message());
      return kExitUsage;
    }
  }
  if (!mo.basedirs.empty() || mo.digest || mo.verity || mo.try_verity || !mo.source.empty()) {
    fmt::print(
        stderr,
        "cfs: error: basedir=, source=, digest= and verity options are set by the repository\n");
    return kExitUsage;
  }
  auto copts = reg.options();
  if (!copts) return report(copts.error());
  std::vector<std::string> prefetch_paths;
  if (!prefetch_file.empty()) {
    auto lines = read_lines(prefetch_file);
    if (!lines) return report(lines.error());
    prefetch_paths = std::move(*lines);
  }

  repo::OpenOptions w;
  w.write = true;
  auto repo = open_repo(repo_path, w);
  if (!repo) return report(repo.error());
  Progress progress(Progress::Mode::kNone);
  auto client = make_client(reg, progress);
  if (!client) return report(client.error());

  // The image and where its objects come from.
  verity::Digest image;
  ocirepo::ObjectIndex index;
  registry::Reference from;
  bool offline = false;
  bool pulled_whole = false;
  if (source.starts_with("docker://")) {
    auto ref = registry::parse_reference(source);
    if (!ref) return report(ref.error());
    fetch.require_seal = require_seal->count() > 0;
    if (!seal_cert.empty()) fetch.cert_file = seal_cert;
    auto got = register_from_registry(*repo, *client, *ref, source, fetch);
    if (got && *got) {
      image = (*got)->first;
      index = std::move((*got)->second);
      from = *ref;
    } else if (got && no_full_pull) {
      return report(Error(Errc::kObjectMissing,
                          fmt::format("{}: the image has no lazy metadata (push it with `cfs oci "
                                      "push`); use `cfs oci pull`",
                                      source)));
    } else if (got) {
      // Pushed by another tool: nothing says where a file's bytes are, so the image is pulled
      // whole (as `cfs oci pull` would, seal check included) and mounted from the repository.
      fmt::print(stderr,
                 "cfs: {}: no lazy metadata (pushed without `cfs oci push`); pulling the whole "
                 "image, then mounting it (--no-full-pull refuses instead)\n",
                 source);
      registry::RegistryPullOptions po;
      if (fetch.require_seal) {
        po.verify_seal.emplace();
        if (fetch.cert_file) po.verify_seal->cert = *fetch.cert_file;
      }
      auto pulled = registry::pull_image(*repo, *client, source, po);
      if (!pulled) return report(pulled.error());
      image = pulled->result.image;
      pulled_whole = true;
    } else if (unreachable(got.error()) && !fetch.require_seal && !fetch.cert_file &&
               repo->resolve_image(lazy_ref(source))) {
      // Unreachable registry: what an earlier lazy mount of this source registered is served (what
      // was fetched works, the rest fails after the timeout until the registry is back).
      fmt::print(stderr, "cfs: warning: {}; mounting the image registered for {} before\n",
                 got.error().message(), source);
      offline = true;
    } else {
      return report(got.error());
    }
  }
  if (!pulled_whole && (!source.starts_with("docker://") || offline)) {
    auto d = resolve_local(*repo, source);
    if (!d) return report(d.error());
    image = *d;
    auto src = repo::read_lazy_part(*repo, image, repo::kLazySourcePart);
    auto idx = repo::read_lazy_part(*repo, image, kIndexPart);
    if (!src) return report(src.error());
    if (!idx) return report(idx.error());
    if (!*src || !*idx)
      return report(Error(Errc::kObjectMissing,
                          fmt::format("{}: no lazy metadata in the repository (not registered by "
                                      "`cfs oci mount --lazy docker://…`); use cfs oci pull",
                                      source)));
    auto ref = source_from_json(**src, "lazy source of " + image.hex());
    if (!ref) return report(ref.error());
    auto parsed = ocirepo::parse_object_index(**idx, "lazy index of " + image.hex());
    if (!parsed) return report(parsed.error());
    from = *ref;
    index = std::move(*parsed);
  }

  auto plan = repo::prepare_mount(*repo, image.hex(), repo::MountKind::kFuse, dir, true);
  if (!plan) return report(plan.error());

  // Background fetches log to stderr in the foreground, to syslog once daemonized.
  auto daemonized = std::make_shared<std::atomic<bool>>(false);
  registry::LazyOptions lo;
  lo.repo_path = repo->path();
  lo.source = from;
  lo.timeout_s = timeout;
  const std::size_t object_count = index.objects.size();
  lo.index = std::move(index);
  lo.fill = !no_fill;
  lo.fetchers = fetchers;
  lo.log = [daemonized](const std::string& line) {
    if (*daemonized)
      ::syslog(LOG_NOTICE, "%s", line.c_str());
    else
      fmt::print(stderr, "cfs: {}\n", line);
  };
  std::shared_ptr<registry::LazyProvider> provider;
  if (!pulled_whole && !prefetch_paths.empty()) {
    auto img = erofs::Image::open(plan->image_path);
    if (!img) return report(img.error());
    auto objs = registry::objects_of_paths(*img, prefetch_paths);
    if (!objs) return report(objs.error());
    lo.prefetch = std::move(*objs);
  }
  if (!pulled_whole) {
    auto p = registry::LazyProvider::create(std::move(*client), std::move(lo));
    if (!p) return report(p.error());
    provider = std::move(*p);
  }

  mo.basedirs = {plan->objects_dir};
  mo.verity = mount::VerityMode::kRequire;
  mo.verity_spelling = "verity=require";
  if (plan->require_verity) mo.digest = plan->image;
  fuse::ServeOptions serve;
  serve.foreground = foreground;
  // The serving process (after it daemonized) completes the lease, closes the repository (its lock)
  // and reports on a copy of stdout, since the daemon's own stdout is /dev/null.
  int out = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  serve.on_serving = [&](bool is_daemon) {
    *daemonized = is_daemon;
    (void)repo::complete_lease(*repo, plan->lease);
    repo::Repository closed = std::move(*repo);
    std::string text;
    if (json)
      text = fmt::format(
          "{{\"source\": {}, \"image\": \"{}\", \"target\": {}, \"mount\": \"fuse\", \"lazy\": "
          "{}, \"objects\": {}, \"lease\": {}}}\n",
          json::string(source), image.hex(), json::string(dir), !pulled_whole, object_count,
          json::string(plan->lease.id));
    else if (verbose && pulled_whole)
      text = fmt::format("mounted {} ({}) on {}: FUSE mount of the image pulled whole\n", source,
                         image.hex(), dir);
    else if (verbose)
      text = fmt::format("mounted {} ({}) on {}: lazy FUSE mount, {} objects fetched on demand\n",
                         source, image.hex(), dir, object_count);
    if (out >= 0) {
      if (!text.empty()) (void)sys::write_all(out, std::as_bytes(std::span(text)));
      ::close(out);
      out = -1;
    }
  };
  auto st = provider ? fuse::mount_image(plan->image_path, dir, mo, serve, std::move(provider))
                     : fuse::mount_image(plan->image_path, dir, mo, serve);
  if (out >= 0) ::close(out);
  if (!st) {
    if (repo->fd() >= 0) (void)repo::drop_lease(*repo, plan->lease);
    return report(st.error());
  }
  return kExitOk;
}

}  // namespace cfs::tools
