// SPDX-License-Identifier: Apache-2.0
// `cfs registry SUBCOMMAND`: low-level access to an OCI registry through the registry client
// (manifests, blobs, tags, referrers, copying an image into an OCI layout), and `cfs login` /
// `cfs logout`, which keep credentials in the containers auth.json as podman and skopeo do.
// These are developer tools until `cfs oci pull/push` exist on top of the same client.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

// g++ 12 -O2 reports a false "potential null pointer dereference" inside CLI11's inlined
// std::string code; it is not in our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/registry/auth.h"
#include "cfs/registry/client.h"
#include "cfs/registry/layout.h"
#include "cfs/util/atomic_file.h"
#include "cfs/util/json.h"
#include "cfs/util/sys.h"
#include "tools/command.h"
#include "tools/interrupt.h"
#include "tools/progress.h"
#include "tools/registry_options.h"

namespace cfs::tools {
namespace {

// Parses "A-B" (inclusive, as HTTP writes ranges).
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_range(const std::string& s) {
  auto dash = s.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == s.size()) return std::nullopt;
  try {
    std::size_t p1 = 0, p2 = 0;
    auto a = std::stoull(s.substr(0, dash), &p1);
    auto b = std::stoull(s.substr(dash + 1), &p2);
    if (p1 != dash || p2 != s.size() - dash - 1 || b < a) return std::nullopt;
    return std::make_pair(static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(b));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

int get_manifest(const RegistryOptions& c, const std::string& ref_text, bool digest_only) {
  auto ref = registry::parse_reference(ref_text);
  if (!ref) return report(ref.error());
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  auto m = client->get_manifest(*ref);
  if (!m && interrupts->signal())
    return interrupts->report(
        fmt::format("the fetch of the manifest of {} stopped: nothing was written", ref_text));
  if (!m) return report(m.error());
  if (digest_only) {
    fmt::print("{}\n", m->digest.str());
    return kExitOk;
  }
  auto st =
      sys::write_all(STDOUT_FILENO, std::as_bytes(std::span(m->bytes.data(), m->bytes.size())));
  if (!st) return report(st.error());
  return kExitOk;
}

struct BlobArgs {
  std::string ref;
  std::string digest;
  std::string range;
  std::string output = "-";
  std::string download_dir;
  std::optional<std::uint64_t> size;
};

int get_blob(const RegistryOptions& c, const BlobArgs& a) {
  auto ref = registry::parse_reference(a.ref);
  if (!ref) return report(ref.error());
  auto digest = oci::ContentDigest::parse(a.digest);
  if (!digest) return report(digest.error());
  std::optional<std::pair<std::uint64_t, std::uint64_t>> range;
  if (!a.range.empty()) {
    range = parse_range(a.range);
    if (!range) {
      fmt::print(stderr, "cfs: error: --range takes FIRST-LAST (byte offsets, inclusive)\n");
      return kExitUsage;
    }
  }
  Progress progress(Progress::pick(false));
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  // A file output appears only once the blob is complete and verified.
  std::optional<AtomicFile> out_file;
  int fd = STDOUT_FILENO;
  if (a.output != "-") {
    auto f = AtomicFile::create(a.output, 0644);
    if (!f) return report(f.error());
    out_file.emplace(std::move(*f));
    fd = out_file->fd();
  }
  registry::FdBlobSink sink(fd, a.output == "-" ? "standard output" : a.output);
  Status st;
  if (range) {
    st = client->fetch_range(*ref, *digest, range->first, range->second - range->first + 1, sink);
  } else {
    std::optional<registry::DownloadDir> dir;
    if (!a.download_dir.empty()) {
      auto d = registry::DownloadDir::open(a.download_dir);
      if (!d) return report(d.error());
      dir.emplace(std::move(*d));
    }
    st = client->fetch_blob(*ref, registry::BlobFetch{*digest, a.size, &sink},
                            registry::FetchOptions{dir ? &*dir : nullptr, false});
  }
  progress.finish();
  if (!st && interrupts->signal())
    return interrupts->report(fmt::format(
        "the fetch of blob {} stopped: {}{}", a.digest,
        a.output == "-" ? "standard output has only a part of it" : a.output + " was not created",
        !range && !a.download_dir.empty() ? "; the bytes received are kept in " + a.download_dir +
                                                ": run the same command again to resume"
                                          : ""));
  if (!st) return report(st.error());
  if (out_file)
    if (auto cst = out_file->commit(); !cst) return report(cst.error());
  return kExitOk;
}

int fetch(const RegistryOptions& c, const std::string& ref_text, const std::string& dir,
          const std::string& tag_opt) {
  auto ref = registry::parse_reference(ref_text);
  if (!ref) return report(ref.error());
  Progress progress(Progress::pick(c.json));
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  std::string tag = tag_opt.empty() ? ref->tag : tag_opt;
  auto copied = registry::copy_to_layout(*client, *ref, dir, tag);
  progress.finish();
  if (!copied && interrupts->signal())
    return interrupts->report(fmt::format(
        "the copy of {} into {} stopped before its index.json named it; the blobs received "
        "are kept in {}/blobs: run the same command again to resume",
        ref_text, dir, dir));
  if (!copied) return report(copied.error());
  if (c.json)
    fmt::print(
        "{{\"event\":\"result\",\"manifest\":\"{}\",\"media_type\":\"{}\",\"manifests\":{},"
        "\"blobs\":{}}}\n",
        copied->manifest.str(), copied->media_type, copied->manifests, copied->blobs);
  else
    fmt::print("{}\n", copied->manifest.str());
  return kExitOk;
}

struct PutBlobArgs {
  std::string ref;
  std::string file;
  std::vector<std::string> mount_from;
  std::uint64_t chunked_threshold = 128ull << 20;
  std::uint64_t chunk_size = 32ull << 20;
};

int put_blob(const RegistryOptions& c, const PutBlobArgs& a) {
  auto ref = registry::parse_reference(a.ref);
  if (!ref) return report(ref.error());
  auto src = registry::FileBlobSource::open(a.file);
  if (!src) return report(src.error());
  // The digest the registry must confirm, computed before anything is sent.
  auto digest = registry::hash_source(*src);
  if (!digest) return report(digest.error());
  Progress progress(Progress::pick(c.json));
  auto opts = c.options();
  if (!opts) return report(opts.error());
  opts->progress = transfer_callback(progress);
  opts->chunked_threshold = a.chunked_threshold;
  opts->chunk_size = a.chunk_size;
  std::optional<Interrupts> interrupts;
  opts->cancel = stop_on_signals(interrupts);
  auto client = registry::Client::create(std::move(*opts));
  if (!client) return report(client.error());
  auto outcome = client->push_blob(*ref, *digest, *src, registry::PushOptions{a.mount_from});
  progress.finish();
  // The registry names a blob only once its upload is complete and matches the digest.
  if (!outcome && interrupts->signal())
    return interrupts->report(
        fmt::format("the upload of {} to {} stopped before the registry confirmed the blob "
                    "{}: run the same command again to upload it",
                    a.file, a.ref, digest->str()));
  if (!outcome) return report(outcome.error());
  const char* what = *outcome == registry::PushOutcome::kExisted   ? "existed"
                     : *outcome == registry::PushOutcome::kMounted ? "mounted"
                                                                   : "uploaded";
  if (c.json)
    fmt::print("{{\"event\":\"result\",\"digest\":\"{}\",\"size\":{},\"outcome\":\"{}\"}}\n",
               digest->str(), src->size(), what);
  else
    fmt::print("{} {}\n", digest->str(), what);
  return kExitOk;
}

int put_manifest(const RegistryOptions& c, const std::string& ref_text, const std::string& file,
                 std::string media_type) {
  auto ref = registry::parse_reference(ref_text);
  if (!ref) return report(ref.error());
  auto bytes = file == "-" ? sys::read_fd(STDIN_FILENO, "standard input") : sys::read_file(file);
  if (!bytes) return report(bytes.error());
  if (media_type.empty()) {
    media_type = registry::declared_media_type(*bytes);
    if (media_type.empty()) {
      fmt::print(stderr, "cfs: error: {}: no mediaType in the manifest; give --media-type\n", file);
      return kExitUsage;
    }
  }
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  auto d = client->put_manifest(*ref, media_type, *bytes);
  if (!d && interrupts->signal())
    return interrupts->report(
        fmt::format("the upload of manifest {} to {} stopped before the registry confirmed it "
                    "(it stores a manifest whole or not at all): run the same command again",
                    file, ref_text));
  if (!d) return report(d.error());
  fmt::print("{}\n", d->str());
  return kExitOk;
}

int tags(const RegistryOptions& c, const std::string& ref_text) {
  auto ref = registry::parse_reference(ref_text);
  if (!ref) return report(ref.error());
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  auto list = client->list_tags(*ref);
  if (!list && interrupts->signal())
    return interrupts->report(
        fmt::format("listing the tags of {} stopped: nothing was printed", ref_text));
  if (!list) return report(list.error());
  if (c.json) {
    std::string out;
    for (const auto& t : *list) out += (out.empty() ? "" : ",") + json::string(t);
    fmt::print("{{\"tags\":[{}]}}\n", out);
    return kExitOk;
  }
  for (const auto& t : *list) fmt::print("{}\n", t);
  return kExitOk;
}

int referrers(const RegistryOptions& c, const std::string& ref_text,
              const std::string& artifact_type) {
  auto ref = registry::parse_reference(ref_text);
  if (!ref) return report(ref.error());
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  auto stopped = [&] {
    return interrupts->report(
        fmt::format("listing the referrers of {} stopped: nothing was printed", ref_text));
  };
  std::optional<oci::ContentDigest> subject;
  if (!ref->digest.empty()) {
    subject = oci::ContentDigest::parse(ref->digest).value();
  } else {
    auto info = client->stat_manifest(*ref);
    if (!info && interrupts->signal()) return stopped();
    if (!info) return report(info.error());
    subject = info->digest;
  }
  auto list = client->list_referrers(*ref, *subject, artifact_type);
  if (!list && interrupts->signal()) return stopped();
  if (!list) return report(list.error());
  if (c.json) {
    std::string out;
    for (const auto& d : list->manifests) {
      std::string ann;
      for (const auto& [k, v] : d.annotations)
        ann += (ann.empty() ? "" : ",") + json::string(k) + ":" + json::string(v);
      out += fmt::format(
          "{}{{\"digest\":\"{}\",\"media_type\":{},\"artifact_type\":{},"
          "\"size\":{},\"annotations\":{{{}}}}}",
          out.empty() ? "" : ",", d.digest.str(), json::string(d.media_type),
          json::string(d.artifact_type), d.size, ann);
    }
    fmt::print("{{\"subject\":\"{}\",\"from_api\":{},\"manifests\":[{}]}}\n", subject->str(),
               list->from_api ? "true" : "false", out);
    return kExitOk;
  }
  for (const auto& d : list->manifests)
    fmt::print("{} {} {}\n", d.digest.str(), d.artifact_type.empty() ? "-" : d.artifact_type,
               d.size);
  return kExitOk;
}

int run_registry(int argc, char** argv) {
  CLI::App app{"Low-level access to an OCI registry (docker://HOST[:PORT]/NAME[:TAG|@DIGEST]).",
               "cfs registry"};
  app.require_subcommand(1);
  RegistryOptions common;

  auto* gm = app.add_subcommand("get-manifest", "print a manifest's raw bytes");
  std::string gm_ref;
  bool gm_digest = false;
  gm->add_option("REF", gm_ref, "image reference")->required();
  gm->add_flag("--digest", gm_digest, "print only the manifest's verified digest");
  common.add(*gm, false);

  auto* gb = app.add_subcommand("get-blob", "write a blob (or a byte range of it)");
  BlobArgs ba;
  gb->add_option("REF", ba.ref, "image reference (its repository is used)")->required();
  gb->add_option("DIGEST", ba.digest, "the blob's digest (sha256:...)")->required();
  gb->add_option("--range", ba.range, "only bytes FIRST-LAST (inclusive; not verified)");
  gb->add_option("-o,--output", ba.output, "output file (default: standard output)");
  gb->add_option("--download-dir", ba.download_dir,
                 "keep partial downloads here so an interrupted get-blob resumes");
  gb->add_option("--size", ba.size, "expected size in bytes (from the descriptor)");
  common.add(*gb, false);

  auto* fe = app.add_subcommand("fetch", "copy an image into an OCI layout directory");
  std::string fe_ref, fe_dir, fe_tag;
  fe->add_option("REF", fe_ref, "image reference")->required();
  fe->add_option("DIR", fe_dir, "OCI image layout directory (created if needed)")->required();
  fe->add_option("--tag", fe_tag, "name in the layout's index.json (default: the reference's tag)");
  common.add(*fe, true, true);

  auto* pb = app.add_subcommand("put-blob", "upload a file as a blob unless the registry has it");
  PutBlobArgs pa;
  pb->add_option("REF", pa.ref, "image reference (its repository is used)")->required();
  pb->add_option("FILE", pa.file, "the blob's content")->required();
  pb->add_option("--mount-from", pa.mount_from,
                 "repository of the same registry to mount the blob from (repeatable)");
  pb->add_option("--chunked-threshold", pa.chunked_threshold,
                 "upload larger blobs in chunks (bytes; 0 = never; default 128 MiB)");
  pb->add_option("--chunk-size", pa.chunk_size, "chunk size in bytes (default 32 MiB)")
      ->check(CLI::PositiveNumber);
  common.add(*pb, true);

  auto* pm = app.add_subcommand("put-manifest", "upload a manifest under REF's tag or digest");
  std::string pm_ref, pm_file, pm_type;
  pm->add_option("REF", pm_ref, "image reference")->required();
  pm->add_option("FILE", pm_file, "manifest file ('-' = standard input)")->required();
  pm->add_option("--media-type", pm_type, "Content-Type (default: the manifest's mediaType)");
  common.add(*pm, false);

  auto* tg = app.add_subcommand("tags", "list the tags of a repository");
  std::string tg_ref;
  tg->add_option("REF", tg_ref, "image reference (its repository is used)")->required();
  common.add(*tg, true);

  auto* rf = app.add_subcommand("referrers", "list the manifests whose subject is REF");
  std::string rf_ref, rf_type;
  rf->add_option("REF", rf_ref, "image reference (by digest, or a tag to resolve)")->required();
  rf->add_option("--artifact-type", rf_type, "only referrers of this artifact type");
  common.add(*rf, true);

  // CLI11 calls a word that names no subcommand "A subcommand is required": name it instead,
  // as `cfs oci` and `cfs repo` do.
  if (argc > 1 && argv[1][0] != '-') {
    auto all = app.get_subcommands([](CLI::App*) { return true; });
    if (std::none_of(all.begin(), all.end(),
                     [&](CLI::App* s) { return s->get_name() == argv[1]; })) {
      fmt::print(stderr, "cfs: error: unknown registry subcommand '{}'\n{}", argv[1], app.help());
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (auto o = common.options(); !o) {
    fmt::print(stderr, "cfs: error: {}\n", o.error().message());
    return kExitUsage;
  }
  if (gm->parsed()) return get_manifest(common, gm_ref, gm_digest);
  if (gb->parsed()) return get_blob(common, ba);
  if (fe->parsed()) return fetch(common, fe_ref, fe_dir, fe_tag);
  if (pb->parsed()) return put_blob(common, pa);
  if (pm->parsed()) return put_manifest(common, pm_ref, pm_file, pm_type);
  if (tg->parsed()) return tags(common, tg_ref);
  return referrers(common, rf_ref, rf_type);
}

}  // namespace

CFS_REGISTER_COMMAND("registry", "talk to an OCI registry: manifests, blobs, tags, referrers",
                     run_registry);

}  // namespace cfs::tools
