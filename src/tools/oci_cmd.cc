// SPDX-License-Identifier: Apache-2.0
// `cfs oci SUBCOMMAND`: OCI images in a repository (docs/oci.md).
//   pull SOURCE [NAME]          oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF]
//                               (and docker://... with the registry client, oci_registry.h)
//   images [--json]             tagged images
//   inspect NAME [--manifest|--config]
//   tag IMAGE NAME | untag NAME
//   layer DIFF_ID               the layer tar on stdout, bit-exact
//   import-layer DIFF_ID [NAME] an uncompressed layer tar from stdin
//   dump NAME                   the merged tree as a composefs dump
//   compute-id NAME             the merged image's id, computed from the layers
//   mount NAME MOUNTPOINT       as `cfs mount --repo`, of the image the tag links
//   mount --lazy SOURCE MNT     objects fetched on demand (lazy_mount_cmd.cc)
//   fsck [NAME] [--json]
//   push, seal, verify-seal     with the registry client only (oci_registry_cmd.cc)
// Every subcommand takes --repo PATH. Exit status: 0 ok, 1 failure (fsck: problems), 2 usage.
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/dump/print.h"
#include "cfs/oci/byte_source.h"
#include "cfs/oci/source.h"
#include "cfs/ocirepo/images.h"
#include "cfs/ocirepo/names.h"
#include "cfs/ocirepo/pull.h"
#include "cfs/ocirepo/seal.h"
#include "cfs/repo/streams.h"
#include "cfs/util/json.h"
#include "cfs/util/sys.h"
#include "tools/command.h"
#include "tools/progress.h"
#include "tools/repo_common.h"
#include "tools/repo_mount.h"
#ifdef CFS_WITH_REGISTRY
#include "tools/oci_registry.h"
#endif

namespace cfs::tools {
namespace {

void add_xattr_option(CLI::App& app, bool& keep_user) {
  app.add_flag("--keep-user-xattrs", keep_user,
               "keep user.* xattrs in the merged image (default: only security.capability)");
}

oci::MergeOptions merge_options(bool keep_user) {
  oci::MergeOptions o;
  if (keep_user) o.xattrs = oci::XattrFilter::kKeepUserXattrs;
  return o;
}

int run_pull(int argc, char** argv) {
  CLI::App app{
      "Import an OCI image into the repository: layers as splitstreams, the merged "
      "image, and a tag.",
      "cfs oci pull"};
  std::string repo_path, source, name, platform, progress_mode = "auto";
  bool json = false, keep_user = false, no_tag = false, keep_blobs = false;
  unsigned jobs = 0;
  add_repo_option(app, repo_path);
#ifdef CFS_WITH_REGISTRY
  app.add_option("SOURCE", source,
                 "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF] or "
                 "docker://HOST[:PORT]/NAME[:TAG|@DIGEST]")
      ->required();
  RegistryPull registry;
  registry.add_options(app);
#else
  app.add_option("SOURCE", source,
                 "oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:REF]")
      ->required();
#endif
  app.add_option("NAME", name, "tag to set (default: SOURCE as given)");
  app.add_flag("--no-tag", no_tag, "set no tag (the image is garbage for gc until tagged)");
  app.add_option("--platform", platform, "os/arch[/variant] to choose in an index");
  app.add_option("--jobs", jobs, "layers imported at once (default: CPUs)");
  std::optional<std::uint64_t> min_free;
  app.add_option("--min-free", min_free,
                 "free space to leave on the repository's file system: a layer stops when "
                 "less is available (default: 1 GiB, or a twentieth of the file system when "
                 "that is less; 0: none)")
      ->transform(CLI::AsSizeValue(false));
  add_xattr_option(app, keep_user);
  app.add_flag("--keep-blobs", keep_blobs,
               "also keep the compressed layer blobs as pulled (streams/oci-blob-DIGEST), so "
               "`cfs oci push` sends the image byte for byte");
  app.add_flag("--json", json, "print a JSON report");
  app.add_option("--progress", progress_mode,
                 "auto (a status line when stderr is a terminal), json (one JSON event per "
                 "line on stdout, before the --json report) or none")
      ->check(CLI::IsMember({"auto", "json", "none"}));
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
#ifdef CFS_WITH_REGISTRY
  if (auto st = registry.check_options(); !st) {
    fmt::print(stderr, "cfs: error: {}\n", st.error().message());
    return kExitUsage;
  }
#endif
  ocirepo::PullOptions o;
  if (!platform.empty()) {
    auto p = oci::Platform::parse(platform);
    if (!p) {
      fmt::print(stderr, "cfs: error: --platform: {}\n", p.error().message());
      return kExitUsage;
    }
    o.platform = *p;
  }
  if (no_tag) o.tag = "";
  if (!name.empty()) o.tag = name;
  o.jobs = jobs;
  o.min_free = min_free;
  o.keep_blobs = keep_blobs;
  o.merge = merge_options(keep_user);
  Progress progress(progress_mode == "none"   ? Progress::Mode::kNone
                    : progress_mode == "json" ? Progress::Mode::kJson
                                              : Progress::pick(false));
  o.progress = progress.pull_callback();
  o.trace = trace_from_env("CFS_PULL_TRACE");
  repo::OpenOptions w;
  w.write = true;
  auto r = open_repo(repo_path, w);
  if (!r) return report(r.error());
  Result<ocirepo::PullResult> res = fail(Errc::kInvalidInput, source);
  if (source.starts_with("docker://")) {
#ifdef CFS_WITH_REGISTRY
    res = registry.pull(*r, source, o, progress);
#else
    return report(Error(Errc::kUnsupportedFeature,
                        source + ": this cfs was built without the registry client "
                                 "(CFS_BUILD_REGISTRY=OFF)"));
#endif
  } else {
#ifdef CFS_WITH_REGISTRY
    auto src = oci::open_source(source, "docker://HOST[:PORT]/NAME[:TAG|@DIGEST]");
#else
    auto src = oci::open_source(source);
#endif
    if (!src) return report(src.error());
    res = ocirepo::pull(*r, **src, o);
  }
  progress.finish();
#ifdef CFS_WITH_REGISTRY
  if (!res && registry.interrupted()) return registry.report_interrupted(*r, source);
#endif
  if (!res) return report(res.error());
  if (json) {
    std::string layers;
    for (const auto& l : res->layers)
      layers += fmt::format(
          "{}{{\"diff_id\": \"{}\", \"blob\": \"{}\", \"skipped\": {}, \"compression\": {}, "
          "\"blob_bytes\": {}, \"tar_bytes\": {}, \"objects\": {}, \"stream\": \"{}\", "
          "\"blob_stream\": {}}}",
          layers.empty() ? "" : ", ", l.diff_id.str(), l.blob.str(), l.skipped ? "true" : "false",
          json::string(l.compression), l.blob_bytes, l.tar_bytes, l.objects, l.stream.hex(),
          l.blob_stream ? "\"" + l.blob_stream->hex() + "\"" : "null");
    fmt::print(
        "{{\"manifest\": \"{}\", \"config\": \"{}\", \"tag\": {}, \"image\": \"{}\", "
        "\"manifest_stream\": \"{}\", \"config_stream\": \"{}\", \"layers\": [{}]}}\n",
        res->manifest.str(), res->config.str(), res->tag.empty() ? "null" : json::string(res->tag),
        res->image.hex(), res->manifest_stream.hex(), res->config_stream.hex(), layers);
    return kExitOk;
  }
  fmt::print("manifest {}\nconfig {}\nimage {}\n", res->manifest.str(), res->config.str(),
             res->image.hex());
  if (!res->tag.empty()) fmt::print("tagged {}\n", res->tag);
  return kExitOk;
}

int run_images(int argc, char** argv) {
  CLI::App app{"List the tagged OCI images of the repository.", "cfs oci images"};
  std::string repo_path;
  bool json = false;
  add_repo_option(app, repo_path);
  app.add_flag("--json", json, "print JSON");
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto tags = ocirepo::list_tags(*r);
  if (!tags) return report(tags.error());
  std::string out;
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : *tags) {
    auto img = ocirepo::open_image(*r, t.tag);
    if (json) {
      if (!img) {
        out += fmt::format("{}{{\"name\": {}, \"error\": {}}}", out.empty() ? "" : ", ",
                           json::string(t.tag), json::string(img.error().message()));
        continue;
      }
      out += fmt::format(
          "{}{{\"name\": {}, \"manifest_digest\": \"{}\", \"config_digest\": \"{}\", "
          "\"architecture\": {}, \"os\": {}, \"layer_count\": {}, \"image\": {}}}",
          out.empty() ? "" : ", ", json::string(t.tag), img->manifest.digest.str(),
          img->config.digest.str(), json::string(img->config.platform.architecture),
          json::string(img->config.platform.os), img->layers.size(),
          img->image ? "\"" + img->image->hex() + "\"" : "null");
      continue;
    }
    if (!img) {
      rows.push_back({t.tag, "(broken)", "", "", ""});
      continue;
    }
    rows.push_back({t.tag, img->manifest.digest.hex.substr(0, 12),
                    img->config.platform.architecture, std::to_string(img->layers.size()),
                    img->image ? img->image->hex().substr(0, 12) : "-"});
  }
  if (json) {
    fmt::print("{{\"images\": [{}]}}\n", out);
    return kExitOk;
  }
  std::size_t width = 4;
  for (const auto& row : rows) width = std::max(width, row[0].size());
  fmt::print("{:<{}}  {:<12}  {:<8}  {:<6}  {}\n", "NAME", width, "MANIFEST", "ARCH", "LAYERS",
             "IMAGE");
  for (const auto& row : rows)
    fmt::print("{:<{}}  {:<12}  {:<8}  {:<6}  {}\n", row[0], width, row[1], row[2], row[3], row[4]);
  return kExitOk;
}

int run_inspect(int argc, char** argv) {
  CLI::App app{"Print a stored image: its manifest, config and what the repository holds for it.",
               "cfs oci inspect"};
  std::string repo_path, name;
  bool manifest = false, config = false;
  add_repo_option(app, repo_path);
  app.add_option("NAME", name, "tag or manifest digest (sha256:...)")->required();
  auto* m = app.add_flag("--manifest", manifest, "print the manifest exactly as stored");
  app.add_flag("--config", config, "print the config exactly as stored")->excludes(m);
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto img = ocirepo::open_image(*r, name);
  if (!img) return report(img.error());
  if (manifest || config) {
    const std::string& raw = manifest ? img->manifest.raw : img->config.raw;
    auto st = sys::write_all(STDOUT_FILENO, std::as_bytes(std::span(raw)));
    return st ? kExitOk : report(st.error());
  }
  std::string layers;
  for (const auto& l : img->layers)
    layers += fmt::format("{}{{\"diff_id\": \"{}\", \"stream\": \"{}\"}}",
                          layers.empty() ? "" : ", ", l.diff_id.str(), l.stream.hex());
  fmt::print(
      "{{\"name\": {}, \"manifest_digest\": \"{}\", \"config_digest\": \"{}\", \"image\": {}, "
      "\"layers\": [{}], \"manifest\": {}, \"config\": {}}}\n",
      json::string(name), img->manifest.digest.str(), img->config.digest.str(),
      img->image ? "\"" + img->image->hex() + "\"" : "null", layers, img->manifest.raw,
      img->config.raw);
  return kExitOk;
}

int run_tag(int argc, char** argv) {
  CLI::App app{"Tag a stored image (replacing what the tag pointed at).", "cfs oci tag"};
  std::string repo_path, image, name;
  add_repo_option(app, repo_path);
  app.add_option("IMAGE", image, "manifest digest (sha256:...) or an existing tag")->required();
  app.add_option("NAME", name, "the new tag")->required();
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  repo::OpenOptions w;
  w.write = true;
  auto r = open_repo(repo_path, w);
  if (!r) return report(r.error());
  auto st = ocirepo::tag_image(*r, image, name);
  return st ? kExitOk : report(st.error());
}

int run_untag(int argc, char** argv) {
  CLI::App app{"Remove a tag (the image's objects go at the next gc if nothing else keeps them).",
               "cfs oci untag"};
  std::string repo_path, name;
  add_repo_option(app, repo_path);
  app.add_option("NAME", name, "the tag")->required();
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  repo::OpenOptions w;
  w.write = true;
  auto r = open_repo(repo_path, w);
  if (!r) return report(r.error());
  auto st = ocirepo::untag_image(*r, name);
  return st ? kExitOk : report(st.error());
}

int run_layer(int argc, char** argv) {
  CLI::App app{"Write a stored layer's tar to stdout, byte for byte as it was imported.",
               "cfs oci layer"};
  std::string repo_path, diff_id;
  add_repo_option(app, repo_path);
  app.add_option("DIFF_ID", diff_id, "the layer's diff_id (sha256:...)")->required();
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto d = oci::ContentDigest::parse(diff_id);
  if (!d) return report(d.error());
  if (::isatty(STDOUT_FILENO)) {
    fmt::print(stderr, "cfs: error: stdout is a terminal; redirect it to a file or a pipe\n");
    return kExitUsage;
  }
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto n = repo::cat_stream(*r, ocirepo::layer_stream_name(*d), STDOUT_FILENO);
  return n ? kExitOk : report(n.error());
}

int run_import_layer(int argc, char** argv) {
  CLI::App app{
      "Store one uncompressed (or gzip/zstd) layer tar read from stdin; its sha256 "
      "must be DIFF_ID.",
      "cfs oci import-layer"};
  std::string repo_path, diff_id, name;
  add_repo_option(app, repo_path);
  app.add_option("DIFF_ID", diff_id, "the layer's diff_id (sha256:...)")->required();
  app.add_option("NAME", name, "also name the stream streams/refs/NAME");
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto d = oci::ContentDigest::parse(diff_id);
  if (!d) return report(d.error());
  repo::OpenOptions w;
  w.write = true;
  auto r = open_repo(repo_path, w);
  if (!r) return report(r.error());
  UniqueFd fd(::dup(STDIN_FILENO));
  if (!fd) return report(Error::from_errno("stdin"));
  std::optional<std::string> ref;
  if (!name.empty()) ref = name;
  auto s = ocirepo::import_layer(*r, oci::fd_source(std::move(fd), "stdin"), *d, ref);
  if (!s) return report(s.error());
  fmt::print("{}\n", s->str());
  return kExitOk;
}

int run_dump(int argc, char** argv) {
  CLI::App app{"Print the merged tree of a stored image as a composefs dump.", "cfs oci dump"};
  std::string repo_path, name;
  bool keep_user = false;
  add_repo_option(app, repo_path);
  app.add_option("NAME", name, "tag or manifest digest")->required();
  add_xattr_option(app, keep_user);
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto img = ocirepo::open_image(*r, name);
  if (!img) return report(img.error());
  auto tree = ocirepo::merged_tree(*r, *img, merge_options(keep_user));
  if (!tree) return report(tree.error());
  std::string out;
  Status st;
  dump::print_dump(*tree, out, 1u << 20, [&](std::string& chunk) {
    if (st) st = sys::write_all(STDOUT_FILENO, std::as_bytes(std::span(chunk)));
    chunk.clear();
  });
  if (st && !out.empty()) st = sys::write_all(STDOUT_FILENO, std::as_bytes(std::span(out)));
  return st ? kExitOk : report(st.error());
}

int run_compute_id(int argc, char** argv) {
  CLI::App app{
      "Print the id (hex fs-verity digest, repository algorithm) of a stored image's "
      "merged image, computed from its layers.",
      "cfs oci compute-id"};
  std::string repo_path, name;
  bool keep_user = false;
  add_repo_option(app, repo_path);
  app.add_option("NAME", name, "tag or manifest digest")->required();
  add_xattr_option(app, keep_user);
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  auto img = ocirepo::open_image(*r, name);
  if (!img) return report(img.error());
  auto id = ocirepo::compute_image_id(*r, *img, merge_options(keep_user));
  if (!id) return report(id.error());
  fmt::print("{}\n", id->hex());
  return kExitOk;
}

/// `cfs oci mount [--repo R] [--require-seal[=CERT]] NAME MNT [mount options]`: the image the
/// tag links, mounted by `cfs mount --repo` (same options, lease and verity rules), after the
/// seal check when asked for.
int run_mount(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) != "--lazy") continue;
#ifdef CFS_WITH_LAZY
    return run_oci_lazy_mount(argc, argv);
#else
    fmt::print(stderr,
               "cfs: error: --lazy: this cfs was built without the registry client or FUSE\n");
    return kExitFailure;
#endif
  }
  std::vector<std::string> args;
  std::string repo_path;
  std::optional<std::optional<std::string>> require_seal;  // outer: asked; inner: CERT
  bool help = false;
  int name_at = -1;
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i > 0 && (a == "--require-seal" || a.starts_with("--require-seal="))) {
      require_seal.emplace();
      if (a.size() > 15) *require_seal = std::string(a.substr(15));
      continue;  // not an option of `cfs mount`
    }
    args.emplace_back(a);
    if (i == 0) continue;
    if (a == "-h" || a == "--help") help = true;
    if (help) continue;
    if ((a == "--repo" || a == "-o" || a == "--options" || a == "--upperdir" || a == "--workdir") &&
        i + 1 < argc) {
      if (a == "--repo") repo_path = argv[i + 1];
      args.emplace_back(argv[++i]);
      continue;
    }
    if (a.starts_with("--repo=")) repo_path = std::string(a.substr(7));
    if (!a.starts_with("-") && name_at < 0) name_at = static_cast<int>(args.size()) - 1;
  }
  if (help) {
    fmt::print(
        "cfs oci mount [--require-seal[=CERT]] NAME MOUNTPOINT: NAME is an OCI tag or manifest "
        "digest; the options are those of cfs mount --repo, and\n"
        "  --require-seal[=CERT]  refuse to mount unless a seal recorded by pull --verify-seal "
        "names the merged image (signed by CERT's key with =CERT)\n"
#ifdef CFS_WITH_LAZY
        "cfs oci mount --lazy [OPTIONS] SOURCE MOUNTPOINT: a registry image served before it "
        "has downloaded (cfs oci mount --lazy --help)\n"
#endif
        "\n");
  }
  std::string shown_name;  // for --json and -v: the NAME given, not the digest passed on
  if (!help && name_at > 0) {
    shown_name = args[static_cast<std::size_t>(name_at)];
    std::string hex;
    {
      auto r = open_repo(repo_path, {});
      if (!r) return report(r.error());
      auto img = ocirepo::open_image(*r, args[static_cast<std::size_t>(name_at)]);
      if (!img) return report(img.error());
      if (!img->image)
        return report(
            Error(Errc::kObjectMissing, fmt::format("{}: no merged image linked; pull it again",
                                                    args[static_cast<std::size_t>(name_at)])));
      if (require_seal) {
        auto seal = ocirepo::require_seal(*r, *img, *require_seal);
        if (!seal) return report(seal.error());
      }
      hex = img->image->hex();
    }
    args[static_cast<std::size_t>(name_at)] = hex;
  }
  bool has_repo = false;
  for (const auto& a : args) has_repo = has_repo || a == "--repo" || a.starts_with("--repo=");
  if (!has_repo) {
    args.insert(args.begin() + 1, repo_path_or_default(""));
    args.insert(args.begin() + 1, "--repo");
  }
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  return run_repo_mount(static_cast<int>(args.size()), cargs.data(), shown_name);
}

int run_fsck(int argc, char** argv) {
  CLI::App app{
      "Check stored OCI images: documents against their digests, layers against their "
      "diff_ids, the merged image against the layers.",
      "cfs oci fsck"};
  std::string repo_path, name;
  bool json = false;
  add_repo_option(app, repo_path);
  app.add_option("NAME", name, "check only this tag (default: every tag)");
  app.add_flag("--json", json, "print JSON");
  if (int rc = parse_args(app, argc, argv)) return rc < 0 ? kExitOk : rc;
  auto r = open_repo(repo_path, {});
  if (!r) return report(r.error());
  std::optional<std::string> tag;
  if (!name.empty()) tag = name;
  auto rep = ocirepo::fsck(*r, tag);
  if (!rep) return report(rep.error());
  if (json) {
    std::string errs;
    for (const auto& e : rep->errors) errs += (errs.empty() ? "" : ", ") + json::string(e);
    fmt::print("{{\"ok\": {}, \"images_checked\": {}, \"layers_checked\": {}, \"errors\": [{}]}}\n",
               rep->ok() ? "true" : "false", rep->images, rep->layers, errs);
  } else {
    for (const auto& e : rep->errors) fmt::print("{}\n", e);
    fmt::print("{} images, {} layers: {}\n", rep->images, rep->layers,
               rep->ok() ? "ok" : fmt::format("{} report(s)", rep->errors.size()));
  }
  return rep->ok() ? kExitOk : kExitFailure;
}

const Subcommand kSubs[] = {
#ifdef CFS_WITH_REGISTRY
    {"pull", "import an image (oci:, oci-archive:, docker-archive:, docker://)", run_pull},
#else
    {"pull", "import an image (oci:, oci-archive:, docker-archive:)", run_pull},
#endif
    {"images", "list tagged images", run_images},
    {"inspect", "print a stored image's manifest and config", run_inspect},
    {"tag", "tag a stored image", run_tag},
    {"untag", "remove a tag", run_untag},
    {"layer", "write a layer tar to stdout (bit-exact)", run_layer},
    {"import-layer", "store a layer tar read from stdin", run_import_layer},
    {"dump", "print the merged tree as a composefs dump", run_dump},
    {"compute-id", "print the merged image's id", run_compute_id},
#ifdef CFS_WITH_LAZY
    {"mount",
     "mount an image (kernel or --fuse, verity required when secure; --lazy: from a registry)",
     run_mount},
#else
    {"mount", "mount an image (kernel or --fuse, verity required when secure)", run_mount},
#endif
    {"fsck", "check stored images", run_fsck},
#ifdef CFS_WITH_REGISTRY
    {"push", "copy an image to a registry (docker://)", run_oci_push},
    {"seal", "attach the merged image's digest (signed) to a registry image", run_oci_seal},
    {"verify-seal", "check an image against a registry image's seal", run_oci_verify_seal},
    {"lazy-metadata", "fetch and check a registry image's lazy metadata", run_oci_lazy_metadata},
#endif
};

int run_oci(int argc, char** argv) {
  return run_subcommand("oci", "OCI container images in a repository (composefs-rs layout).", kSubs,
                        argc, argv);
}

}  // namespace

CFS_REGISTER_COMMAND("oci", "OCI container images in a repository (pull, mount, layers)", run_oci);

}  // namespace cfs::tools
