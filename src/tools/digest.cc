// SPDX-License-Identifier: Apache-2.0
// `cfs digest` (fs-verity digests computed in userspace, output like `fsverity digest`) and
// `cfs measure` (the kernel's digest, falling back to userspace). Many files are spread over
// all cores; a large file is instead split over all cores by itself.
// g++ 12 reports a false -Wnull-dereference inside CLI11's inlined std::string code.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "cfs/verity/digest.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cfs/util/hex.h"
#include "cfs/util/sys.h"
#include "cfs/verity/kernel.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

// Files at least this large are hashed one at a time with every thread, after the rest.
constexpr std::uint64_t kBigFile = 8ull << 20;

struct Options {
  std::string hash_alg = "sha256";
  std::uint32_t block_size = 4096;
  std::string salt_hex;
  bool compact = false;
  bool json = false;
  unsigned threads = 0;
  std::vector<std::string> files;
};

struct Outcome {
  std::optional<verity::Digest> digest;
  std::optional<Error> error;
  bool from_kernel = false;
  bool deferred = false;  // big file: hashed later with all threads
};

void add_common(CLI::App& app, Options& o, bool measure) {
  app.add_option("--hash-alg", o.hash_alg,
                 measure ? "hash algorithm for the userspace fallback: sha256 (default) or sha512"
                         : "hash algorithm: sha256 (default) or sha512");
  app.add_option("--block-size", o.block_size, "Merkle tree block size in bytes (default 4096)");
  app.add_option("--salt", o.salt_hex, "salt in hex, up to 32 bytes (default none)");
  app.add_flag("--compact", o.compact, "print only the hex digest");
  app.add_flag("--json", o.json, "print a JSON array of results");
  app.add_option("--threads", o.threads, "threads to use (default: all CPUs)");
  app.add_option("FILE", o.files, "files to digest")->required();
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      out += fmt::format("\\u{:04x}", u);
    } else {
      out += c;
    }
  }
  return out;
}

Outcome digest_one(const char* path, const verity::Params& p, bool measure, bool defer_big,
                   unsigned threads) {
  Outcome r;
  const std::string what(path);
  auto fd = sys::open(what, O_RDONLY);
  if (!fd) {
    r.error = std::move(fd).error();
    return r;
  }
  if (measure) {
    auto m = verity::measure_verity(fd->get(), what);
    if (m) {
      r.digest = *m;
      r.from_kernel = true;
      return r;
    }
    if (!verity::is_verity_unavailable(m.error())) {
      r.error = std::move(m).error();
      return r;
    }
  }
  if (defer_big) {
    auto st = sys::fstat(fd->get(), what);
    if (st && S_ISREG(st->st_mode) && static_cast<std::uint64_t>(st->st_size) >= kBigFile) {
      r.deferred = true;
      return r;
    }
  }
  auto d = verity::digest_fd(fd->get(), p, what, threads);
  if (d)
    r.digest = *d;
  else
    r.error = std::move(d).error();
  return r;
}

int run(const Options& o, bool measure) {
  verity::Params p;
  auto alg = verity::parse_hash_alg(o.hash_alg);
  if (!alg) {
    fmt::print(stderr, "cfs: error: --hash-alg: {}\n", alg.error().message());
    return kExitFailure;
  }
  p.alg = *alg;
  p.block_size = o.block_size;
  if (!o.salt_hex.empty()) {
    auto salt = from_hex(o.salt_hex);
    if (!salt) {
      fmt::print(stderr, "cfs: error: --salt: '{}' is not a valid hex string\n", o.salt_hex);
      return kExitFailure;
    }
    p.salt = std::move(*salt);
  }
  if (auto v = verity::validate(p); !v) {
    fmt::print(stderr, "cfs: error: {}\n", v.error().message());
    return kExitFailure;
  }

  const std::size_t n = o.files.size();
  const unsigned threads = o.threads == 0 ? sys::available_cpus() : o.threads;
  std::vector<Outcome> out(n);
  // Small files: one file per worker at a time, claimed in runs so the counter stays cold.
  {
    constexpr std::size_t kRun = 16;
    std::atomic<std::size_t> next{0};
    const bool parallel = threads > 1 && n > 1;
    auto worker = [&] {
      for (std::size_t b; (b = next.fetch_add(kRun, std::memory_order_relaxed)) < n;)
        for (std::size_t i = b; i < std::min(n, b + kRun); ++i)
          out[i] = digest_one(o.files[i].c_str(), p, measure, parallel, 1);
    };
    if (parallel) {
      std::vector<std::jthread> pool;
      for (unsigned t = 1; t < std::min<std::size_t>(threads, (n + kRun - 1) / kRun); ++t)
        pool.emplace_back(worker);
      worker();
    } else {
      for (std::size_t i = 0; i < n; ++i)
        out[i] = digest_one(o.files[i].c_str(), p, measure, false, threads);
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    if (out[i].deferred) out[i] = digest_one(o.files[i].c_str(), p, measure, false, threads);

  int rc = kExitOk;
  std::string buf;
  buf.reserve(n * (o.compact ? 70 : 100));
  if (o.json) buf += "[";
  bool first = true;
  for (std::size_t i = 0; i < n; ++i) {
    const Outcome& r = out[i];
    if (r.error) {
      fmt::print(stderr, "cfs: error: {}\n", r.error->message());
      rc = kExitFailure;
      continue;
    }
    const verity::Digest& d = *r.digest;
    if (o.json) {
      buf += first ? "\n  " : ",\n  ";
      buf += fmt::format(R"({{"file": "{}", "algorithm": "{}", "digest": "{}")",
                         json_escape(o.files[i]), verity::hash_alg_name(d.alg), d.hex());
      if (measure)
        buf += fmt::format(R"(, "source": "{}")", r.from_kernel ? "kernel" : "userspace");
      buf += "}";
      first = false;
    } else if (o.compact) {
      buf += d.hex();
      buf += '\n';
    } else {
      buf += d.str();
      buf += ' ';
      buf += o.files[i];
      buf += '\n';
    }
  }
  if (o.json) buf += first ? "]\n" : "\n]\n";
  if (std::fwrite(buf.data(), 1, buf.size(), stdout) != buf.size() || std::fflush(stdout) != 0) {
    fmt::print(stderr, "cfs: error: writing output failed\n");
    return kExitFailure;
  }
  return rc;
}

int parse_and_run(int argc, char** argv, bool measure) {
  const char* name = measure ? "measure" : "digest";
  CLI::App app(measure ? "Print the fs-verity digest of files as the kernel measures it, "
                         "computing it in userspace where the kernel has none"
                       : "Compute fs-verity digests of files, as `fsverity digest` does",
               std::string("cfs ") + name);
  Options o;
  add_common(app, o, measure);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "cfs: error: {}: {}\nRun 'cfs {} --help' for usage.\n", name, e.what(),
               name);
    return kExitUsage;
  }
  return run(o, measure);
}

int run_digest(int argc, char** argv) { return parse_and_run(argc, argv, false); }
int run_measure(int argc, char** argv) { return parse_and_run(argc, argv, true); }

}  // namespace

CFS_REGISTER_COMMAND("digest", "compute fs-verity digests of files", run_digest);
CFS_REGISTER_COMMAND("measure", "fs-verity digests as the kernel reports them", run_measure);

}  // namespace cfs::tools
