// SPDX-License-Identifier: Apache-2.0
// `cfs digest` (fs-verity digests computed in userspace, output like `fsverity digest`) and
// `cfs measure` (the kernel's digest, falling back to userspace): argument parsing and printing;
// how many files are spread over the cores is cfs/verity/files.h. With --out-merkle-tree /
// --out-descriptor, files are taken one at a time (each on all cores); descriptors of several
// files are concatenated in argument order, as fsverity-utils does.
// g++ 12 reports a false -Wnull-dereference inside CLI11's inlined std::string code.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "cfs/verity/digest.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cfs/util/hex.h"
#include "cfs/util/json.h"
#include "cfs/util/output.h"
#include "cfs/util/sys.h"
#include "cfs/verity/files.h"
#include "tools/command.h"

namespace cfs::tools {
namespace {

struct Options {
  std::string hash_alg = "sha256";
  std::uint32_t block_size = 4096;
  std::string salt_hex;
  bool compact = false;
  bool json = false;
  unsigned threads = 0;
  std::vector<std::string> files;
  // digest only
  std::optional<std::string> out_tree;
  std::optional<std::string> out_descriptor;
  bool for_builtin_sig = false;
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
  if (measure) return;
  app.add_option("--out-merkle-tree", o.out_tree,
                 "write the Merkle tree, top level first (one FILE only)");
  app.add_option("--out-descriptor", o.out_descriptor,
                 "write the 256-byte descriptor (of several FILEs: concatenated)");
  app.add_flag("--for-builtin-sig", o.for_builtin_sig,
               "print the hex of the message built-in signatures sign");
}

// Where --out-merkle-tree / --out-descriptor go (the publishing rule of cfs/util/output.h):
// errors name the option.
class OutFile {
 public:
  static Result<OutFile> open(const std::string& option, const std::string& path) {
    auto out = Output::open(path, 0644);
    if (!out) return fail(std::move(out).error().with_context(option));
    return OutFile(option, std::move(*out));
  }
  Status write(std::span<const std::uint8_t> bytes) {
    auto r = sys::write_all(out_.fd(), std::as_bytes(bytes));
    if (!r) return fail(std::move(r).error().with_context(option_));
    return {};
  }
  Status commit() {
    auto r = out_.commit();
    if (!r) return fail(std::move(r).error().with_context(option_));
    return {};
  }

 private:
  OutFile(std::string option, Output out) : option_(std::move(option)), out_(std::move(out)) {}
  std::string option_;
  Output out_;
};

// The --out-merkle-tree / --out-descriptor path: each file's tree (one file at a time, on all
// threads) appended to the outputs, which are committed only if every file succeeded.
Status digest_with_outputs(const Options& o, const verity::Params& p, unsigned threads,
                           std::vector<verity::FileDigest>& out) {
  std::optional<OutFile> tree_out;
  std::optional<OutFile> desc_out;
  if (o.out_tree) {
    CFS_ASSIGN(OutFile f, OutFile::open("--out-merkle-tree", *o.out_tree));
    tree_out.emplace(std::move(f));
  }
  if (o.out_descriptor) {
    CFS_ASSIGN(OutFile f, OutFile::open("--out-descriptor", *o.out_descriptor));
    desc_out.emplace(std::move(f));
  }
  CFS_ASSIGN(bool all_ok,
             verity::build_trees(o.files, p, threads, out,
                                 [&](std::size_t, const verity::MerkleTree& t) -> Status {
                                   if (tree_out) CFS_TRY(tree_out->write(t.tree));
                                   if (desc_out) CFS_TRY(desc_out->write(t.descriptor()));
                                   return Status{};
                                 }));
  if (!all_ok) return {};
  if (tree_out) CFS_TRY(tree_out->commit());
  if (desc_out) CFS_TRY(desc_out->commit());
  return {};
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
  std::vector<verity::FileDigest> out;
  if (o.out_tree || o.out_descriptor) {
    if (auto r = digest_with_outputs(o, p, threads, out); !r) {
      fmt::print(stderr, "cfs: error: {}\n", r.error().message());
      return kExitFailure;
    }
  } else {
    out = verity::digest_files(o.files, p, measure, threads);
  }

  int rc = kExitOk;
  std::string buf;
  buf.reserve(n * (o.compact ? 70 : 100));
  if (o.json) buf += "[";
  bool first = true;
  for (std::size_t i = 0; i < n; ++i) {
    const verity::FileDigest& r = out[i];
    if (r.error) {
      fmt::print(stderr, "cfs: error: {}\n", r.error->message());
      rc = kExitFailure;
      continue;
    }
    const verity::Digest& d = *r.digest;
    if (o.json) {
      buf += first ? "\n  " : ",\n  ";
      buf += fmt::format(R"({{"file": {}, "algorithm": "{}", "digest": "{}")",
                         json::string(o.files[i]), verity::hash_alg_name(d.alg), d.hex());
      if (measure)
        buf += fmt::format(R"(, "source": "{}")", r.from_kernel ? "kernel" : "userspace");
      if (o.for_builtin_sig)
        buf += fmt::format(R"(, "formatted_digest": "{}")", to_hex(verity::formatted_digest(d)));
      buf += "}";
      first = false;
    } else if (o.compact) {
      buf += o.for_builtin_sig ? to_hex(verity::formatted_digest(d)) : d.hex();
      buf += '\n';
    } else {
      buf += o.for_builtin_sig ? to_hex(verity::formatted_digest(d)) : d.str();
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
  for (const auto* out : {&o.out_tree, &o.out_descriptor}) {
    if (*out && (*out)->empty()) {
      fmt::print(stderr, "cfs: error: {}: {} needs a file name\nRun 'cfs {} --help' for usage.\n",
                 name, out == &o.out_tree ? "--out-merkle-tree" : "--out-descriptor", name);
      return kExitUsage;
    }
  }
  if (o.out_tree && o.files.size() > 1) {
    // fsverity-utils writes each file's tree over the previous one's (a mix of both remains);
    // descriptors have a fixed size and are simply concatenated.
    fmt::print(stderr,
               "cfs: error: {}: --out-merkle-tree takes a single FILE (got {}); run once per "
               "file\nRun 'cfs {} --help' for usage.\n",
               name, o.files.size(), name);
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
