// SPDX-License-Identifier: Apache-2.0
// `cfs diff`: what differs between two images, dumps or repository images, path by path and
// field by field (type, mode, owner, mtime, xattrs, content, symlink target, device number,
// hardlinks), plus the facts of the images themselves (format version, digest, size) — so one
// command answers "why do two builds of the same tree have different digests", including a
// format-version difference that a dump comparison cannot show.
//
// Its own module above repo (and dump): comparing trees is not a repository concern, and
// reading dump files would otherwise make the repository depend on the dump parser.
// Thread-safety: free functions over immutable inputs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/repo/repository.h"
#include "cfs/tree/tree.h"
#include "cfs/util/result.h"

namespace cfs::diff {

/// One side of a diff.
struct DiffInput {
  std::string label;  ///< as given on the command line
  Tree tree;
  bool is_image = false;  ///< an EROFS image (file or repository), not a dump
  std::uint32_t format_version = 0;
  std::uint64_t image_size = 0;
  std::string image_digest;  ///< fs-verity digest of the image bytes ("sha256:<hex>")
};

/// Loads `arg`: an existing file is an image (EROFS magic) or a dump; anything else is an image
/// name in `repo` (an error naming the argument when repo is null). Image digests use the
/// repository's algorithm when the repository is given, else SHA-256.
Result<DiffInput> load_diff_input(const std::string& arg, const repo::Repository* repo);

struct FieldDiff {
  std::string field;  ///< type, mode, owner, mtime, size, content, target, rdev, xattr <key>,
                      ///< hardlinks; image-level: format-version, digest, image-size
  std::string a;      ///< value on side A, "" when absent
  std::string b;
};

struct PathDiff {
  enum class Status { kOnlyA, kOnlyB, kChanged };
  std::string path;
  Status status = Status::kChanged;
  std::vector<FieldDiff> fields;  ///< kChanged only
};

struct DiffReport {
  std::vector<FieldDiff> image;  ///< differences of the images themselves
  std::vector<PathDiff> paths;   ///< in path order; a directory present on one side only is
                                 ///< listed alone, not with its contents
  bool equal() const noexcept { return image.empty() && paths.empty(); }
};

/// Compares two trees (and, when both are images, the image facts).
DiffReport diff(const DiffInput& a, const DiffInput& b);

}  // namespace cfs::diff
