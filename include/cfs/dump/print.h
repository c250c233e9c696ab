// SPDX-License-Identifier: Apache-2.0
// `composefs-info dump` / `composefs-info ls` output of a tree, byte-compatible with
// composefs 1.0.8. The tree is expected to come from the image reader: directory sizes are
// EROFS sizes, hardlinks are Entry::hardlink, overlay xattrs are already unescaped, whiteout
// stubs are gone. Printing a parsed dump gives a dump that parses back to an equal tree.
// Thread-safety: stateless; concurrent calls are fine.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "cfs/tree/tree.h"

namespace cfs::dump {

/// Appends the dump of tree (root first, then depth-first in sorted order) to out.
void print_dump(const Tree& tree, std::string& out);

/// Appends `composefs-info ls` output (one line per entry: path, and for symlinks/regular
/// files the target or backing path) to out.
void print_ls(const Tree& tree, std::string& out);

/// Streaming forms (large images, bounded memory): like the above, but call flush(out)
/// whenever out holds at least flush_bytes; flush is expected to consume (clear) out. Whatever
/// is left at the end stays in out for the caller.
using FlushFn = std::function<void(std::string&)>;
void print_dump(const Tree& tree, std::string& out, std::size_t flush_bytes, const FlushFn& flush);
void print_ls(const Tree& tree, std::string& out, std::size_t flush_bytes, const FlushFn& flush);

/// The same walks as JSON (for `cfs info --json`), one array of entry objects, every string
/// encoded by cfs/util/json.h and given whole (not cut at a NUL as the text forms are):
///   dump: {"path", "size", "mode", "nlink", "uid", "gid", "rdev", "mtime", "mtime_nsec",
///          "hardlink" (the owning entry's path, or null), "payload", "content", "digest"
///          (hex; each null when absent), "xattrs": [{"key", "value"}, ...]}
///   ls:   {"path", "type" ("directory", "file", "symlink", "chardev", "blockdev", "fifo",
///          "socket", "hardlink"), "target" (symlinks), "payload" (regular files with one)}
/// The array ends without a newline; flush works as for the text forms.
void print_dump_json(const Tree& tree, std::string& out, std::size_t flush_bytes,
                     const FlushFn& flush);
void print_ls_json(const Tree& tree, std::string& out, std::size_t flush_bytes,
                   const FlushFn& flush);

/// PATH escaping: `\\`, `\n`, `\r`, `\t`, `\xHH` for every byte that is not isgraph (C locale).
std::string escape_path(std::string_view s);

/// Escaping for optional fields (PAYLOAD, CONTENT): like escape_path, "-" when empty, and a
/// literal "-" written as `\x2d`.
std::string escape_optional(std::string_view s);

/// Escaping for xattr keys/values: like escape_path plus `=` as `\x3d`.
std::string escape_xattr(std::string_view s);

}  // namespace cfs::dump
