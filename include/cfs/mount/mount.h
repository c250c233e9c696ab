// SPDX-License-Identifier: Apache-2.0
// Kernel mount of a composefs image: a read-only EROFS of the image, kept detached (never
// attached anywhere, so no temporary directory exists), used as the metadata layer of an
// overlayfs whose data-only layers are the object directories. Each kernel interface is chosen
// by probing, with fallbacks for older kernels; tests can force each path.
// Thread-safety: the functions are reentrant; mounting changes process-global state (the
// mount namespace), so callers serialise mounts on the same target.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cfs/erofs/reader.h"
#include "cfs/mount/options.h"
#include "cfs/store/object_dirs.h"
#include "cfs/util/result.h"

namespace cfs::mount {

/// How the EROFS image is mounted.
enum class ErofsBackend : std::uint8_t {
  kAuto,  ///< file-backed, falling back to a loop device on ENOTBLK
  kFile,  ///< file-backed only (Linux 6.12, CONFIG_EROFS_FS_BACKED_BY_FILE)
  kLoop,  ///< loop device only (LOOP_CONFIGURE, Linux 5.8)
};

/// How the overlay is configured.
enum class OverlayApi : std::uint8_t {
  kAuto,         ///< fsconfig with lowerdir+/datadir+, then legacy ::, then legacy :
  kFsconfig,     ///< new mount API, one fsconfig call per layer (Linux 6.7)
  kLegacy,       ///< mount(2) with lowerdir=IMG::OBJ1::OBJ2 (data-only layers, Linux 6.5)
  kLegacyPlain,  ///< mount(2) with lowerdir=IMG:OBJ1:OBJ2 (no data-only layers)
};

/// Where the EROFS mount is while the overlay is built.
enum class LowerMode : std::uint8_t {
  kAuto,      ///< detached, then attached if the kernel refuses a detached layer (EINVAL)
  kDetached,  ///< never attached (Linux 6.15+ accepts a detached mount as a layer)
  kAttached,  ///< attached on the target itself while the overlay is created, then unmounted
  kStacked,   ///< result only: mount(2) needed it attached, so it stays beneath the overlay
};

const char* to_string(ErofsBackend b) noexcept;
const char* to_string(LowerMode m) noexcept;
const char* to_string(OverlayApi a) noexcept;

/// How the image was checked against digest=.
enum class DigestCheck : std::uint8_t {
  kNone,        ///< no digest= given
  kKernel,      ///< the image file has fs-verity; FS_IOC_MEASURE_VERITY matched
  kSealedCopy,  ///< no fs-verity on the image: a sealed memfd copy was digested and mounted
};
const char* to_string(DigestCheck c) noexcept;

struct Backends {
  ErofsBackend erofs = ErofsBackend::kAuto;
  OverlayApi overlay = OverlayApi::kAuto;
  LowerMode lower = LowerMode::kAuto;
};

/// What mount_image() did, for -v / --json output and tests.
struct MountReport {
  ErofsBackend erofs = ErofsBackend::kAuto;  ///< the backend used (never kAuto)
  OverlayApi overlay = OverlayApi::kAuto;    ///< the API used (never kAuto)
  LowerMode lower = LowerMode::kAuto;        ///< where the EROFS was (never kAuto)
  VerityMode verity = VerityMode::kOff;      ///< the verity= actually passed to the kernel
  DigestCheck digest_check = DigestCheck::kNone;
  std::string loop_device;            ///< e.g. /dev/loop3 when the loop backend was used
  std::vector<std::string> warnings;  ///< things the caller must tell the user
};

/// Mounts `image` on `target`. Validates `opts` first (conflicts are refused before anything
/// touches the kernel). Errors name the failing step: not a composefs image
/// (Errc::kCorruptImage), wrong digest (kDigestMismatch), missing basedir (ENOENT), missing
/// kernel feature (kUnsupportedFeature), not root (EPERM). Nothing is left mounted on failure.
Result<MountReport> mount_image(const std::string& image, const std::string& target,
                                const Options& opts, const Backends& backends = {});

/// The store check both mounts make before mounting: the first `sample` objects the image names
/// (depth-first, name order) are looked up in the object directories with the mounts' own
/// resolver, and when none of them is there the mount is refused (Errc::kObjectMissing,
/// naming the basedirs and one object) instead of giving a mount where every read fails. An
/// image without objects, or a store holding any one of them, passes.
Status check_objects_present(const erofs::Image& image, const store::ObjectDirs& dirs,
                             std::size_t sample = 16);

/// Unmounts the overlay (or a `cfs mount --fuse` mount, fuse.composefs) on `target` after
/// checking that it is one (mountinfo). The EROFS is
/// normally not attached anywhere, so it goes away with the overlay (a loop device clears
/// itself); an EROFS stacked beneath the overlay (LowerMode::kStacked) is unmounted too.
Status unmount(const std::string& target, bool lazy = false);

}  // namespace cfs::mount
