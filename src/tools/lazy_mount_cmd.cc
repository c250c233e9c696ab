// SPDX-License-Identifier: Apache-2.0
// `cfs oci mount --lazy [registry options] SOURCE MOUNTPOINT` (docs/lazy.md): serves an image
// through the verified FUSE mount before its objects are in the repository, fetching each file's
// object from the registry the first time it is opened (registry/lazy.h). Built only with both the
// registry client and FUSE (CFS_WITH_LAZY).
//
// SOURCE is a registry image or one an earlier lazy mount registered
// (registry::open_lazy_image). The mount holds a lease like every repository mount (gc keeps its
// objects).
#include <fcntl.h>
#include <fmt/core.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/fuse/mount.h"
#include "cfs/mount/options.h"
#include "cfs/registry/lazy.h"
#include "cfs/registry/lazy_image.h"
#include "cfs/registry/pull.h"
#include "cfs/repo/lease.h"
#include "cfs/util/json.h"
#include "cfs/util/sys.h"
#include "tools/command.h"
#include "tools/interrupt.h"
#include "tools/oci_registry.h"
#include "tools/progress.h"
#include "tools/registry_options.h"
#include "tools/repo_common.h"

namespace cfs::tools {
namespace {

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
  std::uint64_t batch_bytes = registry::kDefaultBatchBytes;
  bool lazy = true, no_fill = false, no_full_pull = false, no_elf_prefetch = false,
       foreground = false, json = false, verbose = false;
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
                 "seconds an open waits for its object before failing with EIO, and the start-up "
                 "tries a registry that cannot be reached when an image registered for SOURCE "
                 "before can be mounted instead (default 30)");
  app.add_option("--prefetch", prefetch_file,
                 "a file listing image paths, one per line: fetched first, in that order");
  app.add_flag("--no-full-pull", no_full_pull,
               "an image without lazy metadata is an error instead of being pulled whole and "
               "mounted");
  app.add_flag("--no-fill", no_fill,
               "do not fetch the rest of the image in the background (only what is opened)");
  app.add_option("--fetchers", fetchers, "objects fetched at once (default 4)");
  auto* batch_option = app.add_option(
      "--batch-bytes", batch_bytes,
      "a fetch also brings the missing objects stored next to its object in the layer, while "
      "the Range request grows by at most this many bytes (default: what one round trip to the "
      "registry is worth, round trip x rate as measured at mount, at most 1 MiB; 65536 when "
      "not measured; the asked file's own directory up to 131072 whatever was measured; 0: one "
      "object per request)");
  app.add_flag("--no-elf-prefetch", no_elf_prefetch,
               "do not fetch the interpreter and libraries of a fetched ELF program or library "
               "along with it (only what is opened)");
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
  auto parsed = mount::parse_repository_mount_options(option_strings, mount::Dialect::kFuse);
  if (!parsed) {
    fmt::print(stderr, "cfs: error: {}\n", parsed.error().message());
    return kExitUsage;
  }
  mount::Options mo = std::move(*parsed);
  auto copts = reg.options();
  if (!copts) return report(copts.error());
  std::vector<std::string> prefetch_paths;
  if (!prefetch_file.empty()) {
    auto lines = read_lines(prefetch_file);
    if (!lines) return report(lines.error());
    prefetch_paths = std::move(*lines);
  }

  // CFS_LAZY_TRACE=FILE: each start-up step and fetch event (docs/lazy.md); the daemon keeps
  // writing there.
  const auto trace = trace_from_env("CFS_LAZY_TRACE");
  auto step = [&trace](std::string_view event) {
    if (trace) trace(event);
  };
  step("start");
  // The server runs in / (libfuse's daemonize changes directory, in the foreground too) and
  // opens the repository again by its path there (each fetch, the deferred registration): a
  // relative --repo (or $CFS_REPO) made every fetch fail and the image never registered.
  repo_path = sys::absolute_path(repo_path_or_default(repo_path));
  repo::OpenOptions w;
  w.write = true;
  auto repo = open_repo(repo_path, w);
  if (!repo) return report(repo.error());
  Progress progress(Progress::Mode::kNone);
  // SIGINT/SIGTERM stop the metadata fetch (or the whole pull of an image without lazy
  // metadata) cleanly, and, until the FUSE server's own handlers are in place (it stops on
  // them, unmounting), the mount before anything is mounted: the lease and the deferred
  // registration are then dropped, not left half done by the signal's default action. The
  // server takes them over (ServeOptions::on_signals) before it starts a thread; the
  // provider starts none before it serves.
  std::optional<Interrupts> interrupts;
  auto client = make_client(reg, progress, false, stop_on_signals(interrupts));
  if (!client) return report(client.error());

  registry::LazyImageOptions lio;
  lio.fetch.require_seal = require_seal->count() > 0;
  if (!seal_cert.empty()) lio.fetch.cert_file = seal_cert;
  lio.full_pull = !no_full_pull;
  lio.offline_after_s = timeout;
  lio.notice = [](const std::string& line) { fmt::print(stderr, "cfs: {}\n", line); };
  lio.fetch.trace = trace;
  // The registration (fsyncs) is made once the mount serves and is quiet: see `quiet_host` below.
  lio.defer_registration = true;
  auto opened = registry::open_lazy_image(*repo, *client, source, lio);
  // Even when it succeeded (an image registered before, mounted because the registry could not
  // be reached, or one pulled whole): the user asked to stop before anything was mounted. The
  // registration is deferred until the mount serves, so a lazy image has none yet.
  auto report_stopped = [&](bool whole, bool opened_ok) {
    return interrupts->report(fmt::format(
        "the lazy mount of {} stopped before anything was mounted{}", source,
        whole       ? "; the image was pulled whole and is registered as by `cfs oci pull`"
        : opened_ok ? " or registered"
                    : fmt::format(" or registered: run the same command again (a whole pull "
                                  "resumes from the bytes kept in {}/{})",
                                  repo->path(), registry::kDownloadsDir)));
  };
  if (interrupts->signal()) {
    interrupts->end();
    if (opened && opened->pending)
      registry::abandon_registration(*repo, std::move(*opened->pending));
    return report_stopped(opened && opened->pulled_whole, opened.has_value());
  }
  if (!opened) return report(opened.error());
  const verity::Digest image = opened->image;
  const bool pulled_whole = opened->pulled_whole;

  // Fetched now: the image's bytes were digested once, at the fetch, and exactly those are
  // served (a sealed copy), so neither the repository's file nor a copy of it is digested again.
  const bool fetched = opened->erofs.get() >= 0;
  std::optional<registry::PendingRegistration> pending = std::move(opened->pending);
  auto plan =
      pending ? repo::prepare_unregistered_mount(*repo, image, repo::MountKind::kFuse, dir)
              : repo::prepare_mount(*repo, image.hex(), repo::MountKind::kFuse, dir, true, fetched);
  if (!plan) {
    if (pending) registry::abandon_registration(*repo, std::move(*pending));
    return report(plan.error());
  }
  // From here on a failure drops the pending lease prepare_mount wrote (gc would only remove it
  // once nothing is mounted on dir, and something else may be).
  auto drop_lease = [&] {
    if (repo->fd() < 0) return;  // the serving process has it (on_serving)
    (void)repo::drop_lease(*repo, plan->lease);
    if (pending) registry::abandon_registration(*repo, std::move(*pending));
    pending.reset();
  };
  auto fail_dropping_lease = [&](const Error& e) {
    drop_lease();
    return report(e);
  };

  // Background fetches log to stderr in the foreground, to syslog once daemonized.
  auto daemonized = std::make_shared<std::atomic<bool>>(false);
  registry::LazyOptions lo;
  lo.repo_path = repo->path();
  lo.source = opened->source;
  lo.timeout_s = timeout;
  const std::size_t object_count = opened->index.objects.size();
  lo.index = std::move(opened->index);
  lo.loader_graph = std::move(opened->loader_graph);
  lo.fill = !no_fill;
  lo.fetchers = fetchers;
  lo.elf_prefetch = !no_elf_prefetch;
  // Unless given, the budget comes from the link the metadata fetch just measured.
  if (batch_option->count() == 0) {
    if (auto b = registry::batch_budget(opened->link.round_trip_s, opened->link.bytes_per_s))
      batch_bytes = *b;
    lo.directory_batch_bytes = registry::kDirectoryBatchBytes;
  }
  lo.batch_bytes = batch_bytes;
  step(fmt::format("batch budget {} bytes", batch_bytes));
  lo.trace = trace;
  // The fill's progress: a status line on a terminal, JSON events on stdout with --json, while
  // serving in the foreground (a daemon has neither; its "fill complete" goes to syslog).
  // The fill starts before the mount reports itself: what it says meanwhile is shown after.
  Progress fill_view(foreground ? Progress::pick(json) : Progress::Mode::kNone);
  struct FillState {
    std::mutex mu;
    bool serving = false;
    std::optional<registry::FillProgress> pending;
  } fill_state;
  auto show_fill = [&fill_view](const registry::FillProgress& p) {
    fill_view.fill(p.objects, p.objects_total, p.bytes, p.bytes_total, p.failed);
  };
  if (fill_view.mode() != Progress::Mode::kNone)
    lo.progress = [&fill_state, show_fill](const registry::FillProgress& p) {
      std::lock_guard lock(fill_state.mu);
      if (fill_state.serving)
        show_fill(p);
      else
        fill_state.pending = p;
    };
  const std::function<void(const std::string&)> lo_log = [daemonized](const std::string& line) {
    if (*daemonized)
      ::syslog(LOG_NOTICE, "%s", line.c_str());
    else
      fmt::print(stderr, "cfs: {}\n", line);
  };
  lo.log = lo_log;
  std::shared_ptr<registry::LazyProvider> provider;
  if (!pulled_whole) {
    auto img = fetched ? erofs::Image::open_fd(opened->erofs.get(), plan->image_path)
                       : erofs::Image::open(plan->image_path);
    if (!img) return fail_dropping_lease(img.error());
    auto objs = registry::objects_of_paths(*img, prefetch_paths);
    if (!objs) return fail_dropping_lease(objs.error());
    lo.prefetch = std::move(*objs);
    lo.image = std::move(*img);
    auto p = registry::LazyProvider::create(std::move(*client), std::move(lo));
    if (!p) return fail_dropping_lease(p.error());
    provider = std::move(*p);
  }
  step("provider");

  mo.basedirs = {plan->objects_dir};
  mo.verity = mount::VerityMode::kRequire;
  mo.verity_spelling = "verity=require";
  if (plan->require_verity) mo.digest = plan->image;
  fuse::ServeOptions serve;
  serve.foreground = foreground;
  // The signals go to the server's handlers from here on (a pending one at once: it then
  // stops the server as soon as it runs); one that came since the metadata phase stops the
  // mount before anything is mounted.
  serve.on_signals = [&interrupts] { return interrupts->end() == 0; };
  // The calling process reports on stdout once the mount is up, before the daemon forks (so
  // that the report is there when the command returns); the serving process (after it
  // daemonized) completes the lease, closes the repository (its lock) and then its copy of
  // stdout: a caller reading the output to its end (a pipe) returns with the mount recorded.
  int out = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  // A fetched image is registered by the serving process (after it daemonized: a thread does
  // not survive the fork) while it serves, once the mount is quiet (LazyProvider::when_quiet: not
  // beside the first program's loader closure, whose transfer the two cores' CPU limits), at
  // the latest a bound later, and at the stop: the EROFS object and the parts are fsynced before
  // they are named, as before, and the repository stays open (its lock keeps gc out) until the
  // registration is complete. What is served meanwhile is the checked copy in memory, and the
  // lease, written before the mount, keeps the objects fetched meanwhile. A crash leaves what a
  // crash inside open_lazy_image() would have (registry::complete_registration).
  registry::LazyProvider* const quiet_host = provider.get();  // alive while mount_image runs
  serve.on_serving = [&](bool is_daemon) {
    step("serving");
    *daemonized = is_daemon;
    (void)repo::complete_lease(*repo, plan->lease);
    if (pending) {
      auto task = [r = std::make_shared<repo::Repository>(std::move(*repo)),
                   p = std::make_shared<registry::PendingRegistration>(std::move(*pending)), trace,
                   log = lo_log] {
        if (auto st = registry::complete_registration(*r, std::move(*p), trace); !st)
          log("error: registering the image (the mount serves it; gc refuses to run until it "
              "is unmounted): " +
              st.error().message());
      };
      pending.reset();
      if (quiet_host)
        quiet_host->when_quiet(std::move(task));
      else
        task();
    }
    repo::Repository closed = std::move(*repo);
    if (out >= 0) ::close(out);
    out = -1;
    std::lock_guard lock(fill_state.mu);
    fill_state.serving = !is_daemon;
    if (fill_state.serving && fill_state.pending) show_fill(*fill_state.pending);
  };
  serve.on_mounted = [&] {
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
    if (!text.empty()) (void)sys::write_all(STDOUT_FILENO, std::as_bytes(std::span(text)));
  };
  Status st;
  if (fetched) {
    auto img = erofs::Image::open_fd(opened->erofs.get(), plan->image_path);
    if (img)
      st =
          fuse::mount_image(std::move(*img), plan->image_path, dir, mo, serve, std::move(provider));
    else
      st = fail(std::move(img).error());
  } else {
    st = provider ? fuse::mount_image(plan->image_path, dir, mo, serve, std::move(provider))
                  : fuse::mount_image(plan->image_path, dir, mo, serve);
  }
  if (out >= 0) ::close(out);
  // Interrupted before the server's handlers were in place (or before the mount, by a failure
  // meanwhile): ends the reading of the signals if the server did not.
  if (interrupts->end() && !st) {
    drop_lease();
    return report_stopped(pulled_whole, true);
  }
  if (!st) return fail_dropping_lease(st.error());
  return kExitOk;
}

}  // namespace cfs::tools
