// SPDX-License-Identifier: Apache-2.0
#include "cfs/mount/options.h"

#include <linux/mount.h>
#include <sys/stat.h>

#include <array>
#include <cstring>
#include <exception>
#include <utility>

#include "cfs/tree/object_name.h"
#include "cfs/util/sys.h"

namespace cfs::mount {
namespace {

struct AttrOption {
  const char* name;
  std::uint64_t set;
  std::uint64_t clear;  ///< bits an option resets (the atime options are one field)
};

// VFS mount flags mount(8) passes through to helpers; they become fsmount() attributes of
// the overlay mount.
constexpr std::uint64_t kAtimeMask = MOUNT_ATTR__ATIME;
constexpr std::array<AttrOption, 9> kAttrOptions{{
    {"nosuid", MOUNT_ATTR_NOSUID, 0},
    {"nodev", MOUNT_ATTR_NODEV, 0},
    {"noexec", MOUNT_ATTR_NOEXEC, 0},
    {"suid", 0, MOUNT_ATTR_NOSUID},
    {"dev", 0, MOUNT_ATTR_NODEV},
    {"exec", 0, MOUNT_ATTR_NOEXEC},
    {"noatime", MOUNT_ATTR_NOATIME, kAtimeMask},
    {"relatime", MOUNT_ATTR_RELATIME, kAtimeMask},
    {"strictatime", MOUNT_ATTR_STRICTATIME, kAtimeMask},
}};

// Options that only mean something to mount(8) or fstab; helpers receive some of them.
bool is_userspace_only(std::string_view key) {
  static constexpr std::array<std::string_view, 9> kNames{
      "defaults", "auto", "noauto", "nofail", "user", "nouser", "users", "_netdev", "owner"};
  for (auto n : kNames)
    if (key == n) return true;
  return key.starts_with("x-") || key == "comment";
}

Result<VerityMode> parse_verity_value(std::string_view v) {
  if (auto m = overlay::parse_verity_mode(v)) return *m;
  return fail(Errc::kInvalidInput, "option verity=" + std::string(v) +
                                       ": expected verity=off, verity=on or verity=require");
}

Status check_path_value(std::string_view key, std::string_view value) {
  if (value.empty())
    return fail(Errc::kInvalidInput, "option " + std::string(key) + "= needs a path");
  return {};
}

bool redirect_follows_fully(const std::string& mode, bool has_upper) {
  // Without an upper layer overlayfs normalises follow to on (params.c); with one, follow
  // means "never create redirects", which metacopy copy-up cannot live with.
  return mode == "on" || (mode == "follow" && !has_upper);
}

// Keys only the FUSE mount knows; the kernel mount names the other mount instead of saying
// "unsupported".
bool is_fuse_only(std::string_view key) {
  return key == "source" || key == "tree_cache" || key == "threads" || key == "prefill_max";
}

Status parse_fuse_option(const std::string& key, const std::string& value, Options& opts) {
  if (key == "source") {
    CFS_TRY(check_path_value(key, value));
    opts.source = value;
  } else if (key == "tree_cache") {
    CFS_TRY(check_path_value(key, value));
    opts.tree_cache = value;
  } else {
    unsigned long long n = 0;
    std::size_t used = 0;
    try {
      n = std::stoull(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    const bool number = used != 0 && used == value.size() && value[0] != '-';
    if (key == "prefill_max") {
      // Bounded: the copy is held in memory while the open builds the tree.
      if (!number || n > (1ull << 30))
        return fail(Errc::kInvalidInput,
                    "option prefill_max=" + value + ": expected a byte count up to 1073741824");
      opts.prefill_max = n;
    } else {
      if (!number || n == 0 || n > 100000)
        return fail(Errc::kInvalidInput, "option threads=" + value + ": expected a number >= 1");
      opts.threads = static_cast<unsigned>(n);
    }
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>> split_options(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\') {
      if (i + 1 == text.size())
        return fail(Errc::kInvalidInput, "mount options end with a lone backslash");
      cur += text[++i];
    } else if (c == ',') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

Result<verity::Digest> parse_digest_hex(std::string_view hex) {
  auto d = tree::parse_digest_hex(hex);
  if (!d)
    return fail(Errc::kInvalidInput, "option digest=" + std::string(hex) +
                                         ": expected 64 (SHA-256) or 128 (SHA-512) hex digits");
  return *d;
}

Status parse_options(std::string_view text, Options& opts, Dialect dialect) {
  CFS_ASSIGN(auto items, split_options(text));
  for (const std::string& item : items) {
    auto eq = item.find('=');
    std::string key = item.substr(0, eq);
    bool has_value = eq != std::string::npos;
    std::string value = has_value ? item.substr(eq + 1) : std::string();
    auto no_value = [&]() -> Status {
      if (has_value) return fail(Errc::kInvalidInput, "option " + key + " takes no value");
      return {};
    };

    if (key == "basedir") {
      CFS_TRY(check_path_value(key, value));
      opts.basedirs.clear();
      std::size_t start = 0;
      while (true) {
        auto colon = value.find(':', start);
        std::string dir = value.substr(start, colon == std::string::npos ? colon : colon - start);
        if (dir.empty())
          return fail(Errc::kInvalidInput, "option basedir=" + value + ": empty directory name");
        opts.basedirs.push_back(std::move(dir));
        if (colon == std::string::npos) break;
        start = colon + 1;
      }
    } else if (key == "digest") {
      CFS_ASSIGN(opts.digest, parse_digest_hex(value));
    } else if (key == "verity" && !has_value) {
      opts.verity = VerityMode::kRequire;
      opts.verity_spelling = "verity";
    } else if (key == "verity") {
      CFS_ASSIGN(opts.verity, parse_verity_value(value));
      opts.verity_spelling = item;
    } else if (key == "tryverity") {
      CFS_TRY(no_value());
      opts.try_verity = true;
    } else if (key == "noverity") {
      // The upstream README mentions it but upstream rejects it; say what works instead.
      return fail(Errc::kInvalidInput, "option noverity is not supported: use verity=off");
    } else if (key == "upperdir") {
      CFS_TRY(check_path_value(key, value));
      opts.upperdir = value;
    } else if (key == "workdir") {
      CFS_TRY(check_path_value(key, value));
      opts.workdir = value;
    } else if (key == "ro" || key == "rw") {
      CFS_TRY(no_value());
      opts.read_only = key == "ro";
    } else if (key == "idmap") {
      CFS_TRY(check_path_value(key, value));
      opts.idmap = value;
    } else if (key == "metacopy") {
      if (value != "on" && value != "off")
        return fail(Errc::kInvalidInput, "option metacopy=" + value + ": expected on or off");
      opts.metacopy = value == "on";
    } else if (key == "redirect_dir") {
      if (value != "on" && value != "follow" && value != "nofollow" && value != "off")
        return fail(Errc::kInvalidInput,
                    "option redirect_dir=" + value + ": expected on, follow, nofollow or off");
      opts.redirect_dir = value;
    } else if (key == "userxattr") {
      CFS_TRY(no_value());
      opts.userxattr = true;
    } else if (key == "noacl" && dialect == Dialect::kFuse) {
      // composefs-fuse always accepted it (ACLs are never evaluated by the FUSE mount).
      CFS_TRY(no_value());
      opts.ignored.push_back(item);
    } else if (is_fuse_only(key)) {
      if (dialect != Dialect::kFuse)
        return fail(Errc::kInvalidInput,
                    "option " + key + "= is only for the FUSE mount (cfs mount --fuse)");
      CFS_TRY(parse_fuse_option(key, value, opts));
    } else if (is_userspace_only(key)) {
      opts.ignored.push_back(item);
    } else {
      bool found = false;
      for (const auto& a : kAttrOptions) {
        if (key != a.name) continue;
        CFS_TRY(no_value());
        opts.mount_attrs = (opts.mount_attrs & ~a.clear) | a.set;
        opts.attr_options.push_back(item);
        found = true;
      }
      if (found) continue;
      if (dialect != Dialect::kFuse)
        return fail(Errc::kInvalidInput, "unsupported mount option '" + item + "'");
      opts.fuse_options.push_back(item);
    }
  }
  return {};
}

VerityMode effective_verity(const Options& opts, Dialect dialect) noexcept {
  if (opts.verity) return *opts.verity;
  if (opts.try_verity || opts.digest) return VerityMode::kRequire;
  return dialect == Dialect::kFuse ? VerityMode::kOn : VerityMode::kOff;
}

Status check_mount_point(const std::string& target) {
  auto st = sys::stat(target);
  if (!st) {
    if (st.error().is_errno(ENOENT))
      return fail_errno("mount point " + target + " does not exist", ENOENT);
    return fail(std::move(st).error().with_context("mount point"));
  }
  if (!S_ISDIR(st->st_mode))
    return fail_errno("mount point " + target + " is not a directory", ENOTDIR);
  return {};
}

Status validate(const Options& opts, Dialect dialect) {
  if (dialect == Dialect::kFuse) {
    const char* kernel_only = !opts.idmap.empty() ? "idmap="
                              : opts.metacopy     ? "metacopy="
                              : opts.redirect_dir ? "redirect_dir="
                              : opts.userxattr    ? "userxattr"
                                                  : nullptr;
    if (kernel_only)
      return fail(Errc::kInvalidInput, std::string("option ") + kernel_only +
                                           " is not supported by the FUSE mount (kernel mount "
                                           "only)");
  } else if (!opts.source.empty() || !opts.tree_cache.empty() || opts.threads || opts.prefill_max) {
    return fail(Errc::kInvalidInput,
                "options source=, tree_cache=, threads= and prefill_max= are only for "
                "the FUSE mount (cfs mount --fuse)");
  }
  if (opts.basedirs.empty())
    return fail(Errc::kInvalidInput, "no object directories: option basedir= is required");
  if (opts.upperdir.empty() != opts.workdir.empty())
    return fail(Errc::kInvalidInput, opts.upperdir.empty() ? "option workdir= needs upperdir="
                                                           : "option upperdir= needs workdir=");
  bool has_upper = !opts.upperdir.empty();

  if (opts.verity == VerityMode::kOff) {
    if (opts.digest)
      return fail(Errc::kConflict,
                  "options digest= and verity=off conflict: a verified image is only worth "
                  "something when the overlay checks the object digests it contains");
    if (opts.try_verity) return fail(Errc::kConflict, "options tryverity and verity=off conflict");
  }

  VerityMode mode = effective_verity(opts, dialect);
  if (mode != VerityMode::kOff) {
    std::string v = !opts.verity_spelling.empty() ? opts.verity_spelling
                    : opts.try_verity             ? std::string("tryverity")
                                                  : std::string("digest= (implies verity=require)");
    if (opts.metacopy == false)
      return fail(Errc::kConflict,
                  "options metacopy=off and " + v +
                      " conflict: overlay verity checks the digests stored in metacopy files");
    if (opts.redirect_dir && !redirect_follows_fully(*opts.redirect_dir, has_upper))
      return fail(Errc::kConflict, "options redirect_dir=" + *opts.redirect_dir + " and " + v +
                                       " conflict: verity needs redirect_dir=on");
    if (opts.userxattr)
      return fail(Errc::kConflict,
                  "options userxattr and " + v +
                      " conflict: composefs images carry trusted.overlay.* xattrs, and Linux "
                      "before 6.16 refuses verity with userxattr");
  }
  if (opts.metacopy == true) {
    if (opts.redirect_dir && !redirect_follows_fully(*opts.redirect_dir, has_upper))
      return fail(Errc::kConflict, "options metacopy=on and redirect_dir=" + *opts.redirect_dir +
                                       " conflict: metacopy needs redirect_dir=on");
    if (opts.userxattr) return fail(Errc::kConflict, "options metacopy=on and userxattr conflict");
  }
  return {};
}

Result<Options> parse_repository_mount_options(const std::vector<std::string>& texts,
                                               Dialect dialect) {
  Options opts;
  for (const auto& text : texts) CFS_TRY(parse_options(text, opts, dialect));
  if (!opts.basedirs.empty() || opts.digest || opts.verity || opts.try_verity ||
      !opts.source.empty())
    return fail(Errc::kInvalidInput,
                "basedir=, source=, digest= and verity options are set by the repository");
  return opts;
}

}  // namespace cfs::mount
