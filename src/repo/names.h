// SPDX-License-Identifier: Apache-2.0
// Names inside a repository (internal): digests as text, the relative symlinks of images/,
// streams/ and their refs/, temporary names, and the walk of a refs/ tree. Symlink targets are
// interpreted lexically, relative to the link, and never followed: a name can only point at
// an entry of the repository, whatever the link says.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::repo::names {

/// "ab/cdef…" below objects/.
std::string object_name(const verity::Digest& digest);
/// The digest of objects/<dir>/<rest> for this algorithm (lowercase hex only).
std::optional<verity::Digest> object_digest(std::string_view dir, std::string_view rest,
                                            verity::HashAlg alg);
/// "<hex>" or "sha256:<hex>"/"sha512:<hex>" of algorithm `alg` (either case).
Result<verity::Digest> parse_digest(std::string_view text, verity::HashAlg alg);

/// A ref name: '/'-separated components, none empty, ".", ".." or temporary, no NUL.
bool valid_ref(std::string_view name);
/// A top-level entry of images/ or streams/: one component, not "refs", not temporary.
bool valid_entry(std::string_view name);
/// Temporary names of cfs and composefs-rs (".tmp*" files, ".symlink-*" links).
bool is_temp(std::string_view name);
/// A fresh temporary name for a symlink or file in `dir`.
std::string temp_link_name();
std::string temp_file_name();

/// The top-level entry a ref names: link_path is the ref's path in the repository
/// ("images/refs/a/b"), target its symlink text; the result is <entry> if the target resolves
/// lexically to "<top>/<entry>", nullopt otherwise.
std::optional<std::string> ref_target_entry(std::string_view link_path, std::string_view target,
                                            std::string_view top);
/// The object a top-level entry's symlink text ("../objects/ab/cdef…") names.
std::optional<verity::Digest> entry_target_object(std::string_view target, verity::HashAlg alg);

/// Makes dir/name a symlink to target, replacing an existing name atomically (a temporary
/// link renamed over it); nothing is done when it already has that target.
Status replace_symlink(int repo_fd, const std::string& dir, const std::string& name,
                       const std::string& target);

/// One entry found under <top>/refs/.
struct RefLink {
  std::string name;                   ///< below refs/ ("a/b")
  std::string path;                   ///< in the repository ("images/refs/a/b")
  std::optional<std::string> target;  ///< symlink text; nullopt when not a symlink
  bool temp = false;                  ///< a temporary name (left by an interrupted write)
};
/// Every non-directory entry under <top>/refs/, recursively (empty when there is none).
Result<std::vector<RefLink>> walk_refs(int repo_fd, std::string_view top);

}  // namespace cfs::repo::names
