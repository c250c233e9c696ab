// SPDX-License-Identifier: Apache-2.0
// What an image or a stream keeps alive (internal; shared by gc and fsck).
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "cfs/repo/repository.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::repo::reach {

/// The objects ("ab/cdef…") the regular files of an image redirect to, as the mount would
/// open them. Redirects that are not object names of the repository's algorithm cannot name
/// one of its objects and are returned in `foreign` (when given). With `check`, the image's
/// structure is checked completely first (erofs::check_image).
Result<std::vector<std::string>> image_objects(const Repository& repo, const verity::Digest& image,
                                               bool check,
                                               std::vector<std::string>* foreign = nullptr);

/// The references of a splitstream: its external objects and the digests of the streams (or
/// images) it names.
struct StreamRefs {
  std::vector<verity::Digest> objects;
  std::vector<verity::Digest> streams;
};
Result<StreamRefs> stream_refs(const Repository& repo, const verity::Digest& stream);

/// What an object referenced by a stream is: walked as an image, as a stream, or a plain
/// object (from its first bytes).
enum class Content { kImage, kStream, kOther };
Result<Content> sniff(const Repository& repo, const verity::Digest& object);

/// Marks everything reachable from images and streams in `live` (object names).
class Marker {
 public:
  explicit Marker(const Repository& repo) : repo_(repo) {}
  Status image(const verity::Digest& image);
  Status stream(const verity::Digest& stream);
  const std::unordered_set<std::string>& live() const noexcept { return live_; }
  std::unordered_set<std::string>& live() noexcept { return live_; }

 private:
  Status referenced(const verity::Digest& d, int depth);
  Status stream_at(const verity::Digest& stream, int depth);
  const Repository& repo_;
  std::unordered_set<std::string> live_;
  std::unordered_set<std::string> walked_;
};

}  // namespace cfs::repo::reach
