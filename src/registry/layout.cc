// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/layout.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <set>

#include "cfs/oci/image.h"
#include "cfs/util/atomic_file.h"
#include "cfs/util/parallel.h"
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
  std::set<std::string> walked;  ///< the index's children walked, by digest
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
        // Each child once: an index may list one many times (4 MiB hold ~25k), and nested up
        // to kMaxIndexDepth that was ~25k^4 fetches from a few small documents.
        if (!walked.insert(c.digest.str()).second) continue;
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
  Collector c{client, ref, blobs, {}, {}, {}, {}, {}};
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

namespace {

// Reads and checks one blob of the layout as a whole (manifests and indexes: small).
Result<std::string> read_layout_manifest(const std::string& dir, const oci::Descriptor& d) {
  const std::string path = dir + "/blobs/" + d.digest.algorithm + "/" + d.digest.hex;
  CFS_ASSIGN(auto bytes, sys::read_file(path));
  if (bytes.size() != d.size || oci::sha256_of(bytes) != d.digest)
    return fail(Errc::kDigestMismatch, path + ": not the manifest " + d.digest.str() + " (" +
                                           std::to_string(d.size) + " bytes) index.json names");
  return bytes;
}

struct Pusher {
  Client& client;
  const Reference& dest;
  const std::string& dir;
  unsigned parallel;
  LayoutPush result;
  std::set<std::string> pushed;
  std::set<std::string> pushed_manifests;  ///< an index's children, by digest

  Status push_blobs(const std::vector<oci::Descriptor>& blobs) {
    std::vector<const oci::Descriptor*> todo;
    for (const auto& b : blobs)
      if (pushed.insert(b.digest.str()).second) todo.push_back(&b);
    std::vector<Result<PushOutcome>> outcomes(todo.size(), PushOutcome::kExisted);
    parallel_for(todo.size(), parallel, [&](std::size_t i) {
      const oci::Descriptor& b = *todo[i];
      const std::string path = dir + "/blobs/" + b.digest.algorithm + "/" + b.digest.hex;
      auto src = FileBlobSource::open(path);
      if (!src) {
        outcomes[i] = fail(std::move(src).error());
      } else if (src->size() != b.size) {
        outcomes[i] =
            fail(Errc::kInvalidInput, path + ": " + std::to_string(src->size()) +
                                          " bytes, the manifest says " + std::to_string(b.size));
      } else {
        outcomes[i] = client.push_blob(dest, b.digest, *src);
      }
    });
    for (auto& o : outcomes) {
      if (!o) return fail(std::move(o).error());
      if (*o == PushOutcome::kExisted)
        ++result.blobs_existed;
      else
        ++result.blobs_uploaded;
    }
    return {};
  }

  // Pushes everything `d` needs, then `d` itself under `ref` (a digest unless top level).
  Status push(const oci::Descriptor& d, const Reference& ref, int depth) {
    if (depth > kMaxIndexDepth)
      return fail(Errc::kUnsupportedFeature, "index " + d.digest.str() + " nested too deeply");
    CFS_ASSIGN(auto bytes, read_layout_manifest(dir, d));
    const std::string what = "manifest " + d.digest.str();
    CFS_ASSIGN(auto kind, oci::manifest_kind(bytes, d.media_type));
    std::string media_type;
    if (kind == oci::ManifestKind::kIndex) {
      CFS_ASSIGN(auto index, oci::parse_index(bytes, what));
      for (const auto& c : index.manifests)
        // Each child once, however many times (and at whatever depth) the index lists it.
        if (pushed_manifests.insert(c.digest.str()).second)
          CFS_TRY(push(c, dest.with_digest(c.digest.str()), depth + 1));
      media_type = index.media_type;
    } else {
      CFS_ASSIGN(auto m, oci::parse_manifest(bytes, what));
      std::vector<oci::Descriptor> blobs{m.config};
      blobs.insert(blobs.end(), m.layers.begin(), m.layers.end());
      CFS_TRY(push_blobs(blobs));
      media_type = m.media_type;
    }
    CFS_ASSIGN(auto got, client.put_manifest(ref, media_type, bytes));
    ++result.manifests;
    if (depth == 0) {
      result.manifest = got;
      result.media_type = media_type;
    }
    return {};
  }
};

}  // namespace

Result<LayoutPush> push_from_layout(Client& client, const std::string& dir, const std::string& tag,
                                    const Reference& dest, unsigned jobs) {
  CFS_ASSIGN(auto raw, sys::read_file(dir + "/index.json"));
  CFS_ASSIGN(auto index, oci::parse_index(std::move(raw), dir + "/index.json"));
  // The image a pull from this layout (oci:DIR[:TAG]) would take.
  CFS_ASSIGN(std::optional<oci::Descriptor> top, oci::layout_entry(index, tag, dir));
  // One entry per platform: a pull chooses by platform; a push names the image it publishes.
  if (!top)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: {} images, one per platform; name one with :TAG", dir,
                            index.manifests.size()));
  Pusher p{client, dest, dir, jobs, {}, {}, {}};
  CFS_TRY(p.push(*top, dest, 0));
  return p.result;
}

}  // namespace cfs::registry
