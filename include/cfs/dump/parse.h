// SPDX-License-Identifier: Apache-2.0
// Parser for the composefs dump text format (composefs-dump(5), composefs 1.0.8 semantics):
// one inode per line, 11 space-separated fixed fields plus KEY=VALUE xattrs, C-style escapes.
// The result is a Tree holding the input as given (see cfs/erofs/tree.h); the writer does the
// overlay escaping, whiteout conversion and root stubs.
// Thread-safety: stateless; concurrent calls are fine.
#pragma once

#include <string>
#include <string_view>

#include "cfs/erofs/tree.h"
#include "cfs/util/result.h"

namespace cfs::dump {

/// Upstream limits (libcomposefs 1.0.8).
inline constexpr std::size_t kMaxNameLen = 255;
inline constexpr std::size_t kMaxSymlinkLen = 4095;
inline constexpr std::size_t kMaxInlineContent = 5000;  // LCFS_INLINE_CONTENT_MAX
inline constexpr std::size_t kMaxXattrKeyLen = 255;
inline constexpr std::size_t kMaxXattrValueLen = 65535;
inline constexpr std::size_t kMaxXattrBudget = 65535 / 2;  // LCFS_INODE_EXTERNAL_XATTR_MAX
inline constexpr std::size_t kMaxXattrFieldLen = 65535;    // rest of a line after DIGEST

struct ParseOptions {
  /// Upstream's CFS_PARSE_STRICT: require the final newline, zero RDEV on non-devices,
  /// symlink SIZE == strlen(target), no CONTENT on symlinks.
  bool strict = false;
  /// Names the input in error contexts ("<source_name>:<line>: <problem>").
  std::string source_name = "<stdin>";
};

/// Parses a whole dump into a Tree (input as given; see tree.h). Errors: Errc::kInvalidInput
/// with context "<source_name>:<line>: <problem>" naming the field, like upstream's messages.
/// Hardlink lines become Entry{hardlink=true} pointing at the resolved (chains followed)
/// target node; the target's nlink stays what its own line said.
Result<Tree> parse(std::string_view text, const ParseOptions& opts);

/// Reads path ("-" = stdin) and parses it. I/O errors name the path.
Result<Tree> parse_file(const std::string& path, const ParseOptions& opts);

}  // namespace cfs::dump
