// SPDX-License-Identifier: Apache-2.0
// Orchestration of a composefs mount. Order of work: validate options, check paths, open and
// verify the image, mount the EROFS detached, build the overlay on top of it, attach the
// overlay. Nothing is attached before the last step, so a failure leaves nothing behind.
#include "cfs/mount/mount.h"

#include <fcntl.h>
#include <linux/mount.h>  // MOUNT_ATTR_* and MS_*
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <optional>
#include <utility>

#include "cfs/util/sys.h"
#include "mount/image_internal.h"
#include "mount/kernel_internal.h"

namespace cfs::mount {
namespace {

Error explain_fsopen(Error e, const std::string& fstype, const char* version) {
  if (e.is_errno(ENODEV))
    return Error(Errc::kUnsupportedFeature, "the kernel has no " + fstype + " filesystem (" +
                                                version + "; try modprobe " + fstype + ")");
  if (e.is_errno(EPERM)) return std::move(e).with_context("mounting needs root (CAP_SYS_ADMIN)");
  if (e.is_errno(ENOSYS))
    return Error(Errc::kUnsupportedFeature, "the kernel lacks the new mount API (Linux 5.2)");
  return e;
}

Status require_dir(const std::string& path, const std::string& what) {
  auto st = sys::stat(path);
  if (!st) return fail(std::move(st).error().with_context(what));
  if (!S_ISDIR(st->st_mode)) return fail(Error::from_errno(what + " " + path, ENOTDIR));
  return {};
}

// ---- EROFS ------------------------------------------------------------------------------

Result<UniqueFd> create_erofs(const std::string& source, bool has_acl) {
  auto fs = kernel::fsopen("erofs");
  if (!fs) return fail(explain_fsopen(std::move(fs).error(), "erofs", "Linux 5.4"));
  CFS_TRY(kernel::fsconfig_string(fs->get(), "source", source));
  CFS_TRY(kernel::fsconfig_flag(fs->get(), "ro"));
  // Images without the ACL flag hold no ACL xattrs; noacl spares the kernel the lookups.
  if (!has_acl) CFS_TRY(kernel::fsconfig_flag(fs->get(), "noacl"));
  CFS_TRY(kernel::fsconfig_create(fs->get()));
  return kernel::fsmount(fs->get(), MOUNT_ATTR_RDONLY);
}

struct ErofsMount {
  UniqueFd mnt;  ///< detached mount; closing it after the overlay took its layers is fine
  ErofsBackend backend = ErofsBackend::kAuto;
  std::string loop_device;
};

Result<ErofsMount> mount_erofs(const OpenedImage& img, ErofsBackend want,
                               const std::string& image) {
  if (want != ErofsBackend::kLoop) {
    auto m = create_erofs(sys::fd_path(img.fd.get()), img.has_acl);
    if (m) return ErofsMount{std::move(*m), ErofsBackend::kFile, {}};
    // ENOTBLK: no file-backed EROFS (Linux < 6.12, or a source such as a memfd that has no
    // read_folio); a loop device works for both.
    if (want == ErofsBackend::kFile || !m.error().is_errno(ENOTBLK))
      return fail(std::move(m).error().with_context("mount EROFS image " + image));
  }
  auto loop = kernel::loop_attach(img.fd.get());
  if (!loop) return fail(std::move(loop).error().with_context("loop device for " + image));
  auto m = create_erofs(loop->path, img.has_acl);
  if (!m)
    return fail(
        std::move(m).error().with_context("mount EROFS image " + image + " via " + loop->path));
  // loop->fd closes on return; the superblock keeps the device open and autoclear detaches
  // it when the EROFS goes away with the overlay.
  return ErofsMount{std::move(*m), ErofsBackend::kLoop, loop->path};
}

// ---- overlay ----------------------------------------------------------------------------

struct OverlayPlan {
  std::string lower;  ///< the detached EROFS, as /proc/self/fd/N
  std::vector<std::string> data;
  std::string upper;
  std::string work;
  std::optional<std::string> metacopy;
  std::optional<std::string> redirect_dir;
  VerityMode verity = VerityMode::kOff;
  bool try_verity = false;
  bool userxattr = false;
  bool read_only = false;
  std::uint64_t attrs = 0;
};

OverlayPlan make_plan(const Options& opts, std::string lower) {
  OverlayPlan p;
  p.lower = std::move(lower);
  p.data = opts.basedirs;
  p.upper = opts.upperdir;
  p.work = opts.workdir;
  p.verity = effective_verity(opts);
  p.try_verity = opts.try_verity && !opts.verity;
  p.userxattr = opts.userxattr;
  p.read_only = opts.read_only || opts.upperdir.empty();
  p.attrs = opts.mount_attrs;
  // metacopy=on, redirect_dir=on as upstream passes them, unless the user said otherwise.
  // An explicit redirect_dir other than on implicitly disables metacopy, as overlayfs does.
  if (opts.metacopy)
    p.metacopy = *opts.metacopy ? "on" : "off";
  else if (!opts.redirect_dir || *opts.redirect_dir == "on")
    p.metacopy = "on";
  p.redirect_dir = opts.redirect_dir ? *opts.redirect_dir : std::string("on");
  return p;
}

std::string verity_missing_message(VerityMode m) {
  return std::string("the kernel's overlayfs has no verity= option (Linux 6.6) for verity=") +
         to_string(m);
}

// Set when a step fails because the interface is missing, not because the mount is wrong.
struct FsconfigOutcome {
  UniqueFd mnt;
  VerityMode verity = VerityMode::kOff;
};

Result<FsconfigOutcome> overlay_fsconfig(const OverlayPlan& p, bool& api_missing,
                                         std::vector<std::string>& warnings) {
  api_missing = false;
  auto fs = kernel::fsopen("overlay");
  if (!fs) return fail(explain_fsopen(std::move(fs).error(), "overlay", "Linux 3.18"));
  // Before overlayfs moved to fsconfig (6.5) the VFS accepted any key into a legacy option
  // string; only overlay's own parser rejects an unknown one, so a success here means the keys
  // below would not be checked.
  if (kernel::fsconfig_string(fs->get(), "cfs-probe-unknown-key", "1")) {
    api_missing = true;
    return fail(Errc::kUnsupportedFeature, "overlayfs does not parse fsconfig keys (Linux 6.5)");
  }
  CFS_TRY(kernel::fsconfig_string(fs->get(), "source", "composefs"));
  if (p.metacopy) CFS_TRY(kernel::fsconfig_string(fs->get(), "metacopy", *p.metacopy));
  if (p.redirect_dir) CFS_TRY(kernel::fsconfig_string(fs->get(), "redirect_dir", *p.redirect_dir));
  VerityMode verity = p.verity;
  if (verity != VerityMode::kOff) {
    auto r = kernel::fsconfig_string(fs->get(), "verity", to_string(verity));
    if (!r) {
      if (!r.error().is_errno(EINVAL)) return fail(std::move(r).error());
      if (!p.try_verity) return fail(Errc::kUnsupportedFeature, verity_missing_message(verity));
      warnings.push_back("tryverity: " + verity_missing_message(verity) +
                         "; mounting WITHOUT fs-verity checks of the objects");
      verity = VerityMode::kOff;
    }
  }
  if (p.userxattr) CFS_TRY(kernel::fsconfig_flag(fs->get(), "userxattr"));
  if (auto r = kernel::fsconfig_string(fs->get(), "lowerdir+", p.lower); !r) {
    if (r.error().is_errno(EINVAL)) {
      api_missing = true;
      return fail(Errc::kUnsupportedFeature, "overlayfs has no lowerdir+/datadir+ (Linux 6.7)");
    }
    return fail(std::move(r).error());
  }
  for (const auto& d : p.data) CFS_TRY(kernel::fsconfig_string(fs->get(), "datadir+", d));
  if (!p.upper.empty()) {
    CFS_TRY(kernel::fsconfig_string(fs->get(), "upperdir", p.upper));
    CFS_TRY(kernel::fsconfig_string(fs->get(), "workdir", p.work));
  }
  if (p.read_only) CFS_TRY(kernel::fsconfig_flag(fs->get(), "ro"));
  CFS_TRY(kernel::fsconfig_create(fs->get()));
  std::uint64_t attrs = p.attrs | (p.read_only ? MOUNT_ATTR_RDONLY : 0);
  CFS_ASSIGN(UniqueFd mnt, kernel::fsmount(fs->get(), attrs));
  return FsconfigOutcome{std::move(mnt), verity};
}

// Overlay's legacy parser splits options at unescaped commas and layers at unescaped colons.
std::string escape_legacy(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '\\' || c == ',' || c == ':') out += '\\';
    out += c;
  }
  return out;
}

unsigned long legacy_flags(const OverlayPlan& p) {
  unsigned long f = p.read_only ? MS_RDONLY : 0;
  if (p.attrs & MOUNT_ATTR_NOSUID) f |= MS_NOSUID;
  if (p.attrs & MOUNT_ATTR_NODEV) f |= MS_NODEV;
  if (p.attrs & MOUNT_ATTR_NOEXEC) f |= MS_NOEXEC;
  switch (p.attrs & MOUNT_ATTR__ATIME) {
    case MOUNT_ATTR_NOATIME:
      f |= MS_NOATIME;
      break;
    case MOUNT_ATTR_STRICTATIME:
      f |= MS_STRICTATIME;
      break;
    case MOUNT_ATTR_RELATIME:
      f |= MS_RELATIME;
      break;
    default:
      break;
  }
  return f;
}

std::string legacy_data(const OverlayPlan& p, bool data_only, VerityMode verity) {
  std::string d;
  auto add = [&](const std::string& item) {
    if (!d.empty()) d += ',';
    d += item;
  };
  if (p.metacopy) add("metacopy=" + *p.metacopy);
  if (p.redirect_dir) add("redirect_dir=" + *p.redirect_dir);
  std::string lower = "lowerdir=" + escape_legacy(p.lower);
  for (const auto& dir : p.data) lower += (data_only ? "::" : ":") + escape_legacy(dir);
  add(lower);
  if (!p.upper.empty()) {
    add("upperdir=" + escape_legacy(p.upper));
    add("workdir=" + escape_legacy(p.work));
  }
  if (p.userxattr) add("userxattr");
  if (verity != VerityMode::kOff) add(std::string("verity=") + to_string(verity));
  return d;
}

// Mounts with mount(2) directly on the target; tries the data-only syntax, then plain lower
// layers (where the image's root whiteouts hide the object directories), as permitted.
Result<std::pair<OverlayApi, VerityMode>> overlay_legacy(const OverlayPlan& p,
                                                         const std::string& target, OverlayApi want,
                                                         std::vector<std::string>& warnings) {
  std::vector<OverlayApi> syntaxes;
  if (want != OverlayApi::kLegacyPlain) syntaxes.push_back(OverlayApi::kLegacy);
  if (want != OverlayApi::kLegacy) syntaxes.push_back(OverlayApi::kLegacyPlain);
  std::optional<Error> last;
  for (OverlayApi syntax : syntaxes) {
    std::vector<VerityMode> modes{p.verity};
    if (p.try_verity && p.verity != VerityMode::kOff) modes.push_back(VerityMode::kOff);
    for (VerityMode v : modes) {
      std::string data = legacy_data(p, syntax == OverlayApi::kLegacy, v);
      auto r = kernel::legacy_mount("composefs", target, "overlay", legacy_flags(p), data);
      if (r) {
        if (v != p.verity)
          warnings.push_back("tryverity: " + verity_missing_message(p.verity) +
                             "; mounted WITHOUT fs-verity checks of the objects");
        if (syntax == OverlayApi::kLegacyPlain && want == OverlayApi::kAuto)
          warnings.push_back(
              "the kernel has no data-only overlay layers (Linux 6.5): the object directories "
              "are ordinary lower layers, hidden only by the image's root whiteouts");
        return std::pair{syntax, v};
      }
      if (!r.error().is_errno(EINVAL)) return fail(std::move(r).error());
      last = std::move(r).error();
    }
  }
  // mount(2) cannot say which option was refused; on a kernel older than 6.6 a requested
  // verity mode is the likely one, and that deserves a precise message.
  if (p.verity != VerityMode::kOff && !p.try_verity && kernel::kernel_version() < std::pair{6, 6})
    return fail(Errc::kUnsupportedFeature, verity_missing_message(p.verity));
  return fail(std::move(*last).with_context(
      "overlayfs refused every option syntax (see dmesg for the kernel's reason)"));
}

// The kernel accepts verity= without CONFIG_FS_VERITY and then fails every open of a file
// with a digest (overlayfs.md §5); ext4 advertises the feature in sysfs only when built with it.
std::optional<std::string> fs_verity_warning() {
  if (::access("/sys/fs/ext4", F_OK) != 0) return std::nullopt;
  if (::access("/sys/fs/ext4/features/verity", F_OK) == 0) return std::nullopt;
  return "this kernel seems to lack fs-verity (no /sys/fs/ext4/features/verity): every file "
         "with a digest will fail to open with EIO";
}

// Creates the overlay and attaches it on target. The fsconfig path creates it detached and
// runs before_attach (if any) just before attaching; mount(2) attaches at once.
Status build_overlay(const OverlayPlan& plan, const std::string& target, OverlayApi want,
                     MountReport& report, std::vector<std::string>& warnings,
                     const std::function<Status()>& before_attach) {
  if (want == OverlayApi::kAuto || want == OverlayApi::kFsconfig) {
    bool api_missing = false;
    auto r = overlay_fsconfig(plan, api_missing, warnings);
    if (r) {
      if (before_attach) CFS_TRY(before_attach());
      CFS_TRY(kernel::move_mount(r->mnt.get(), target));
      report.overlay = OverlayApi::kFsconfig;
      report.verity = r->verity;
      return {};
    }
    if (!api_missing || want == OverlayApi::kFsconfig)
      return fail(std::move(r).error().with_context("mount overlay on " + target));
  }
  CFS_ASSIGN(auto used, overlay_legacy(plan, target, want, warnings));
  report.overlay = used.first;
  report.verity = used.second;
  return {};
}

}  // namespace

const char* to_string(ErofsBackend b) noexcept {
  switch (b) {
    case ErofsBackend::kAuto:
      return "auto";
    case ErofsBackend::kFile:
      return "file";
    case ErofsBackend::kLoop:
      return "loop";
  }
  return "?";
}

const char* to_string(OverlayApi a) noexcept {
  switch (a) {
    case OverlayApi::kAuto:
      return "auto";
    case OverlayApi::kFsconfig:
      return "fsconfig";
    case OverlayApi::kLegacy:
      return "legacy";
    case OverlayApi::kLegacyPlain:
      return "legacy-plain";
  }
  return "?";
}

const char* to_string(LowerMode m) noexcept {
  switch (m) {
    case LowerMode::kAuto:
      return "auto";
    case LowerMode::kDetached:
      return "detached";
    case LowerMode::kAttached:
      return "attached";
    case LowerMode::kStacked:
      return "stacked";
  }
  return "?";
}

const char* to_string(DigestCheck c) noexcept {
  switch (c) {
    case DigestCheck::kNone:
      return "none";
    case DigestCheck::kKernel:
      return "kernel";
    case DigestCheck::kSealedCopy:
      return "sealed-copy";
  }
  return "?";
}

Result<MountReport> mount_image(const std::string& image, const std::string& target,
                                const Options& opts, const Backends& backends) {
  CFS_TRY(validate(opts));
  CFS_TRY(check_mount_point(target));
  for (const auto& d : opts.basedirs) CFS_TRY(require_dir(d, "basedir"));
  if (!opts.upperdir.empty()) {
    CFS_TRY(require_dir(opts.upperdir, "upperdir"));
    CFS_TRY(require_dir(opts.workdir, "workdir"));
  }

  MountReport report;
  CFS_ASSIGN(OpenedImage img, open_image(image, opts.digest));
  report.digest_check = img.check;
  // The kernel is the judge of the image itself: an image cfs's reader cannot take only skips
  // the store check.
  if (auto parsed = erofs::Image::open_fd(img.fd.get(), image)) {
    CFS_ASSIGN(store::ObjectDirs dirs, store::ObjectDirs::open(opts.basedirs));
    CFS_TRY(check_objects_present(*parsed, dirs));
  }

  CFS_ASSIGN(ErofsMount erofs, mount_erofs(img, backends.erofs, image));
  report.erofs = erofs.backend;
  report.loop_device = erofs.loop_device;
  if (!opts.idmap.empty()) {
    CFS_ASSIGN(UniqueFd ns, sys::open(opts.idmap, O_RDONLY));
    auto r = kernel::set_idmap(erofs.mnt.get(), ns.get());
    if (!r) return fail(std::move(r).error().with_context("idmap=" + opts.idmap));
  }

  if (effective_verity(opts) != VerityMode::kOff)
    if (auto w = fs_verity_warning()) report.warnings.push_back(*w);

  if (backends.lower != LowerMode::kAttached) {
    std::vector<std::string> warnings;
    auto r = build_overlay(make_plan(opts, sys::fd_path(erofs.mnt.get())), target, backends.overlay,
                           report, warnings, nullptr);
    if (r) {
      report.lower = LowerMode::kDetached;
      report.warnings.insert(report.warnings.end(), warnings.begin(), warnings.end());
      return report;
    }
    if (backends.lower == LowerMode::kDetached || !r.error().is_errno(EINVAL))
      return fail(std::move(r).error());
  }

  // Before Linux 6.15 overlayfs clones each layer with clone_private_mount(), which refuses a
  // mount outside the caller's namespace ("failed to clone lowerpath"). Attach the EROFS on
  // the target itself (no temporary directory), build the overlay detached, unmount the EROFS
  // (the overlay holds its own clone) and put the overlay in its place.
  auto moved = kernel::move_mount(erofs.mnt.get(), target);
  if (!moved) return fail(std::move(moved).error().with_context("attach EROFS image " + image));
  // An open fd on a mount makes umount2() fail with EBUSY.
  erofs.mnt.reset();
  CFS_ASSIGN(std::string real_target, sys::real_path(target));
  bool erofs_attached = true;
  auto detach_erofs = [&]() -> Status {
    CFS_TRY(kernel::umount(real_target, false));
    erofs_attached = false;
    return {};
  };
  std::vector<std::string> warnings;
  auto r = build_overlay(make_plan(opts, real_target), target, backends.overlay, report, warnings,
                         detach_erofs);
  if (!r) {
    if (erofs_attached) (void)kernel::umount(real_target, false);
    return fail(std::move(r).error());
  }
  report.warnings.insert(report.warnings.end(), warnings.begin(), warnings.end());
  report.lower = erofs_attached ? LowerMode::kStacked : LowerMode::kAttached;
  if (erofs_attached)
    report.warnings.push_back(
        "the kernel needs the EROFS attached while mount(2) builds the overlay: it stays "
        "mounted beneath the overlay on " +
        target + " (cfs umount removes both)");
  return report;
}

}  // namespace cfs::mount
