// SPDX-License-Identifier: Apache-2.0
// The registry side of `cfs oci` (tools/oci_registry.h; docs/registry.md):
//   pull docker://...           (options added to `cfs oci pull` by RegistryPull)
//   push SOURCE DEST            oci:DIR[:TAG] to docker://HOST[:PORT]/NAME[:TAG]
//   seal NAME REF               attach the digest of the merged image of NAME (a repository
//                               image; with --file, a composefs image file) to REF, optionally
//                               signed (--key/--cert)
//   verify-seal NAME REF        check NAME against REF's seal
//   lazy-metadata REF           fetch and check REF's lazy metadata (merged EROFS, object index)
#include <fcntl.h>
#include <fmt/core.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cfs/ocirepo/images.h"
#include "cfs/registry/layout.h"
#include "cfs/registry/lazy_metadata.h"
#include "cfs/registry/pull.h"
#include "cfs/registry/repo_push.h"
#include "cfs/registry/seal.h"
#include "cfs/util/output.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"
#include "cfs/verity/signature.h"
#include "tools/command.h"
#include "tools/interrupt.h"
#include "tools/oci_registry.h"
#include "tools/progress.h"
#include "tools/registry_options.h"
#include "tools/repo_common.h"

namespace cfs::tools {

struct RegistryPull::Impl {
  RegistryOptions options;
  CLI::Option* verify_seal = nullptr;
  std::string seal_cert;
  // Until the command ends: a second signal while it reports still kills at once.
  std::optional<Interrupts> interrupts;
};

RegistryPull::RegistryPull() : impl_(std::make_unique<Impl>()) {}
RegistryPull::~RegistryPull() = default;

void RegistryPull::add_options(CLI::App& app) {
  impl_->options.add(app, /*with_json=*/false);
  impl_->verify_seal = app.add_option("--verify-seal", impl_->seal_cert,
                                      "docker:// only: require a composefs seal naming the "
                                      "merged image; with CERT (PEM), signed by its key")
                           ->expected(0, 1);
}

Status RegistryPull::check_options() const {
  // CLI11 gives an optional value the next word: `--verify-seal docker://…` would take the
  // image for the certificate.
  if (impl_->seal_cert.starts_with("docker://"))
    return fail(Errc::kInvalidInput, "--verify-seal takes a certificate as --verify-seal=CERT");
  return impl_->options.options().transform([](auto) {});
}

Result<ocirepo::PullResult> RegistryPull::pull(repo::Repository& repo, const std::string& source,
                                               const ocirepo::PullOptions& options,
                                               Progress& progress) {
  // Before the client and the pull start threads, which inherit the blocked signals.
  CFS_ASSIGN(auto client, make_client(impl_->options, progress, /*messages_only=*/true,
                                      stop_on_signals(impl_->interrupts)));
  registry::RegistryPullOptions o;
  o.pull = options;
  if (progress.mode() != Progress::Mode::kNone)
    o.fill_progress = [&progress](const registry::FillProgress& p) {
      progress.fill(p.objects, p.objects_total, p.bytes, p.bytes_total, p.failed);
    };
  if (impl_->verify_seal->count() > 0) {
    o.verify_seal.emplace();
    if (!impl_->seal_cert.empty()) o.verify_seal->cert = impl_->seal_cert;
  }
  CFS_ASSIGN(auto out, registry::pull_image(repo, client, source, o));
  return std::move(out.result);
}

int RegistryPull::interrupted() const {
  return impl_->interrupts ? impl_->interrupts->signal() : 0;
}

int RegistryPull::report_interrupted(const repo::Repository& repo,
                                     const std::string& source) const {
  // The transfers stopped where they were: what arrived is in the repository's download
  // directory, where the next pull of SOURCE resumes it (Range requests).
  return impl_->interrupts->report(
      fmt::format("the pull of {} stopped before anything was registered; the data received is "
                  "kept in {}/{}: run the same command again to resume",
                  source, repo.path(), registry::kDownloadsDir));
}

namespace {

// "oci:DIR[:TAG]": the text after the last ':' is a tag when it holds no '/' (composefs-rs'
// rule, as the oci module reads these references).
Result<std::pair<std::string, std::string>> parse_oci_layout_ref(const std::string& text) {
  constexpr std::string_view kPrefix = "oci:";
  if (!text.starts_with(kPrefix))
    return fail(Errc::kInvalidInput, text + ": the source must be an OCI layout, oci:DIR[:TAG]");
  std::string rest = text.substr(kPrefix.size());
  std::string tag;
  if (auto colon = rest.rfind(':');
      colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    tag = rest.substr(colon + 1);
    rest.resize(colon);
  }
  if (rest.empty()) return fail(Errc::kInvalidInput, text + ": no directory");
  return std::make_pair(rest, tag);
}

int parse(CLI::App& app, int argc, char** argv, const RegistryOptions& c) {
  if (int rc = parse_args(app, argc, argv)) return rc;
  if (auto o = c.options(); !o) {
    fmt::print(stderr, "cfs: error: {}\n", o.error().message());
    return kExitUsage;
  }
  return 0;
}

}  // namespace

int run_oci_push(int argc, char** argv) {
  CLI::App app{
      "Push an image of the repository (layers rebuilt from their streams) or of an OCI "
      "layout (byte for byte) to a registry.",
      "cfs oci push"};
  RegistryOptions c;
  std::string repo_path, source, dest, compression;
  add_repo_option(app, repo_path);
  app.add_option("SOURCE", source, "repository image (tag or manifest digest), or oci:DIR[:TAG]")
      ->required();
  app.add_option("DEST", dest, "docker://HOST[:PORT]/NAME[:TAG]")->required();
  app.add_option("--compression", compression,
                 "repository images: layers rebuilt and sent as none, gzip, zstd or "
                 "zstd-chunked (a zstd frame per file and a table of contents, as "
                 "containers/storage writes) under a new manifest (default: the original blobs "
                 "and manifest when kept by pull --keep-blobs, else gzip)")
      ->check(CLI::IsMember({"none", "gzip", "zstd", "zstd-chunked"}));
  bool lazy = false, no_lazy = false;
  auto* lazy_opt = app.add_flag(
      "--lazy-metadata", lazy,
      "attach the merged EROFS and object index a lazy mount needs (default when every layer "
      "is none or zstd-chunked)");
  app.add_flag("--no-lazy-metadata", no_lazy, "do not attach them")->excludes(lazy_opt);
  c.add(app, /*with_json=*/true, /*with_jobs=*/true);
  if (int rc = parse(app, argc, argv, c)) return rc < 0 ? kExitOk : rc;
  auto ref = registry::parse_reference(dest);
  if (!ref) return report(ref.error());
  Progress progress(Progress::pick(c.json));
  // Before the client starts threads, which inherit the blocked signals.
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, /*messages_only=*/false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  Result<registry::RepoPush> pushed = fail(Errc::kInvalidInput, source);
  if (source.starts_with("oci:")) {
    if (lazy)
      return report(Error(Errc::kInvalidInput, "--lazy-metadata: only for repository images"));
    auto src = parse_oci_layout_ref(source);
    if (!src) return report(src.error());
    auto p = registry::push_from_layout(*client, src->first, src->second, *ref, c.jobs);
    if (p)
      pushed = registry::RepoPush{*p, std::nullopt, 0};
    else
      pushed = fail(std::move(p).error());
  } else {
    auto r = open_repo(repo_path, {});
    if (!r) return report(r.error());
    registry::RepoPushOptions o;
    o.jobs = c.jobs;
    if (!compression.empty())
      o.compression = compression == "none"             ? oci::Compression::kNone
                      : compression.starts_with("zstd") ? oci::Compression::kZstd
                                                        : oci::Compression::kGzip;
    o.zstd_chunked = compression == "zstd-chunked";
    if (lazy || no_lazy) o.lazy_metadata = lazy;
    pushed = registry::push_from_repository(*client, *r, source, *ref, o);
  }
  progress.finish();
  if (!pushed && interrupts->signal())
    return interrupts->report(
        fmt::format("the push of {} to {} stopped before its manifest was pushed (the registry "
                    "does not name the image); blobs already uploaded are skipped next time: run "
                    "the same command again to resume",
                    source, dest));
  if (!pushed) return report(pushed.error());
  if (c.json)
    fmt::print(
        "{{\"event\":\"result\",\"manifest\":\"{}\",\"media_type\":\"{}\",\"manifests\":{},"
        "\"blobs_uploaded\":{},\"blobs_existed\":{},\"lazy_metadata\":{},"
        "\"indexed_objects\":{},\"elf_objects\":{},\"loads\":{}}}\n",
        pushed->manifest.str(), pushed->media_type, pushed->manifests, pushed->blobs_uploaded,
        pushed->blobs_existed,
        pushed->lazy_metadata ? "\"" + pushed->lazy_metadata->str() + "\"" : "null",
        pushed->indexed_objects, pushed->elf_objects, pushed->loads);
  else
    fmt::print("{}\n", pushed->manifest.str());
  return kExitOk;
}

namespace {

struct SealArgs {
  RegistryOptions c;
  std::string repo_path;
  std::string name;
  std::string ref;
  bool file = false;
  std::string hash;
  std::string key;
  std::string cert;

  void add(CLI::App& app) {
    add_repo_option(app, repo_path);
    app.add_option("NAME", name,
                   "repository image: tag or manifest digest (with --file: an EROFS file)")
        ->required();
    app.add_option("REF", ref, "docker://HOST[:PORT]/NAME[:TAG|@DIGEST]")->required();
    app.add_flag("--file", file, "NAME is a composefs image file, not a repository image");
    app.add_option("--hash", hash,
                   "fs-verity hash of the seal: sha256 or sha512 (default: the repository's; "
                   "sha512 with --file)");
    app.add_option("--cert", cert, "PEM X.509 certificate of the signing key");
    c.add(app, /*with_json=*/true);
  }
};

// What the seal names: the image's digest in the seal's hash, and for a repository image its
// config digest (which the registry image must have).
struct Sealed {
  verity::Digest digest;
  std::optional<oci::ContentDigest> config;
  std::optional<repo::Repository> repo;  // for verify_repository_seal
  verity::Digest image;                  // images/<hex> in repo
};

Result<Sealed> sealed_image(const SealArgs& a) {
  std::optional<verity::HashAlg> alg;
  if (!a.hash.empty()) {
    CFS_ASSIGN(auto h, verity::parse_hash_alg(a.hash));
    alg = h;
  }
  if (a.file) {
    CFS_ASSIGN(auto fd, sys::open(a.name, O_RDONLY | O_CLOEXEC));
    verity::Params p;
    p.alg = alg.value_or(verity::HashAlg::kSha512);
    CFS_ASSIGN(auto m, verity::measure_or_compute(fd.get(), p, a.name));
    return Sealed{m.digest, std::nullopt, std::nullopt, m.digest};
  }
  CFS_ASSIGN(auto r, open_repo(a.repo_path, {}));
  CFS_ASSIGN(auto img, ocirepo::open_image(r, a.name));
  if (!img.image)
    return fail(Errc::kObjectMissing, a.name + ": no merged image linked; pull it again");
  CFS_ASSIGN(auto d, registry::repository_image_digest(r, *img.image, alg.value_or(r.algorithm())));
  Sealed s{d, img.config.digest, std::nullopt, *img.image};
  s.repo.emplace(std::move(r));
  return s;
}

void print_seal(const registry::Seal& s, bool json) {
  if (json)
    fmt::print(
        "{{\"event\":\"result\",\"subject\":\"{}\",\"seal\":\"{}\",\"image_digest\":\"{}\","
        "\"signed\":{}}}\n",
        s.subject.str(), s.artifact.str(), s.image.str(), s.signature.empty() ? "false" : "true");
  else
    fmt::print("{} {} {}{}\n", s.artifact.str(), s.subject.str(), s.image.str(),
               s.signature.empty() ? "" : " signed");
}

}  // namespace

int run_oci_seal(int argc, char** argv) {
  CLI::App app{"Attach the digest of an image's merged composefs image to a registry image.",
               "cfs oci seal"};
  SealArgs a;
  a.add(app);
  app.add_option("--key", a.key, "PEM private key: sign the digest (with --cert)");
  if (int rc = parse(app, argc, argv, a.c)) return rc < 0 ? kExitOk : rc;
  if (a.key.empty() != a.cert.empty()) {
    fmt::print(stderr, "cfs: error: --key and --cert go together\n");
    return kExitUsage;
  }
  auto ref = registry::parse_reference(a.ref);
  if (!ref) return report(ref.error());
  auto sealed = sealed_image(a);
  if (!sealed) return report(sealed.error());
  std::vector<std::uint8_t> signature;
  if (!a.key.empty()) {
    auto sig = verity::sign_digest(sealed->digest, a.key, a.cert);
    if (!sig) return report(sig.error());
    signature = std::move(*sig);
  }
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(a.c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  auto s = registry::push_seal(*client, *ref, sealed->digest, signature, sealed->config);
  // The seal's blobs go first, its manifest last, and a registry stores a manifest whole or not
  // at all: no seal names the image unless the registry confirmed it.
  if (!s && interrupts->signal())
    return interrupts->report(fmt::format(
        "the seal of {} on {} stopped before the registry confirmed its manifest (it holds the "
        "seal whole or not at all): run the same command again to push it",
        a.name, a.ref));
  if (!s) return report(s.error());
  print_seal(*s, a.c.json);
  return kExitOk;
}

int run_oci_verify_seal(int argc, char** argv) {
  CLI::App app{"Check an image's merged composefs image against a registry image's seal.",
               "cfs oci verify-seal"};
  SealArgs a;
  a.add(app);
  if (int rc = parse(app, argc, argv, a.c)) return rc < 0 ? kExitOk : rc;
  auto ref = registry::parse_reference(a.ref);
  if (!ref) return report(ref.error());
  auto sealed = sealed_image(a);
  if (!sealed) return report(sealed.error());
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(a.c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  std::optional<std::string> cert;
  if (!a.cert.empty()) cert = a.cert;
  // A repository image without --hash: a seal of either algorithm will do.
  auto s = sealed->repo && a.hash.empty()
               ? registry::verify_repository_seal(*client, *ref, *sealed->repo, sealed->image, cert)
               : registry::verify_seal(*client, *ref, sealed->digest, cert);
  if (!s && interrupts->signal())
    return interrupts->report(fmt::format(
        "the check of {} against the seal of {} stopped before it ended: nothing was checked",
        a.name, a.ref));
  if (!s) return report(s.error());
  print_seal(*s, a.c.json);
  return kExitOk;
}

}  // namespace cfs::tools

namespace cfs::tools {
namespace {

Status write_output(const std::string& path, std::span<const std::byte> bytes) {
  CFS_ASSIGN(auto out, Output::open(path));
  CFS_TRY(sys::write_all(out.fd(), bytes));
  return out.commit();
}

}  // namespace

int run_oci_lazy_metadata(int argc, char** argv) {
  CLI::App app{
      "Fetch and check the lazy metadata attached to a registry image (the merged composefs "
      "EROFS and the object index cfs oci push publishes).",
      "cfs oci lazy-metadata"};
  RegistryOptions c;
  std::string ref, erofs_path, index_path, platform, cert;
  bool require_seal = false;
  app.add_option("REF", ref, "docker://HOST[:PORT]/NAME[:TAG|@DIGEST]")->required();
  app.add_option("--erofs", erofs_path, "write the checked EROFS image to this file");
  app.add_option("--index", index_path, "write the object index (JSON) to this file");
  app.add_option("--platform", platform, "os/arch[/variant] to choose in an index");
  app.add_flag("--require-seal", require_seal, "fail unless a composefs seal names the EROFS");
  app.add_option("--seal-cert", cert, "require a seal signed by this PEM certificate's key");
  c.add(app, /*with_json=*/true);
  if (int rc = parse(app, argc, argv, c)) return rc < 0 ? kExitOk : rc;
  registry::LazyFetchOptions o;
  o.require_seal = require_seal;
  if (!cert.empty()) o.cert_file = cert;
  if (!platform.empty()) {
    auto p = oci::Platform::parse(platform);
    if (!p) return report(p.error());
    o.platform = *p;
  }
  Progress progress(Progress::Mode::kNone);
  std::optional<Interrupts> interrupts;
  auto client = make_client(c, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());
  auto m = registry::fetch_lazy_metadata(*client, ref, o);
  if (!m && interrupts->signal())
    return interrupts->report(fmt::format(
        "the fetch of the lazy metadata of {} stopped before it was checked: no file was written",
        ref));
  if (!m) return report(m.error());
  if (!erofs_path.empty())
    if (auto st = write_output(erofs_path, m->erofs.bytes()); !st) return report(st.error());
  if (!index_path.empty()) {
    const std::string index = ocirepo::encode_object_index(m->index);
    if (auto st = write_output(index_path, std::as_bytes(std::span(index.data(), index.size())));
        !st)
      return report(st.error());
  }
  std::size_t fetchable = 0;
  for (const auto& l : m->index.layers) fetchable += l.range_fetchable ? 1 : 0;
  if (c.json)
    fmt::print(
        "{{\"event\":\"result\",\"manifest\":\"{}\",\"artifact\":\"{}\",\"image\":\"{}\","
        "\"erofs_bytes\":{},\"objects\":{},\"layers\":{},\"range_fetchable_layers\":{},"
        "\"seal\":{}}}\n",
        m->manifest.digest.str(), m->artifact.str(), m->index.image.str(), m->erofs.size(),
        m->index.objects.size(), m->index.layers.size(), fetchable,
        m->seal ? "\"" + m->seal->artifact.str() + "\"" : "null");
  else
    fmt::print("{} {} {} objects{}\n", m->artifact.str(), m->index.image.str(),
               m->index.objects.size(), m->seal ? " sealed" : "");
  return kExitOk;
}

}  // namespace cfs::tools
