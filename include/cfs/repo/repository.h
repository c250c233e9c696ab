// SPDX-License-Identifier: Apache-2.0
// A composefs-rs repository (docs/repository.md): one object store shared by named images and
// splitstreams.
//
//   REPO/meta.json                 format version, algorithm, features (repo/meta.h); fs-verity
//                                  enabled on it marks a secure repository
//   REPO/objects/XX/<rest>         content-addressed objects: file contents, EROFS images,
//                                  splitstreams, named by their fs-verity digest
//   REPO/images/<hex>              -> ../objects/XX/<rest>   an image (EROFS) in the repository
//   REPO/images/refs/<name...>     -> ../<hex> (one ../ per level)   named images: GC roots
//   REPO/streams/<id>              -> ../objects/XX/<rest>   a splitstream by content id
//   REPO/streams/refs/<name...>    -> ../<id>                named streams: GC roots
//   REPO/cfs-mounts/<lease>        cfs only: which image each live mount uses (repo/lease.h)
//
// Locking (as composefs-rs): every open Repository holds flock(LOCK_SH) on the repository
// directory; gc and fsck --repair hold LOCK_EX, so they wait until no other process has the
// repository open, and nobody opens it while they run. Writers do not exclude each other:
// objects are content-addressed and names are replaced atomically (rename over).
//
// Durability: objects are written without fsync; sync() (one syncfs) must come after the last
// object a name points at and before the name (link_image, set_ref, link_stream) is made, so
// that after a crash at any moment no name points at a missing or partial object.
//
// Thread-safety: const methods may be called from several threads; the rest from one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/repo/meta.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::repo {

inline constexpr std::string_view kMetaFile = "meta.json";
inline constexpr std::string_view kObjectsDir = "objects";
inline constexpr std::string_view kImagesDir = "images";
inline constexpr std::string_view kStreamsDir = "streams";
inline constexpr std::string_view kRefsDir = "refs";
inline constexpr std::string_view kMountsDir = "cfs-mounts";

/// Where a repository is when no --repo is given: $CFS_REPO, else composefs-rs' defaults
/// (/sysroot/composefs for root, $HOME/.var/lib/composefs for other users).
std::string default_path();

enum class LockMode { kShared, kExclusive };

struct OpenOptions {
  /// The caller will write (objects, names, GC): refused when the repository is read-only
  /// (unknown read-only-compatible features, read-only filesystem, no write permission).
  bool write = false;
  LockMode lock = LockMode::kShared;
  /// Called once, before blocking, when another process holds a conflicting lock.
  std::function<void()> on_wait;
};

struct InitOptions {
  /// nullopt: the algorithm of an old repository's objects, else SHA-512 (cfsctl's default).
  std::optional<verity::HashAlg> algorithm;
  std::uint32_t erofs_version = 1;
  /// Without fs-verity on meta.json (filesystems without fs-verity: tmpfs, overlayfs, ...).
  bool insecure = false;
};

/// A name kind: images or streams.
enum class Kind { kImage, kStream };

struct NamedRef {
  std::string name;    ///< below images/refs/ or streams/refs/ ("a/b")
  std::string target;  ///< image hex or stream content id
};

/// An object being written: an unnamed file in objects/ (O_TMPFILE), or a named ".tmp-*" one
/// where the filesystem has no O_TMPFILE. Destroyed without commit_object(): nothing remains
/// (the named kind is removed).
class NewObject {
 public:
  NewObject(NewObject&&) noexcept = default;
  NewObject& operator=(NewObject&&) noexcept = default;
  ~NewObject();
  int fd() const noexcept { return fd_.get(); }
  /// Appends to the object; the bytes written this way start their writeback in batches
  /// (cfs/util/background_sync.h) once committed.
  Status write(std::span<const std::byte> data);

 private:
  friend class Repository;
  NewObject() = default;
  UniqueFd fd_;
  std::uint64_t written_ = 0;
  std::shared_ptr<const UniqueFd> dir_;  ///< objects/, the repository's descriptor
  std::string temp_name_;                ///< named fallback only
};

class Repository {
 public:
  /// Creates the repository at `path` (the directory and missing parents, mode 0700), or, if a
  /// meta.json exists, checks it is identical to what these options would write (error
  /// otherwise, naming both). An old repository (objects/ without meta.json) gets a meta.json
  /// for the algorithm its object names use. Returns the repository opened for writing.
  static Result<Repository> init(const std::string& path, const InitOptions& options);

  /// Opens an existing repository. Errors: no repository there; a newer version or unknown
  /// incompatible features (kUnsupportedFeature); a read-only repository when
  /// options.write.
  static Result<Repository> open(const std::string& path, const OpenOptions& options = {});

  Repository(Repository&&) noexcept;
  Repository& operator=(Repository&&) noexcept;
  ~Repository();

  const std::string& path() const noexcept { return path_; }
  int fd() const noexcept { return fd_.get(); }
  const Meta& meta() const noexcept { return meta_; }
  verity::HashAlg algorithm() const noexcept { return meta_.algorithm; }
  /// fs-verity is enabled on meta.json: every object must have it, mounts require it.
  bool secure() const noexcept { return secure_; }
  /// No meta.json (an old composefs-rs repository); meta() was inferred from object names.
  bool legacy() const noexcept { return legacy_; }
  const Access& access() const noexcept { return access_; }
  LockMode lock_mode() const noexcept { return lock_; }

  /// Changes the lock held on the repository directory (blocking). flock converts
  /// non-atomically: between the old lock and the new one another process may get in.
  Status relock(LockMode mode, const std::function<void()>& on_wait = {});
  /// Tries to convert the shared lock into an exclusive one without blocking: true when no
  /// other process has the repository open. On false the lock may be lost (flock(2) drops
  /// the old lock first): call only as the last thing done under the lock.
  bool try_exclusive_last();

  /// Object path relative to the repository ("objects/ab/cdef…").
  std::string object_path(const verity::Digest& digest) const;
  /// Parses "<hex>" or "<alg>:<hex>" of this repository's algorithm (kInvalidInput otherwise).
  Result<verity::Digest> parse_digest(std::string_view text) const;

  /// Resolves an image name: "refs/NAME" or NAME (a ref), or the image's hex digest (also as
  /// "sha512:<hex>"). The image must exist (images/<hex>). Errors name the name.
  Result<verity::Digest> resolve_image(std::string_view name) const;
  /// Resolves a stream name: "refs/NAME", or a content id (streams/<id>). Returns the stream
  /// object's digest and its content id.
  Result<std::pair<verity::Digest, std::string>> resolve_stream(std::string_view name) const;

  /// Opens an object read-only without following symlinks out of objects/. In a secure
  /// repository its fs-verity digest (measured by the kernel) must equal `digest`.
  Result<UniqueFd> open_object(const verity::Digest& digest) const;
  /// True if objects/XX/<rest> exists (any file type).
  bool has_object(const verity::Digest& digest) const;

  /// Whether an object is worth writing: false when objects/XX/<rest> exists (any file type),
  /// true when it does not. Without a lookup for a digest this process has not asked about
  /// before whose fan-out directory it has listed once (cfs/store/fanout_dirs.h), so asking
  /// again for the same digest looks the name up. Another writer may still add the object
  /// before commit_object() names it, which then keeps theirs (as always).
  Result<bool> need_object(const verity::Digest& digest);

  /// Starts writing an object (the repository must be open for writing).
  Result<NewObject> create_object();
  /// Finishes it: computes its fs-verity digest with the repository's algorithm, enables
  /// fs-verity on it (required in a secure repository, best effort otherwise) and names it
  /// objects/XX/<rest>; an existing object of that name is kept (same content). Not durable
  /// until sync().
  Result<verity::Digest> commit_object(NewObject object);
  /// The same for a caller that has just computed `digest` over exactly the bytes it wrote
  /// (the splitstream writer digests every buffered object once, on all cores): the file is
  /// not read back and digested a second time. Where fs-verity gets enabled, the kernel's
  /// measurement must agree.
  Result<verity::Digest> commit_object(NewObject object, const verity::Digest& digest);
  /// The same, except that an existing file of that name is replaced atomically (rename over
  /// it) instead of kept: for a caller that found the name holding other bytes (a damaged or
  /// tampered object) and has just digested what it wrote. The caller makes the new bytes
  /// durable first (fsync) and the name after (sync_object): a crash at any moment leaves the
  /// old file or the new one under the name, and at most a temporary file fsck and gc know.
  Result<verity::Digest> replace_object(NewObject object, const verity::Digest& digest);

  /// Publishes an image whose object (and every object it names) has been written: one
  /// sync(), then images/<hex> and, with `ref`, images/refs/REF. After a crash at any moment
  /// no name points at something missing.
  Status publish_image(const verity::Digest& image, const std::optional<std::string>& ref);

  /// images/<hex> -> ../objects/XX/<rest>. The object must exist and be durable (sync()).
  Status link_image(const verity::Digest& image);
  /// streams/<id> -> ../objects/XX/<rest>.
  Status link_stream(std::string_view content_id, const verity::Digest& stream);
  /// images/refs/NAME -> images/<hex> (or streams/refs/NAME -> streams/<id>), replacing an
  /// existing name atomically. NAME: '/'-separated, no empty, "." or ".." components.
  Status set_ref(Kind kind, std::string_view name, std::string_view target);
  /// Removes a name (ENOENT naming it if absent) and the directories it leaves empty.
  Status remove_ref(Kind kind, std::string_view name);
  /// Every name under images/refs/ (or streams/refs/), sorted. Entries that are not symlinks
  /// or whose target is not a top-level image/stream are reported with an empty target.
  Result<std::vector<NamedRef>> list_refs(Kind kind) const;
  /// Every top-level images/<hex> (or streams/<id>) entry name, sorted.
  Result<std::vector<std::string>> list_entries(Kind kind) const;

  /// One syncfs(2) of the repository's filesystem: everything written so far is durable.
  Status sync() const;
  /// One committed object durable, and its name: fsync of the object, its fan-out directory
  /// and objects/. For a caller that names a single object and must not pay for a syncfs of
  /// everything else dirty on the filesystem (a lazy mount's registration).
  Status sync_object(const verity::Digest& digest);
  /// Background writeback runs started by committed objects so far
  /// (cfs/util/background_sync.h; tests).
  std::uint64_t writeback_runs() const;

 private:
  Repository() = default;
  static Result<Repository> open_fd(UniqueFd fd, std::string path, const OpenOptions& options);
  /// commit_object's first half: fs-verity enabled where it can be (and the kernel's
  /// measurement checked against `digest`); returns the descriptor to name.
  Result<UniqueFd> seal_object(NewObject& object, const verity::Digest& digest,
                               const std::string& where, const std::string& name);

  UniqueFd fd_;
  std::string path_;
  Meta meta_;
  Access access_;
  bool secure_ = false;
  bool legacy_ = false;
  LockMode lock_ = LockMode::kShared;
  // What adding objects learned once instead of per object (the objects/ directory fd, fan-out
  // directories opened and listed, fs-verity unavailable); shared by the threads adding objects.
  struct ObjectCache;
  std::shared_ptr<ObjectCache> object_cache_;
  Result<int> objects_dir();
};

/// True if `name` is a valid ref name (see set_ref).
bool valid_ref_name(std::string_view name);

}  // namespace cfs::repo
