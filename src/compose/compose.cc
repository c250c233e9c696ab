// SPDX-License-Identifier: Apache-2.0
#include "cfs/compose/compose.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "cfs/dump/parse.h"
#include "cfs/erofs/writer.h"
#include "cfs/scan/scan.h"
#include "cfs/store/object_store.h"
#include "cfs/util/output.h"
#include "cfs/util/sys.h"

namespace cfs::compose {
namespace {

// Adds each file to the store as soon as the scan has digested it, from the scan's own buffer
// when it has the whole file, so the tree is read once instead of twice.
class StoreSink final : public scan::FileSink {
 public:
  StoreSink(store::ObjectStore& store, store::StoreCounters& counters)
      : store_(store), counters_(counters) {}

  Status file_digested(const verity::Digest& digest, int fd, std::span<const std::byte> content,
                       const std::string& display) override {
    auto added = content.size() > 0 ? store_.add_object_bytes(digest, content, &counters_)
                                    : store_.add_object(digest, fd, display, &counters_);
    if (!added) {
      std::lock_guard lock(mu_);
      if (!error_) error_ = added.error();
      return fail(std::move(added).error());
    }
    return {};
  }

  /// The store's own failure, if the scan stopped because of one.
  std::optional<Error> error() const {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  store::ObjectStore& store_;
  store::StoreCounters& counters_;
  mutable std::mutex mu_;
  std::optional<Error> error_;
};

// Distinct digests among the files backed by objects.
std::uint64_t distinct_objects(const scan::ScanResult& scanned) {
  std::vector<verity::Digest> digests;
  digests.reserve(scanned.external_files.size());
  for (const auto& f : scanned.external_files) digests.push_back(*scanned.tree.node(f.node).digest);
  std::sort(digests.begin(), digests.end());
  return static_cast<std::uint64_t>(std::unique(digests.begin(), digests.end()) - digests.begin());
}

}  // namespace

Result<BuildReport> build_image(const BuildConfig& cfg, BuildProgress* progress) {
  BuildReport report;
  BuildProgress own;
  BuildProgress& live = progress ? *progress : own;
  // Open the output first, as upstream does, so an unwritable destination fails before any
  // work; unlike upstream, nothing appears under the final name until the image is complete.
  std::optional<Output> out;
  int out_fd = cfg.image_fd;
  if (cfg.image) {
    if (*cfg.image == "-" && ::isatty(STDOUT_FILENO))
      return fail(Errc::kInvalidInput, "stdout is a tty.  Refusing to use it");
    auto f = Output::open(*cfg.image, 0644);
    if (!f) return fail(std::move(f).error().with_context("failed to open output file"));
    out.emplace(std::move(*f));
    out_fd = out->fd();
  }

  Tree tree;
  if (cfg.from_file) {
    dump::ParseOptions po;
    po.strict = cfg.strict;
    po.source_name = cfg.source == "-" ? "<stdin>" : cfg.source;
    CFS_ASSIGN(tree, dump::parse_file(cfg.source, po));
    report.nodes = tree.size();
  } else {
    scan::ScanOptions so;
    so.use_epoch = cfg.use_epoch;
    so.skip_devices = cfg.skip_devices;
    so.skip_xattrs = cfg.skip_xattrs;
    so.user_xattrs = cfg.user_xattrs;
    so.hardlinks = cfg.hardlinks;
    so.hash = cfg.hash;
    so.threads = cfg.threads;
    so.counters = &live.scan;
    std::optional<store::ObjectStore> store;
    store::StoreCounters& sc = live.store;
    std::optional<StoreSink> sink;
    if (cfg.digest_store) {
      CFS_ASSIGN(auto opened, store::ObjectStore::open(*cfg.digest_store));
      store.emplace(std::move(opened));
      store->set_verify_existing(cfg.verify_existing);
      sink.emplace(*store, sc);
      so.sink = &*sink;
      live.uses_store = true;
    }
    Result<scan::ScanResult> scanned = scan::scan_directory(cfg.source, so);
    if (!scanned) {
      if (sink) {
        if (auto store_error = sink->error())
          return fail(std::move(*store_error).with_context("cannot fill store"));
      }
      // Upstream's wording: "error accessing PATH: strerror".
      const Error& e = scanned.error();
      return fail(Error(e.code(), "error accessing " + e.context()));
    }
    report.nodes = scanned->tree.size();
    report.external_files = scanned->external_files.size();

    if (store) {
      // Objects must be durable before an image naming them is published (see object_store.h).
      CFS_TRY(store->sync());
      // A file whose content another file of the tree already added counts once, as
      // add_objects() would count it: objects added, and distinct objects already present.
      report.objects_added = sc.added.load();
      report.objects_replaced = sc.replaced.load();
      report.objects_existed =
          distinct_objects(*scanned) - report.objects_added - report.objects_replaced;
      report.bytes_added = sc.bytes_added.load();
    }
    tree = std::move(scanned->tree);
    std::vector<scan::SourceFile>().swap(scanned->external_files);
    // The scan's transient per-directory records were many small allocations, now free but
    // still resident; hand them back before the writer allocates its (large, mmap'd) buffers,
    // or both count towards the peak RSS.
    ::malloc_trim(0);
  }

  erofs::WriteOptions wo;
  wo.min_version = cfg.min_version;
  wo.max_version = cfg.max_version;
  wo.hash = cfg.hash;
  auto written = erofs::write_image(tree, wo, out_fd);
  if (!written) return fail(std::move(written).error().with_context("cannot write file"));
  if (out) {
    auto st = out->commit(true);
    if (!st) return fail(std::move(st).error().with_context("close output file"));
  }
  report.digest_hex = written->digest.hex();
  report.image_size = written->size;
  report.version = written->version;
  return report;
}

}  // namespace cfs::compose
