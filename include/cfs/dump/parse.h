// SPDX-License-Identifier: Apache-2.0
// Parser for the composefs dump text format (composefs-dump(5), composefs 1.0.8 semantics):
// one inode per line, 11 space-separated fixed fields plus KEY=VALUE xattrs, C-style escapes.
// The result is a Tree holding the input as given (see cfs/tree/tree.h); the writer does the
// overlay escaping, whiteout conversion and root stubs. The limits are composefs' own
// (cfs/overlay/limits.h), xattrs included (overlay::XattrBudget).
// Thread-safety: stateless; concurrent calls are fine.
#pragma once

#include <string>
#include <string_view>

#include "cfs/tree/tree.h"
#include "cfs/util/result.h"

namespace cfs::dump {

/// Longest xattr part of a line (the rest after DIGEST): mkcomposefs 1.0.8 refuses more
/// ("Too many xattrs") because it deduplicates keys quadratically.
inline constexpr std::size_t kMaxXattrFieldLen = 65535;

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
