// SPDX-License-Identifier: Apache-2.0
// `mkcomposefs [OPTIONS] SOURCE IMAGE`, option for option compatible with composefs 1.0.8
// (composefs-tools.md §1), plus --hardlinks. getopt_long, not CLI11, because compatibility
// includes getopt's syntax (--opt=V and --opt V, abbreviations) and exit status 1 on usage
// errors, which scripts calling mkcomposefs rely on.
#include <fmt/core.h>
#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cfs/util/sys.h"
#include "tools/build_image.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

enum Opt {
  kOptSkipXattrs = 256,
  kOptUserXattrs,
  kOptSkipDevices,
  kOptUseEpoch,
  kOptDigestStore,
  kOptPrintDigest,
  kOptPrintDigestOnly,
  kOptFromFile,
  kOptMaxVersion,
  kOptMinVersion,
  kOptThreads,
  kOptHardlinks,
  kOptHash,
  kOptVerifyExisting,
  kOptHelp,
};

void usage(std::FILE* out, const char* prog) {
  fmt::print(out,
             "Usage: {} [OPTIONS] SOURCE IMAGE\n"
             "Options:\n"
             "  --digest-store=PATH   Store content files in this directory\n"
             "  --verify-existing     Check the full digest of objects already in the store "
             "(damaged ones are replaced)\n"
             "  --use-epoch           Make all mtimes zero\n"
             "  --skip-devices        Don't store device nodes\n"
             "  --skip-xattrs         Don't store file xattrs\n"
             "  --user-xattrs         Only store user.* xattrs\n"
             "  --hardlinks           Keep hardlinks found in SOURCE (default: one inode per "
             "name)\n"
             "  --hash=ALG            fs-verity digests in sha256 (default) or sha512\n"
             "  --print-digest        Print the digest of the image\n"
             "  --print-digest-only   Print the digest of the image, don't write image\n"
             "  --from-file           The source is a dump file, not a directory\n"
             "  --min-version=N       Use this minimal format version (default=0)\n"
             "  --max-version=N       Use this maxium format version (default=1)\n"
             "  --threads=N           Use this to override the default number of threads used "
             "to calculate digest and copy files (default={})\n",
             prog, sys::available_cpus());
}

// strtol with upstream's acceptance rule: non-empty, fully consumed.
bool parse_long(const char* s, long& v) {
  char* end = nullptr;
  errno = 0;
  v = std::strtol(s, &end, 10);
  return *s != '\0' && *end == '\0';
}

int run_mkcomposefs(int argc, char** argv) {
  const char* prog = "mkcomposefs";
  static const option kLongOpts[] = {
      {"skip-xattrs", no_argument, nullptr, kOptSkipXattrs},
      {"user-xattrs", no_argument, nullptr, kOptUserXattrs},
      {"skip-devices", no_argument, nullptr, kOptSkipDevices},
      {"use-epoch", no_argument, nullptr, kOptUseEpoch},
      {"digest-store", required_argument, nullptr, kOptDigestStore},
      {"print-digest", no_argument, nullptr, kOptPrintDigest},
      {"print-digest-only", no_argument, nullptr, kOptPrintDigestOnly},
      {"from-file", no_argument, nullptr, kOptFromFile},
      {"max-version", required_argument, nullptr, kOptMaxVersion},
      {"min-version", required_argument, nullptr, kOptMinVersion},
      {"threads", required_argument, nullptr, kOptThreads},
      {"hardlinks", no_argument, nullptr, kOptHardlinks},
      {"hash", required_argument, nullptr, kOptHash},
      {"verify-existing", no_argument, nullptr, kOptVerifyExisting},
      {"help", no_argument, nullptr, kOptHelp},
      {nullptr, 0, nullptr, 0},
  };
  BuildConfig cfg;
  cfg.program = prog;
  bool print_digest = false, print_digest_only = false, version_set = false;
  long min_version = 0, max_version = 0, threads = sys::available_cpus();
  optind = 1;
  opterr = 1;
  int opt;
  // Leading ':' so a missing value is reported as ':' (upstream prints its own message);
  // -C and -R are in upstream's optstring but unhandled, which ends in usage + exit 1.
  while ((opt = getopt_long(argc, argv, ":CR", kLongOpts, nullptr)) != -1) {
    switch (opt) {
      case kOptUseEpoch:
        cfg.use_epoch = true;
        break;
      case kOptSkipXattrs:
        cfg.skip_xattrs = true;
        break;
      case kOptUserXattrs:
        cfg.user_xattrs = true;
        break;
      case kOptSkipDevices:
        cfg.skip_devices = true;
        break;
      case kOptHardlinks:
        cfg.hardlinks = true;
        break;
      case kOptHash: {
        auto alg = verity::parse_hash_alg(optarg);
        if (!alg) {
          fmt::print(stderr, "Invalid hash algorithm {} (sha256 or sha512)\n", optarg);
          return kExitFailure;
        }
        cfg.hash = *alg;
        break;
      }
      case kOptVerifyExisting:
        cfg.verify_existing = true;
        break;
      case kOptDigestStore:
        cfg.digest_store = optarg;
        break;
      case kOptPrintDigest:
        print_digest = true;
        break;
      case kOptPrintDigestOnly:
        print_digest = print_digest_only = true;
        break;
      case kOptFromFile:
        cfg.from_file = true;
        break;
      case kOptMinVersion:
        version_set = true;
        if (!parse_long(optarg, min_version)) {
          fmt::print(stderr, "Invalid min version {}\n", optarg);
          return kExitFailure;
        }
        break;
      case kOptMaxVersion:
        version_set = true;
        if (!parse_long(optarg, max_version)) {
          fmt::print(stderr, "Invalid max version {}\n", optarg);
          return kExitFailure;
        }
        break;
      case kOptThreads:
        if (!parse_long(optarg, threads)) {
          fmt::print(stderr, "Invalid threads count {}\n", optarg);
          return kExitFailure;
        }
        if (threads <= 0) {
          fmt::print(stderr, "Invalid threads count {}\n", threads);
          return kExitFailure;
        }
        break;
      case kOptHelp:
        usage(stdout, prog);
        return kExitOk;
      case ':':
        fmt::print(stderr, "option needs a value\n");
        return kExitFailure;
      default:
        usage(stderr, prog);
        return kExitFailure;
    }
  }
  // Upstream: if either version option is given, the other one defaults to 0.
  if (!version_set) {
    min_version = 0;
    max_version = 1;
  }
  int nargs = argc - optind;
  char** args = argv + optind;
  if (nargs < 1) {
    fmt::print(stderr, "No source path specified\n");
    usage(stderr, prog);
    return kExitFailure;
  }
  cfg.source = args[0];
  if (cfg.source.empty()) {
    fmt::print(stderr, "{}: Empty source path specified\n", prog);
    return kExitFailure;
  }
  if (nargs > 2) {
    fmt::print(stderr, "Too many arguments\n");
    usage(stderr, prog);
    return kExitFailure;
  }
  if (nargs == 1) {
    if (!print_digest_only) {
      fmt::print(stderr, "No destination path specified\n");
      usage(stderr, prog);
      return kExitFailure;
    }
  } else if (!print_digest_only) {
    cfg.image = args[1];
  } else {
    fmt::print(stderr, "Cannot specify destination path with --print-digest-only\n");
    usage(stderr, prog);
    return kExitFailure;
  }
  if (max_version < min_version) max_version = min_version;
  if (min_version < 0 || max_version > 1) {
    fmt::print(stderr, "{}: cannot write file: Invalid argument\n", prog);
    return kExitFailure;
  }
  cfg.min_version = static_cast<std::uint32_t>(min_version);
  cfg.max_version = static_cast<std::uint32_t>(max_version);
  cfg.threads = static_cast<unsigned>(threads);
  cfg.strict = std::getenv("CFS_PARSE_STRICT") != nullptr;
  cfg.progress = ::isatty(STDERR_FILENO) != 0;

  auto report = build_image(cfg);
  if (!report) {
    fmt::print(stderr, "{}: error: {}\n", prog, report.error().message());
    return kExitFailure;
  }
  if (print_digest) {
    fmt::print("{}\n", report->digest_hex);
    std::fflush(stdout);
  }
  return kExitOk;
}

}  // namespace

CFS_REGISTER_COMMAND("mkcomposefs", "", run_mkcomposefs);

}  // namespace cfs::tools
