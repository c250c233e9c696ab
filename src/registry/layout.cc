// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/layout.h"

#include <fcntl.h>

#include <set>

#include "cfs/util/atomic_file.h"
#include "cfs/util/sys.h"
#include "registry/descriptors.h"

namespace cfs::registry {
namespace {

// Nested indexes are legal; real images use one level. Deeper is refused, not followed.
constexpr int kMaxIndexDepth = 4;

Status write_whole(const std::string& path, std::string_view data, bool durable) {
  CFS_ASSIGN(auto out, AtomicFile::create(path, 0644));
  CFS_TRY(sys::write_all(out.fd(), std::as_bytes(std::span(data.data(), data.size()))));
  return out.commit(durable);
}

struct Collector {
  Client& client;
  const Reference& ref;
  const DownloadDir& blobs;
  std::set<std::string> seen;
  std::vector<BlobFetch> fetches;
  DiscardSink discard;
  LayoutCopy result;

  Status store_manifest(const Manifest& m) {
    CFS_TRY(write_whole(blobs.complete_path(m.digest), m.bytes, true));
    ++result.manifests;
    return {};
  }

  Status walk(const Manifest& m, int depth) {
    if (depth > kMaxIndexDepth)
      return fail(Errc::kUnsupportedFeature, "index " + m.digest.str() + " nested too deeply");
    CFS_TRY(store_manifest(m));
    CFS_ASSIGN(auto children,
               detail::manifest_children(m.bytes, m.media_type, "manifest " + m.digest.str()));
    if (detail::is_index_type(m.media_type)) {
      for (const auto& c : children) {
        CFS_ASSIGN(auto child, client.get_manifest(ref.with_digest(c.digest.str())));
        if (child.bytes.size() != c.size)
          return fail(Errc::kDigestMismatch,
                      "manifest " + c.digest.str() + ": " + std::to_string(child.bytes.size()) +
                          " bytes, the index says " + std::to_string(c.size));
        CFS_TRY(walk(child, depth + 1));
      }
      return {};
    }
    for (const auto& c : children)
      if (seen.insert(c.digest.str()).second)
        fetches.push_back(BlobFetch{c.digest, c.size, &discard});
    return {};
  }
};

}  // namespace

Result<LayoutCopy> copy_to_layout(Client& client, const Reference& ref, const std::string& dir,
                                  const std::string& tag) {
  CFS_TRY(sys::mkdirat_p(AT_FDCWD, dir, 0755));
  CFS_ASSIGN(auto blobs, DownloadDir::open(dir + "/blobs"));
  CFS_ASSIGN(auto top, client.get_manifest(ref));
  Collector c{client, ref, blobs, {}, {}, {}, {}};
  CFS_TRY(c.walk(top, 0));
  CFS_TRY(client.fetch_blobs(ref, c.fetches, FetchOptions{&blobs, /*keep=*/true}));
  c.result.manifest = top.digest;
  c.result.media_type = top.media_type;
  c.result.blobs = c.fetches.size();

  CFS_TRY(write_whole(dir + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", true));
  std::string existing;
  if (auto old = sys::read_file(dir + "/index.json"); old) {
    existing = std::move(*old);
  } else if (!old.error().is_errno(ENOENT)) {
    return fail(std::move(old).error());
  }
  Descriptor d;
  d.media_type = top.media_type;
  d.digest = top.digest;
  d.size = top.bytes.size();
  CFS_ASSIGN(auto index, detail::layout_index_with(existing, d, tag));
  CFS_TRY(write_whole(dir + "/index.json", index, true));
  return c.result;
}

}  // namespace cfs::registry
