// SPDX-License-Identifier: Apache-2.0
// Images registered before their objects arrived (`cfs oci mount --lazy`, docs/lazy.md). The
// image itself is a normal one (images/<hex>, a ref); what fetching its missing objects needs
// (where they come from, the object index) is kept beside it in cfs-only files:
//
//   REPO/cfs-lazy/<image hex>.<part>   written whole or not at all (AtomicFile), by the
//                                      registry module; this module only stores the bytes
//
// An image with a "source" part is lazy: fsck counts its missing objects as not fetched yet (a
// note), not as problems; it is complete once every object is there (`cfs oci pull` of the same
// reference, or the mount's background fill). gc removes the parts of images it removed.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::repo {

inline constexpr std::string_view kLazyDir = "cfs-lazy";
/// The part whose presence makes an image lazy.
inline constexpr std::string_view kLazySourcePart = "source";
/// Where a normally pulled image came from (a registry pull records it): lets a lazy mount of
/// the image fetch objects that went missing. It does not make the image lazy.
inline constexpr std::string_view kLazyOriginPart = "origin";

/// Replaces REPO/cfs-lazy/<hex>.<part> with `bytes` (durably).
Status write_lazy_part(Repository& repo, const verity::Digest& image, std::string_view part,
                       std::string_view bytes);
/// The bytes of a part, or nullopt when there is none. A part larger than `max` bytes is
/// refused (kInvalidInput naming it, its size and `max`) before it is read.
Result<std::optional<std::string>> read_lazy_part(const Repository& repo,
                                                  const verity::Digest& image,
                                                  std::string_view part,
                                                  std::uint64_t max = UINT64_MAX);
/// Removes a part (durably); nothing when there is none.
Status remove_lazy_part(Repository& repo, const verity::Digest& image, std::string_view part);
/// True when the image has the part (a file under its name, whatever it holds).
bool has_lazy_part(const Repository& repo, const verity::Digest& image, std::string_view part);
/// True when the image was registered lazily (its source part exists).
bool is_lazy(const Repository& repo, const verity::Digest& image);

/// Held while this process fetches an object into the repository (flock on
/// REPO/cfs-lazy/<object hex>.fetch): a lazy mount and `cfs oci pull` finishing its fill, or
/// two lazy mounts of one repository, fetch each object once between them: the second waits,
/// then finds the object committed. Destroying it removes the file, then releases the lock; a
/// file left by a killed process is locked again by the next fetcher (gc removes it).
class FetchLock {
 public:
  FetchLock(FetchLock&&) noexcept = default;
  FetchLock& operator=(FetchLock&&) noexcept = default;
  ~FetchLock();

 private:
  friend Result<FetchLock> lock_object_fetch(Repository& repo, const verity::Digest& object);
  FetchLock(UniqueFd dir, UniqueFd file, std::string name)
      : dir_(std::move(dir)), file_(std::move(file)), name_(std::move(name)) {}
  UniqueFd dir_, file_;
  std::string name_;
};
/// Waits until no other process fetches `object`, then holds the lock.
Result<FetchLock> lock_object_fetch(Repository& repo, const verity::Digest& object);

/// Removes the parts of images that are no longer in images/, and temporary files of
/// interrupted writers (gc, under the exclusive lock). Returns how many files went.
Result<std::uint64_t> prune_lazy_parts(Repository& repo);

}  // namespace cfs::repo
