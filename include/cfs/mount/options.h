// SPDX-License-Identifier: Apache-2.0
// mount.composefs options: parsing of the mount(8) `-o` string and validation of conflicts.
// The conflict rules are the ones Linux 6.6-6.15 enforced for overlayfs verity; cfs enforces
// them on every kernel, because 6.16 stopped checking and would otherwise mount a "verity"
// overlay whose digests can never be checked. Thread-safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/overlay/verity_mode.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::mount {

/// Overlayfs `verity=` (Linux 6.6), shared with the FUSE mount.
using VerityMode = overlay::VerityMode;
using overlay::to_string;

/// Which mount reads the options. One model serves both: the keys mean the same; each mount
/// refuses what it cannot honour (docs/mounting.md, "Options of both mounts").
enum class Dialect : std::uint8_t {
  kKernel,  ///< mount.composefs, cfs mount: EROFS + overlayfs
  kFuse,    ///< cfs mount --fuse, composefs-fuse: the userspace mount
};

/// Where an option value came from matters for conflict messages: the user's spelling is
/// quoted back ("verity" vs "digest=..." vs "verity=require").
struct Options {
  std::vector<std::string> basedirs;     ///< object directories, in lookup order (basedir=A:B)
  std::optional<verity::Digest> digest;  ///< expected fs-verity digest of the image (digest=)
  std::optional<VerityMode> verity;      ///< explicit verity / verity=MODE
  std::string verity_spelling;           ///< how the user wrote it, for messages
  bool try_verity = false;               ///< tryverity: require if the kernel supports it
  std::string upperdir;
  std::string workdir;
  bool read_only = false;                   ///< ro / rw, last one wins
  std::string idmap;                        ///< user namespace file for an idmapped EROFS mount
  std::optional<bool> metacopy;             ///< explicit metacopy=on|off
  std::optional<std::string> redirect_dir;  ///< explicit redirect_dir=on|follow|nofollow|off
  bool userxattr = false;                   ///< explicit userxattr
  std::uint64_t mount_attrs = 0;            ///< MOUNT_ATTR_* from nosuid, nodev, noexec, ...
  std::vector<std::string> attr_options;    ///< those options as given, in order
  std::vector<std::string> ignored;         ///< mount(8) userspace-only options we skip

  // The FUSE mount only (Dialect::kFuse; the kernel mount refuses them).
  std::string source;      ///< source=IMAGE, instead of the IMAGE argument
  std::string tree_cache;  ///< tree_cache=DIR: persistent Merkle trees
  unsigned threads = 0;    ///< threads=N: most FUSE worker threads (0: libfuse's)
  /// prefill_max=BYTES: objects up to this size go into the page cache whole, verified, at
  /// their first open (vfs::Options::copy_max_bytes); unset: the vfs default.
  std::optional<std::uint64_t> prefill_max;
  std::vector<std::string> fuse_options;  ///< anything else, for libfuse (allow_other, ...)
};

/// Splits a mount(8) option string at commas; a backslash escapes the next character (so
/// `basedir=/a\,b` is one option). Empty items are dropped.
Result<std::vector<std::string>> split_options(std::string_view text);

/// Parses one `-o` string into `opts` (several -o arguments accumulate, later ones win like
/// mount(8)). Malformed digests and bad values fail with Errc::kInvalidInput naming the
/// option; so do unknown options for the kernel mount, while the FUSE mount hands them to
/// libfuse (fuse_options). Does not check conflicts: call validate() once all are parsed.
Status parse_options(std::string_view text, Options& opts, Dialect dialect = Dialect::kKernel);

/// The `-o` options given to a mount whose image, object directories and verity the repository
/// decides (`cfs mount NAME`, `cfs oci mount --lazy`): each parsed as by parse_options, and
/// basedir=, digest=, source= and the verity options refused (Errc::kInvalidInput).
Result<Options> parse_repository_mount_options(const std::vector<std::string>& texts,
                                               Dialect dialect);

/// The verity mode the mount will enforce: explicit verity=, else require when `verity`,
/// `tryverity` or `digest=` was given, else off for the kernel mount and on for the FUSE mount
/// (which checks in userspace and needs no kernel support).
VerityMode effective_verity(const Options& opts, Dialect dialect = Dialect::kKernel) noexcept;

/// Rejects combinations the kernel would reject on some version, or that silently weaken
/// verity (Errc::kConflict, message naming both options), missing requirements (basedir=,
/// upperdir without workdir; Errc::kInvalidInput), and for the FUSE mount the kernel-only
/// options (idmap=, metacopy=, redirect_dir=, userxattr; Errc::kInvalidInput).
Status validate(const Options& opts, Dialect dialect = Dialect::kKernel);

/// The mount point must be an existing directory: "mount point X does not exist" (ENOENT),
/// "mount point X is not a directory" (ENOTDIR).
Status check_mount_point(const std::string& target);

/// Parses "sha256 hex" (64 digits) or SHA-512 (128 digits) into a Digest.
Result<verity::Digest> parse_digest_hex(std::string_view hex);

}  // namespace cfs::mount
