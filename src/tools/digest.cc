// SPDX-License-Identifier: Apache-2.0
// `cfs digest` (fs-verity digests computed in userspace, output like `fsverity digest`) and
// `cfs measure` (the kernel's digest, falling back to userspace). Many files are spread over
// all cores; a large file is instead split over all cores by itself. With --out-merkle-tree /
// --out-descriptor, files are taken one at a time (each on all cores); descriptors of several
// files are concatenated in argument order, as fsverity-utils does.
// g++ 12 reports a false -Wnull-dereference inside CLI11's inlined std::string code.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "cfs/verity/digest.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cfs/util/aligned_buffer.h"
#include "cfs/util/hex.h"
#include "cfs/util/json.h"
#include "cfs/util/output.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"
#include "cfs/verity/merkle.h"
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
  // digest only
  std::optional<std::string> out_tree;
  std::optional<std::string> out_descriptor;
  bool for_builtin_sig = false;
};

struct Outcome {
  std::optional<verity::Digest> digest;
  std::optional<Error> error;
  bool from_kernel = false;
  bool deferred = false;                  // big file: hashed later with all threads
  std::optional<std::size_t> small_size;  // read whole, waiting for its batch
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

// One file. With `small` (room for a block and a byte), a file of at most one block is only
// read into it: the outcome then has `small_size` set and the caller digests it in a batch.
Outcome digest_one(const char* path, const verity::Params& p, bool measure, bool defer_big,
                   unsigned threads, std::span<std::byte> small = {}) {
  Outcome r;
  const std::string what(path);
  auto fd = sys::open(what, O_RDONLY);
  if (!fd) {
    r.error = std::move(fd).error();
    return r;
  }
  if (measure) {
    // `cfs measure` reports the kernel's digest whatever its algorithm.
    auto m = verity::kernel_measurement(fd->get(), what, std::nullopt);
    if (!m) {
      r.error = std::move(m).error();
      return r;
    }
    if (*m) {
      r.digest = **m;
      r.from_kernel = true;
      return r;
    }
  }
  if (!small.empty()) {
    auto n = verity::read_one_block(fd->get(), p, small, what);
    if (n && *n) {
      r.small_size = **n;
      return r;
    }
    if (!n && !n.error().is_errno(ESPIPE)) {
      r.error = std::move(n).error();
      return r;
    }
  }
  const std::uint64_t limit = defer_big ? kBigFile - 1 : std::numeric_limits<std::uint64_t>::max();
  auto d = verity::digest_fd_up_to(fd->get(), p, limit, what, threads);
  if (!d)
    r.error = std::move(d).error();
  else if (*d)
    r.digest = **d;
  else
    r.deferred = true;
  return r;
}

// The default path: small files spread over the threads, then big ones each on all threads.
// Each worker claims runs of files; the files of one block in a run are read first and then
// digested together, interleaved (verity::digest_small_many).
void digest_all(const Options& o, const verity::Params& p, bool measure, unsigned threads,
                std::vector<Outcome>& out) {
  const std::size_t n = o.files.size();
  {
    constexpr std::size_t kRun = verity::kSmallBatchMax;
    // A block and one byte more (to see EOF), each slot starting on a page boundary.
    const std::size_t slot_size = (p.block_size + 1 + AlignedBuffer::kAlign - 1) /
                                  AlignedBuffer::kAlign * AlignedBuffer::kAlign;
    std::atomic<std::size_t> next{0};
    const bool parallel = threads > 1 && n > 1;
    auto worker = [&] {
      AlignedBuffer slots(kRun * slot_size);
      std::array<std::span<const std::byte>, kRun> in;
      std::array<verity::Digest, kRun> digests;
      std::array<std::size_t, kRun> which;
      for (std::size_t b; (b = next.fetch_add(kRun, std::memory_order_relaxed)) < n;) {
        std::size_t pending = 0;
        for (std::size_t i = b; i < std::min(n, b + kRun); ++i) {
          const std::span<std::byte> slot =
              slots.get(kRun * slot_size).subspan(pending * slot_size, p.block_size + 1);
          out[i] =
              digest_one(o.files[i].c_str(), p, measure, parallel, parallel ? 1 : threads, slot);
          if (out[i].small_size) {
            in[pending] = slot.first(*out[i].small_size);
            which[pending++] = i;
          }
        }
        verity::digest_small_many(std::span(in.data(), pending), p,
                                  std::span(digests.data(), pending));
        for (std::size_t k = 0; k < pending; ++k) out[which[k]].digest = digests[k];
      }
    };
    std::vector<std::jthread> pool;
    if (parallel)
      for (unsigned t = 1; t < std::min<std::size_t>(threads, (n + kRun - 1) / kRun); ++t)
        pool.emplace_back(worker);
    worker();
  }
  for (std::size_t i = 0; i < n; ++i)
    if (out[i].deferred) out[i] = digest_one(o.files[i].c_str(), p, measure, false, threads);
}

// The --out-merkle-tree / --out-descriptor path: whole trees are built (one file at a time, on
// all threads) and appended to the outputs. After a file fails nothing more is written, and the
// outputs are committed only if every file succeeded.
Status digest_with_outputs(const Options& o, const verity::Params& p, unsigned threads,
                           std::vector<Outcome>& out) {
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
  bool all_ok = true;
  for (std::size_t i = 0; i < o.files.size(); ++i) {
    const std::string& what = o.files[i];
    auto fd = sys::open(what, O_RDONLY | O_CLOEXEC);
    if (!fd) {
      out[i].error = std::move(fd).error();
      all_ok = false;
      continue;
    }
    auto t = verity::build_merkle_tree(fd->get(), p, what, threads);
    if (!t) {
      out[i].error = std::move(t).error();
      all_ok = false;
      continue;
    }
    out[i].digest = t->digest;
    if (!all_ok) continue;
    if (tree_out) CFS_TRY(tree_out->write(t->tree));
    if (desc_out) CFS_TRY(desc_out->write(t->descriptor()));
  }
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
  std::vector<Outcome> out(n);
  if (o.out_tree || o.out_descriptor) {
    if (auto r = digest_with_outputs(o, p, threads, out); !r) {
      fmt::print(stderr, "cfs: error: {}\n", r.error().message());
      return kExitFailure;
    }
  } else {
    digest_all(o, p, measure, threads, out);
  }

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
