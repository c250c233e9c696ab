// SPDX-License-Identifier: Apache-2.0
// From a lazy mount's SOURCE to a registered image (see cfs/registry/lazy_image.h).
#include "cfs/registry/lazy_image.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <span>
#include <utility>
#include <variant>

#include "cfs/ocirepo/images.h"
#include "cfs/ocirepo/names.h"
#include "cfs/registry/loader_graph.h"
#include "cfs/registry/pull.h"
#include "cfs/repo/lazy.h"
#include "cfs/util/mapped_file.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"

namespace cfs::registry {
namespace {

constexpr std::string_view kIndexPart = "index";
/// The compact index (ocirepo::kCompactIndexMediaType) as fetched, when the lazy metadata carried
/// one (since session 15), instead of the JSON index part: the image object completes it. A
/// registration has one of the two (both only after a crash while one replaced the other: both
/// then describe the image, and the compact one is read).
constexpr std::string_view kCompactIndexPart = "index2";
/// The loader graph document as fetched (decoded), when the lazy metadata has one: its positions
/// are the index part's objects, so it is only ever kept with the index it was fetched with.
constexpr std::string_view kLoaderGraphPart = "loader-graph";

/// The image ref a lazy registration of SOURCE gets: one component below images/refs/lazy/.
std::string lazy_ref(std::string_view source) { return "lazy/" + ocirepo::encode_tag(source); }

/// REPO/cfs-lazy/<name>: the file a deferred registration of SOURCE holds locked.
std::string registering_name(std::string_view source) {
  return ocirepo::encode_tag(source) + ".registering";
}

/// The "source" part: the registry repository and the manifest the image came from.
std::string source_json(const Reference& ref, const oci::ContentDigest& manifest) {
  nlohmann::json j;
  j["reference"] = ref.with_digest(manifest.str()).str();
  j["manifest"] = manifest.str();
  return j.dump() + "\n";
}

Result<Reference> source_from_json(const std::string& text, const std::string& what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("reference") || !j["reference"].is_string())
    return fail(Errc::kCorruptImage, what + ": no \"reference\"");
  return parse_reference(j["reference"].get<std::string>());
}

/// What the repository holds under an object's name, against the bytes it should hold.
enum class Held { kNone, kSame, kOther };

Result<Held> held_object(const repo::Repository& repo, const verity::Digest& d,
                         std::span<const std::byte> bytes) {
  const std::string rel = repo.object_path(d);
  auto fd = sys::openat(repo.fd(), rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (!fd && fd.error().is_errno(ENOENT)) return Held::kNone;
  if (!fd) return Held::kOther;  // a symlink or worse: replaced like wrong bytes
  CFS_ASSIGN(auto st, sys::fstat(fd->get(), repo.path() + "/" + rel));
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != bytes.size())
    return Held::kOther;
  if (bytes.empty()) return Held::kSame;
  CFS_ASSIGN(auto map, MappedFile::map_fd(fd->get(), repo.path() + "/" + rel));
  const auto have = map.bytes();
  return have.size() == bytes.size() && std::equal(have.begin(), have.end(), bytes.begin())
             ? Held::kSame
             : Held::kOther;
}

/// Writes a registration: the image object, the parts (source last), then the image and its ref.
Status write_registration(repo::Repository& repo, const PendingRegistration& p,
                          const std::function<void(std::string_view)>& trace) {
  const verity::Digest& image = p.image;
  const auto erofs_bytes = p.erofs.bytes();
  // The name may hold a file already: the same bytes (an earlier registration or pull: nothing
  // to write), or other bytes (damaged or tampered; an insecure repository checks nothing at
  // rest), which commit_object would keep: they are replaced by the checked ones, so that the
  // repository holds what this mount serves and fsck finds it clean.
  CFS_ASSIGN(Held held, held_object(repo, image, erofs_bytes));
  if (held != Held::kSame) {
    CFS_ASSIGN(repo::NewObject obj, repo.create_object());
    CFS_TRY(sys::write_all(obj.fd(), erofs_bytes));
    // fetch_lazy_metadata computed the fs-verity digest of exactly these bytes (the
    // repository's algorithm, checked by register_metadata) and found it equal to the index's:
    // no second pass over them.
    if (held == Held::kNone) {
      CFS_TRY(repo.commit_object(std::move(obj), image));
    } else {
      // Durable before it takes the name over: a crash then leaves the old file or this one.
      CFS_TRY(sys::fsync(obj.fd(), repo.path() + "/" + repo.object_path(image) + " (new)"));
      CFS_TRY(repo.replace_object(std::move(obj), image));
    }
  }
  // The image object and its name durable before the image's name: this object alone
  // (publish_image's one syncfs would also flush whatever else the filesystem holds dirty, on
  // the critical path of the mount; fetched objects are synced on their own).
  CFS_TRY(repo.sync_object(image));
  // A graph kept by an earlier registration of this image describes the index kept then (its
  // positions), which the one written now may not be (another push of the same image): it goes
  // before the index is replaced, so a crash at any point leaves a graph only beside its own
  // index, or none (mounted as before the graph existed).
  if (repo::has_lazy_part(repo, image, kLoaderGraphPart)) {
    CFS_TRY(repo::remove_lazy_part(repo, image, kLoaderGraphPart));
  }
  // The document as fetched (digest-checked, parsed strictly): re-encoding 10^5 objects would
  // only spend time.
  // The new kind first, then the other kind's part of an earlier registration (gone or not, each
  // describes this image).
  const auto [index_part, other_part] = p.compact_index ? std::pair{kCompactIndexPart, kIndexPart}
                                                        : std::pair{kIndexPart, kCompactIndexPart};
  CFS_TRY(repo::write_lazy_part(repo, image, index_part, p.index_json));
  if (repo::has_lazy_part(repo, image, other_part)) {
    CFS_TRY(repo::remove_lazy_part(repo, image, other_part));
  }
  if (!p.loader_graph_json.empty()) {
    CFS_TRY(repo::write_lazy_part(repo, image, kLoaderGraphPart, p.loader_graph_json));
  }
  CFS_TRY(
      repo::write_lazy_part(repo, image, repo::kLazySourcePart, source_json(p.ref, p.manifest)));
  CFS_TRY(repo.link_image(image));
  CFS_TRY(repo.set_ref(repo::Kind::kImage, lazy_ref(p.source), image.hex()));
  if (trace) trace("registered");
  return {};
}

/// Registers fetched lazy metadata (write_registration), now or, with `defer`, by the caller
/// (LazyImage::pending).
Result<LazyImage> register_metadata(repo::Repository& repo, const Reference& ref,
                                    std::string_view source, LazyMetadata meta,
                                    const std::function<void(std::string_view)>& trace,
                                    bool defer = false) {
  if (meta.index.algorithm != repo.algorithm())
    return fail(Errc::kUnsupportedFeature,
                fmt::format("{}: its objects are {} digests, the repository's {}", source,
                            verity::hash_alg_name(meta.index.algorithm),
                            verity::hash_alg_name(repo.algorithm())));
  LazyImage out;
  out.image = meta.index.image;
  out.source = ref;
  out.link = meta.link;
  // The checked bytes, for the mount to serve: the memfd they were decoded into, sealed before
  // anyone else could hold it (it was this process's alone until then), so what is served is
  // what was digested, as verity::open_checked's sealed copy, without digesting it again or
  // copying it (the registration writes the image object from the same memfd).
  CFS_ASSIGN(out.erofs, sys::dup(meta.erofs.fd.get()));
  PendingRegistration p;
  p.ref = ref;
  p.source = std::string(source);
  p.manifest = meta.manifest.digest;
  p.image = meta.index.image;
  p.erofs = std::move(meta.erofs);
  p.index_json = std::move(meta.index_json);
  p.compact_index = meta.compact_index;
  p.loader_graph_json = std::move(meta.loader_graph_json);
  out.index = std::move(meta.index);
  out.loader_graph = std::move(meta.loader_graph);
  if (defer) {
    // Locked before the caller can serve (and so before anyone can act on the mount): see
    // PendingRegistration::lock. A file left by a killed mount is unlocked (gc removes it).
    CFS_TRY(sys::mkdirat_p(repo.fd(), std::string(repo::kLazyDir), 0700));
    CFS_ASSIGN(p.lock,
               sys::openat(repo.fd(), std::string(repo::kLazyDir) + "/" + registering_name(source),
                           O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    CFS_TRY(sys::flock(p.lock.get(), LOCK_EX, registering_name(source)).map([](bool) {}));
    out.pending = std::move(p);
  } else {
    CFS_TRY(write_registration(repo, p, trace));
  }
  return out;
}

/// The image NAME (as given to an earlier lazy mount, a ref, a tag or a digest) resolves to.
Result<verity::Digest> resolve(const repo::Repository& repo, std::string_view name) {
  if (auto d = repo.resolve_image(lazy_ref(name))) return *d;
  if (auto d = repo.resolve_image(name)) return *d;
  if (auto img = ocirepo::open_image(repo, std::string(name)); img && img->image)
    return *img->image;
  return fail(Errc::kObjectMissing, fmt::format("no image '{}' in {}", name, repo.path()));
}

/// An image registered by an earlier lazy mount, with the source and index kept beside it;
/// nullopt when it has no lazy parts.
Result<std::optional<LazyImage>> registered(const repo::Repository& repo,
                                            const verity::Digest& image) {
  CFS_ASSIGN(auto src, repo::read_lazy_part(repo, image, repo::kLazySourcePart));
  if (!src) return std::optional<LazyImage>{};
  // The index's size bound before it is read, as for an index from a registry
  // (fetch_lazy_metadata): the image is the repository's (its superblock and size bound its
  // objects); the manifest is not at hand, so the layers are counted at the parser's limit.
  CFS_ASSIGN(auto fd, repo.open_object(image));
  const std::string image_path = repo.path() + "/" + repo.object_path(image);
  CFS_ASSIGN(auto map, MappedFile::map_fd(fd.get(), image_path));
  CFS_ASSIGN_CTX(const std::uint64_t objects,
                 ocirepo::max_image_objects(map.bytes(), repo.algorithm()), image_path);
  const std::uint64_t bound = std::min(
      ocirepo::kMaxObjectIndexSize,
      ocirepo::object_index_size_bound(repo.algorithm(), objects, ocirepo::kMaxIndexLayers));
  LazyImage out;
  out.image = image;
  CFS_ASSIGN(auto compact, repo::read_lazy_part(
                               repo, image, kCompactIndexPart,
                               std::min(ocirepo::kMaxObjectIndexSize,
                                        ocirepo::compact_index_size_bound(
                                            repo.algorithm(), objects, ocirepo::kMaxIndexLayers))));
  if (compact) {
    CFS_ASSIGN(auto erofs, erofs::Image::open_fd(fd.get(), image_path));
    CFS_ASSIGN(out.index, ocirepo::parse_compact_index(*compact, erofs,
                                                       "lazy index of " + image.hex(), image));
  } else {
    CFS_ASSIGN(auto idx, repo::read_lazy_part(repo, image, kIndexPart, bound));
    if (!idx) return std::optional<LazyImage>{};
    CFS_ASSIGN(out.index, ocirepo::parse_object_index(*idx, "lazy index of " + image.hex()));
  }
  CFS_ASSIGN(out.source, source_from_json(*src, "lazy source of " + image.hex()));
  // The loader graph kept with the index (none from a cfs before it), under the bounds a
  // fetched one has: its size before it is read, then the strict parse against this index.
  CFS_ASSIGN(auto graph, repo::read_lazy_part(repo, image, kLoaderGraphPart, kMaxLoaderGraphSize));
  if (graph) {
    CFS_ASSIGN(out.loader_graph,
               parse_loader_graph(*graph, out.index.objects.size(),
                                  fmt::format("{}/{}/{}.{}", repo.path(), repo::kLazyDir,
                                              image.hex(), kLoaderGraphPart)));
  }
  return std::optional<LazyImage>(std::move(out));
}

/// NAME registered by an earlier lazy mount (offline use: never asks the registry).
Result<LazyImage> registered(const repo::Repository& repo, std::string_view name) {
  CFS_ASSIGN(verity::Digest image, resolve(repo, name));
  CFS_ASSIGN(auto found, registered(repo, image));
  if (!found)
    return fail(Errc::kObjectMissing,
                fmt::format("{}: no lazy metadata in the repository; use cfs oci pull", name));
  return std::move(*found);
}

/// NAME in the repository: registered lazily before, or pulled whole from a registry whose lazy
/// metadata for exactly that manifest is registered now (the fetched EROFS must be the image
/// NAME names: the tag may have moved on in the registry, the manifest digest cannot).
Result<LazyImage> local_image(repo::Repository& repo, Client& client, std::string_view name,
                              const LazyFetchOptions& fetch) {
  CFS_ASSIGN(verity::Digest image, resolve(repo, name));
  CFS_ASSIGN(auto found, registered(repo, image));
  if (found) return std::move(*found);
  CFS_ASSIGN(auto origin, repo::read_lazy_part(repo, image, repo::kLazyOriginPart));
  if (!origin)
    return fail(Errc::kObjectMissing,
                fmt::format("{}: no registry is recorded for this image (pulled from a layout or "
                            "an archive, or by an older cfs), so its objects cannot be fetched; "
                            "use `cfs oci mount --lazy docker://…` or `cfs oci pull`",
                            name));
  CFS_ASSIGN(Reference ref, source_from_json(*origin, "origin of " + image.hex()));
  const std::string pinned = ref.str();
  LazyFetchOptions remembering = fetch;
  remembering.memo = &repo;
  CFS_ASSIGN(auto meta, find_lazy_metadata(client, pinned, remembering));
  if (!std::holds_alternative<LazyMetadata>(meta))
    return fail(Errc::kObjectMissing,
                fmt::format("{}: {} has no lazy metadata, so objects come only whole: use `cfs oci "
                            "pull {}`",
                            name, pinned, pinned));
  auto& m = std::get<LazyMetadata>(meta);
  if (m.index.image != image)
    return fail(Errc::kCorruptImage,
                fmt::format("{}: the lazy metadata of {} describes image {}, the repository holds "
                            "{} (pulled with other options?)",
                            name, pinned, m.index.image.hex(), image.hex()));
  return register_metadata(repo, ref, name, std::move(m), fetch.trace);
}

/// The registry could not be reached (not: it answered something wrong).
bool unreachable(const Error& e) {
  for (int err : {ECONNREFUSED, ETIMEDOUT, ECONNRESET, EHOSTUNREACH, ENETUNREACH})
    if (e.is_errno(err)) return true;
  return false;
}

}  // namespace

Status record_origin(repo::Repository& repo, const verity::Digest& image, const Reference& ref,
                     const oci::ContentDigest& manifest) {
  return repo::write_lazy_part(repo, image, repo::kLazyOriginPart, source_json(ref, manifest));
}

Result<std::optional<LazyImage>> lazy_registration(const repo::Repository& repo,
                                                   std::string_view source) {
  if (auto held =
          sys::openat(repo.fd(), std::string(repo::kLazyDir) + "/" + registering_name(source),
                      O_RDONLY | O_NOFOLLOW | O_CLOEXEC))
    CFS_TRY(sys::flock(held->get(), LOCK_SH, registering_name(source)).map([](bool) {}));
  auto image = repo.resolve_image(lazy_ref(source));
  if (!image) return std::optional<LazyImage>{};
  return registered(repo, *image);
}

Status forget_lazy_registration(repo::Repository& repo, const verity::Digest& image,
                                std::string_view source) {
  CFS_TRY(repo::remove_lazy_part(repo, image, repo::kLazySourcePart));
  CFS_TRY(repo::remove_lazy_part(repo, image, kIndexPart));
  CFS_TRY(repo::remove_lazy_part(repo, image, kCompactIndexPart));
  CFS_TRY(repo::remove_lazy_part(repo, image, kLoaderGraphPart));
  auto st = repo.remove_ref(repo::Kind::kImage, lazy_ref(source));
  if (!st && !st.error().is_errno(ENOENT)) return st;
  return {};
}

Status complete_registration(repo::Repository& repo, PendingRegistration pending,
                             const std::function<void(std::string_view)>& trace) {
  Status st = write_registration(repo, pending, trace);
  // Unlinked, then unlocked (by the close): a waiter that opened it meanwhile finds the
  // registration complete (or failed: then the source has no registration, as before).
  (void)sys::unlinkat(repo.fd(),
                      std::string(repo::kLazyDir) + "/" + registering_name(pending.source), 0);
  return st;
}

void abandon_registration(repo::Repository& repo, PendingRegistration pending) {
  // Unlinked, then unlocked (by the close): a waiter finds no registration, as before the mount.
  (void)sys::unlinkat(repo.fd(),
                      std::string(repo::kLazyDir) + "/" + registering_name(pending.source), 0);
}

Result<LazyImage> open_lazy_image(repo::Repository& repo, Client& client, std::string_view source,
                                  const LazyImageOptions& options) {
  if (!source.starts_with("docker://")) return local_image(repo, client, source, options.fetch);
  auto notice = [&](const std::string& line) {
    if (options.notice) options.notice(line);
  };
  CFS_ASSIGN(Reference ref, parse_reference(source));
  const LazyFetchOptions& fetch = options.fetch;
  // An earlier registration of this source to serve if the registry cannot be reached. Never
  // when a seal is required: the registry is where it would be checked.
  const bool can_fall_back =
      !fetch.require_seal && !fetch.cert_file && repo.resolve_image(lazy_ref(source)).has_value();
  // With one, a registry that is down costs the user about the --timeout a read would wait for
  // it, not the client's retries (31 s): only the metadata phase is bounded, and the bound is
  // gone before anything else (a whole pull, the mount's fetches) uses the client.
  struct GiveUp {
    Client* client = nullptr;
    ~GiveUp() {
      if (client) client->give_up_at(std::nullopt);
    }
  } give_up;
  if (can_fall_back && options.offline_after_s > 0) {
    give_up.client = &client;
    client.give_up_at(std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                          std::chrono::duration<double>(options.offline_after_s)));
  }
  LazyFetchOptions remembering = fetch;
  remembering.memo = &repo;
  auto found = find_lazy_metadata(client, source, remembering);
  client.give_up_at(std::nullopt);
  give_up.client = nullptr;
  if (found && std::holds_alternative<LazyMetadata>(*found))
    return register_metadata(repo, ref, source, std::get<LazyMetadata>(std::move(*found)),
                             fetch.trace, options.defer_registration);
  if (found && !options.full_pull)
    return fail(Errc::kObjectMissing,
                fmt::format("{}: the image has no lazy metadata (push it with `cfs oci push`); use "
                            "`cfs oci pull`",
                            source));
  if (found) {
    // Pushed by another tool: nothing says where a file's bytes are, so the image is pulled whole
    // (as `cfs oci pull` would, seal check included).
    notice(
        fmt::format("{}: no lazy metadata (pushed without `cfs oci push`); pulling the whole "
                    "image, then mounting it (--no-full-pull refuses instead)",
                    source));
    RegistryPullOptions po;
    if (fetch.require_seal || fetch.cert_file) {
      po.verify_seal.emplace();
      if (fetch.cert_file) po.verify_seal->cert = *fetch.cert_file;
    }
    CFS_ASSIGN(auto pulled, pull_image(repo, client, source, po));
    LazyImage out;
    out.image = pulled.result.image;
    out.pulled_whole = true;
    return out;
  }
  // Unreachable registry: what an earlier lazy mount of this source registered is served (what
  // was fetched works, the rest fails after the timeout until the registry is back).
  if (!unreachable(found.error()) || !can_fall_back) return fail(std::move(found.error()));
  notice(fmt::format("warning: {}; mounting the image registered for {} before",
                     found.error().message(), source));
  CFS_ASSIGN(LazyImage out, registered(repo, source));
  out.offline = true;
  return out;
}

}  // namespace cfs::registry
