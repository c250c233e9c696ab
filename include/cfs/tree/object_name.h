// SPDX-License-Identifier: Apache-2.0
// The object-name codec: how a file's fs-verity digest names its backing object. An object
// whose digest has lowercase hex H lives at "H[0:2]/H[2:]" below a store (mkcomposefs
// --digest-store, mount.composefs basedir=, composefs-rs repositories): 2 + '/' + 62 hex
// digits for SHA-256, 2 + '/' + 126 for SHA-512. The same string, with a leading '/', is the
// overlay redirect of the file in the image. Nothing else in cfs spells or parses these names.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "cfs/verity/digest.h"

namespace cfs::tree {

/// Length of an object name: 65 (SHA-256) or 129 (SHA-512).
constexpr std::size_t object_path_size(verity::HashAlg alg) noexcept {
  return 2 * verity::digest_size(alg) + 1;
}

/// "ab/cdef…" (lowercase) for a digest.
std::string object_path(const verity::Digest& digest);

/// The digest an object name stands for: exactly 2 lowercase hex digits, '/', then the rest of
/// a SHA-256 or SHA-512 digest (the length decides the algorithm). With `alg`, only names of
/// that algorithm are accepted. nullopt for anything else (upper case, other lengths, "..").
std::optional<verity::Digest> parse_object_path(std::string_view path,
                                                std::optional<verity::HashAlg> alg = {});

/// True if `path` is a well-formed object name (see parse_object_path).
bool is_object_path(std::string_view path, std::optional<verity::HashAlg> alg = {});

/// A digest written as hex (64 or 128 digits, either case; the length decides the algorithm
/// unless `alg` is given). Digest::hex() prints the canonical lowercase form.
std::optional<verity::Digest> parse_digest_hex(std::string_view hex,
                                               std::optional<verity::HashAlg> alg = {});

}  // namespace cfs::tree
