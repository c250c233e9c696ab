// SPDX-License-Identifier: Apache-2.0
// Applying OCI layers, in order, onto one Tree: the merged image composefs-rs computes
// (composefs-oci image.rs process_entry + generic_tree.rs transform_for_oci; the rules are in
// docs/oci-layers.md).
//
// Per entry, in tar order: the path is made absolute ("./a/" and "/a" are "/a"; "", "." and
// "/" are the root, whose metadata is set and later overwritten); `..` components are refused;
// the parent must exist already and every component must be a directory (no implicit parents,
// no following symlinks). `.wh.NAME` removes NAME from the parent, `.wh..wh..opq` empties it;
// neither is itself inserted. A directory over a directory replaces its metadata and keeps its
// children; anything else replaces the old entry, subtree included. A hardlink makes the new
// name share the node of its target, looked up in the merged tree so far (earlier layers
// included; missing targets and directories are errors). Regular files up to 64 bytes keep
// their content inline, larger ones their object digest. Modes are not masked; uid/gid are
// truncated to 32 bits; mtimes keep the pax nanoseconds.
//
// finish(): the root takes the mode, owner, mtime and xattrs of /usr (no /usr is an error);
// /run, if present, is emptied and takes /usr's mtime; xattrs are filtered (only
// security.capability, plus user.* with kKeepUserXattrs); each shared node is owned by its
// first name in sorted depth-first order, the others are hardlink entries, and nlink counts
// the names.
//
// Strict mode (the default) also refuses what composefs-rs accepts but tar extractors and the
// OCI image spec disagree about, so an accepted layer means the same thing to all of them:
// absolute paths other than the root, the same path twice in one layer, whiteouts that remove
// entries of their own layer (composefs-rs applies them in tar order, composefs-rs#8), and
// device nodes (block and character devices, overlay whiteouts included). Everything strict
// mode accepts gives exactly composefs-rs' tree; MergeOptions::compatible() accepts what
// composefs-rs accepts.
//
// Errors name the layer, the entry, its tar offset and the reason.
// Thread-safety: one thread per Merger.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cfs/oci/layer_stream.h"
#include "cfs/tree/tree.h"
#include "cfs/util/result.h"

namespace cfs::oci {

enum class XattrFilter { kAllowlistOnly, kKeepUserXattrs };
/// "allowlist-only" / "keep-user-xattrs", composefs-rs' names.
std::string_view xattr_filter_name(XattrFilter f) noexcept;
Result<XattrFilter> parse_xattr_filter(std::string_view name);

struct MergeOptions {
  XattrFilter xattrs = XattrFilter::kAllowlistOnly;
  bool allow_absolute_paths = false;
  bool allow_duplicates = false;            ///< the same path twice in one layer: the last wins
  bool allow_same_layer_whiteouts = false;  ///< whiteouts remove same-layer entries (tar order)
  bool allow_devices = false;
  /// Everything composefs-rs accepts.
  static MergeOptions compatible() {
    MergeOptions o;
    o.allow_absolute_paths = o.allow_duplicates = o.allow_same_layer_whiteouts = o.allow_devices =
        true;
    return o;
  }
};

class Merger {
 public:
  explicit Merger(const MergeOptions& options = {});
  ~Merger();
  Merger(Merger&&) noexcept;
  Merger& operator=(Merger&&) noexcept;

  /// Applies every entry of one layer. `layer` names it in errors (e.g. its diff_id).
  Status apply_layer(LayerReader& reader, const std::string& layer);
  /// Applies one entry of the current layer (begin_layer() first).
  void begin_layer(const std::string& layer);
  Status apply(const LayerEntry& entry);

  /// The merged tree after the composefs-rs transformations. The Merger is spent.
  Result<Tree> finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::oci
