// SPDX-License-Identifier: Apache-2.0
// `cfs create`: mkcomposefs in the unified CLI (same options and semantics, CLI11 parsing,
// exit status 2 on usage errors, --json report for scripts).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

// g++ 12 -O2 reports a false "potential null pointer dereference" inside CLI11's
// detail::split (inlined std::string relocation); it is not in our code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/util/sys.h"
#include "tools/build_image.h"
#include "tools/command.h"
#include "tools/repo_common.h"

namespace cfs::tools {
namespace {

// Objects, image and name in one transaction: objects and the image object are written, one
// syncfs, then the names (repo::Repository::publish_image).
int create_in_repo(BuildConfig& cfg, bool hash_given, const std::string& repo_path,
                   const std::optional<std::string>& ref, bool json, bool print_digest) {
  auto fail_with = [](const Error& e) {
    fmt::print(stderr, "cfs: error: {}\n", e.message());
    return kExitFailure;
  };
  repo::OpenOptions oo;
  oo.write = true;
  auto repo = open_repo(repo_path, oo);
  if (!repo) return fail_with(repo.error());
  if (hash_given && cfg.hash != repo->algorithm())
    return fail_with(Error(Errc::kConflict,
                           "--hash " + std::string(verity::hash_alg_name(cfg.hash)) + ": " +
                               repo->path() + " uses " + repo::algorithm_name(repo->algorithm())));
  cfg.hash = repo->algorithm();
  std::uint32_t format = repo->meta().erofs_version();
  if (format > 1)
    return fail_with(
        Error(Errc::kUnsupportedFeature, repo->path() +
                                             ": cfs writes EROFS formats 0 and 1, the repository "
                                             "uses " +
                                             std::to_string(format)));
  // composefs-rs V0 is mkcomposefs' default (version 0, raised to 1 when needed); V1 is
  // --min-version=1.
  cfg.min_version = format;
  cfg.max_version = 1;
  cfg.image.reset();
  cfg.digest_store = repo->path() + "/objects";
  auto image = repo->create_object();
  if (!image) return fail_with(image.error());
  cfg.image_fd = image->fd();
  auto report = build_image(cfg);
  if (!report) return fail_with(report.error());
  auto digest = repo->commit_object(std::move(*image));
  if (!digest) return fail_with(digest.error());
  if (auto st = repo->publish_image(*digest, ref); !st) return fail_with(st.error());
  if (json) {
    fmt::print(
        "{{\"image\": \"{}\", \"name\": {}, \"size\": {}, \"version\": {}, "
        "\"inodes\": {}, \"external_files\": {}, \"objects_added\": {}, "
        "\"objects_existed\": {}, \"bytes_added\": {}}}\n",
        digest->hex(), ref ? json::string(*ref) : "null", report->image_size, report->version,
        report->nodes, report->external_files, report->objects_added, report->objects_existed,
        report->bytes_added);
  } else if (print_digest || !ref) {
    fmt::print("{}\n", digest->hex());
  }
  return kExitOk;
}

int run_create(int argc, char** argv) {
  CLI::App app{
      "Build a composefs image from a directory (or, with --from-file, a dump file).\n"
      "Options and image bytes are those of mkcomposefs (composefs 1.0.8).",
      "cfs create"};
  BuildConfig cfg;
  cfg.program = "cfs create";
  std::string image;
  std::string store;
  bool print_digest = false, print_digest_only = false, json = false;
  std::optional<unsigned> min_version, max_version;
  unsigned threads = sys::available_cpus();
  std::string repo_path, name;
  app.add_option("SOURCE", cfg.source, "directory, or dump file with --from-file ('-' = stdin)")
      ->required();
  add_repo_option(app, repo_path);
  app.add_option("--name", name,
                 "with a repository: name the image (images/refs/NAME; replaces the name)");
  app.add_option("IMAGE", image, "output image ('-' = stdout)");
  app.add_option("--digest-store", store, "copy file contents into this object store");
  app.add_flag("--verify-existing", cfg.verify_existing,
               "check the full digest of objects already in the store (damaged ones are "
               "replaced)");
  app.add_flag("--print-digest", print_digest, "print the image's fs-verity digest");
  app.add_flag("--print-digest-only", print_digest_only, "print the digest, write no image");
  app.add_flag("--use-epoch", cfg.use_epoch, "make all mtimes zero");
  app.add_flag("--skip-devices", cfg.skip_devices, "don't store device nodes (nor whiteouts)");
  app.add_flag("--skip-xattrs", cfg.skip_xattrs, "don't store xattrs");
  app.add_flag("--user-xattrs", cfg.user_xattrs, "only store user.* xattrs")
      ->excludes(app.get_option("--skip-xattrs"));
  app.add_flag("--hardlinks", cfg.hardlinks, "keep hardlinks found in SOURCE");
  std::string hash = "sha256";
  app.add_option("--hash", hash,
                 "fs-verity algorithm of file and image digests: sha256 (default, composefs "
                 "1.0.8) or sha512")
      ->check(CLI::IsMember({"sha256", "sha512"}));
  app.add_flag("--from-file", cfg.from_file, "SOURCE is a composefs dump file");
  app.add_option("--min-version", min_version, "minimal format version (default 0)")
      ->check(CLI::Range(0U, 1U));
  app.add_option("--max-version", max_version, "maximal format version (default 1)")
      ->check(CLI::Range(0U, 1U));
  app.add_option("--threads", threads, "worker threads (default: all CPUs)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print a JSON report on stdout");
  try {
    app.parse(argc, argv);
    if (!repo_path.empty() || !name.empty()) {
      if (!image.empty() || !store.empty() || print_digest_only)
        throw CLI::ValidationError("--repo",
                                   "stores the image and its objects in the repository: no IMAGE, "
                                   "--digest-store or --print-digest-only");
      if (min_version || max_version)
        throw CLI::ValidationError("--repo", "the repository's EROFS format applies");
    } else {
      if (print_digest_only && !image.empty())
        throw CLI::ValidationError("IMAGE", "cannot be given with --print-digest-only");
      if (!print_digest_only && image.empty())
        throw CLI::RequiredError("IMAGE (or --print-digest-only)");
    }
    if (json && image == "-")
      throw CLI::ValidationError("--json", "cannot be combined with IMAGE '-' (stdout)");
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (!print_digest_only) cfg.image = image;
  if (!store.empty()) cfg.digest_store = store;
  // mkcomposefs' rule: giving either version makes the other default to 0; max >= min.
  unsigned lo = 0, hi = 1;
  if (min_version || max_version) {
    lo = min_version.value_or(0);
    hi = max_version.value_or(0);
  }
  cfg.min_version = lo;
  cfg.max_version = hi < lo ? lo : hi;
  cfg.threads = threads;
  cfg.hash = hash == "sha512" ? verity::HashAlg::kSha512 : verity::HashAlg::kSha256;
  cfg.strict = std::getenv("CFS_PARSE_STRICT") != nullptr;
  cfg.progress = ::isatty(STDERR_FILENO) != 0;

  if (!repo_path.empty() || !name.empty()) {
    std::optional<std::string> ref;
    if (!name.empty()) ref = name.starts_with("refs/") ? name.substr(5) : name;
    return create_in_repo(cfg, app.count("--hash") > 0, repo_path, ref, json, print_digest);
  }
  auto report = build_image(cfg);
  if (!report) {
    fmt::print(stderr, "cfs: error: {}\n", report.error().message());
    return kExitFailure;
  }
  if (json) {
    fmt::print(
        "{{\"digest\": \"{}\", \"size\": {}, \"version\": {}, \"inodes\": {}, "
        "\"external_files\": {}, \"objects_added\": {}, \"objects_existed\": {}, "
        "\"objects_replaced\": {}, \"bytes_added\": {}}}\n",
        report->digest_hex, report->image_size, report->version, report->nodes,
        report->external_files, report->objects_added, report->objects_existed,
        report->objects_replaced, report->bytes_added);
  } else if (print_digest || print_digest_only) {
    fmt::print("{}\n", report->digest_hex);
  }
  return kExitOk;
}

}  // namespace

CFS_REGISTER_COMMAND("create", "build a composefs image (like mkcomposefs)", run_create);

}  // namespace cfs::tools
