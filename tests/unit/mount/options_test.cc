// SPDX-License-Identifier: Apache-2.0
// Option parsing and conflict validation of mount.composefs. The conflict table follows the
// checks Linux 6.6-6.15 made in fs/overlayfs/params.c (ovl_fs_params_verify); docs/mounting.md
// summarises them.
#include "cfs/mount/options.h"

#include <gtest/gtest.h>
#include <linux/mount.h>

#include <string>

namespace cfs::mount {
namespace {

Result<Options> parse(const std::string& s) {
  Options o;
  CFS_TRY(parse_options(s, o));
  return o;
}

TEST(SplitOptions, CommasAndBackslashEscapes) {
  auto r = split_options(R"(basedir=/a\,b:/c,ro,,verity)");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0], "basedir=/a,b:/c");
  EXPECT_EQ((*r)[1], "ro");
  EXPECT_EQ((*r)[2], "verity");
  EXPECT_FALSE(split_options("ro\\"));
}

TEST(ParseOptions, UpstreamOptions) {
  auto o = parse("basedir=/objs:/more,digest=" + std::string(64, 'a') +
                 ",verity,upperdir=/u,workdir=/w,ro,idmap=/proc/1/ns/user");
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->basedirs, (std::vector<std::string>{"/objs", "/more"}));
  ASSERT_TRUE(o->digest);
  EXPECT_EQ(o->digest->size, 32u);
  EXPECT_EQ(o->digest->bytes[0], 0xaa);
  EXPECT_EQ(o->verity, VerityMode::kRequire);
  EXPECT_EQ(o->upperdir, "/u");
  EXPECT_EQ(o->workdir, "/w");
  EXPECT_TRUE(o->read_only);
  EXPECT_EQ(o->idmap, "/proc/1/ns/user");
  EXPECT_TRUE(validate(*o));
}

TEST(ParseOptions, LastRoRwWinsAndOptionsAccumulate) {
  Options o;
  ASSERT_TRUE(parse_options("basedir=/x,ro", o));
  ASSERT_TRUE(parse_options("rw,noatime,nosuid", o));
  EXPECT_FALSE(o.read_only);
  EXPECT_EQ(o.basedirs.size(), 1u);
  EXPECT_EQ(o.mount_attrs, MOUNT_ATTR_NOATIME | MOUNT_ATTR_NOSUID);
  ASSERT_TRUE(parse_options("relatime", o));
  EXPECT_EQ(o.mount_attrs, MOUNT_ATTR_RELATIME | MOUNT_ATTR_NOSUID);
}

TEST(ParseOptions, VerityModes) {
  EXPECT_EQ(effective_verity(*parse("basedir=/o")), VerityMode::kOff);
  EXPECT_EQ(effective_verity(*parse("basedir=/o,verity")), VerityMode::kRequire);
  EXPECT_EQ(effective_verity(*parse("basedir=/o,verity=on")), VerityMode::kOn);
  EXPECT_EQ(effective_verity(*parse("basedir=/o,verity=off")), VerityMode::kOff);
  EXPECT_EQ(effective_verity(*parse("basedir=/o,tryverity")), VerityMode::kRequire);
  EXPECT_EQ(effective_verity(*parse("basedir=/o,digest=" + std::string(64, '0'))),
            VerityMode::kRequire);
  EXPECT_EQ(effective_verity(*parse("basedir=/o,digest=" + std::string(64, '0') + ",verity=on")),
            VerityMode::kOn);
}

TEST(ParseRepositoryMountOptions, AcceptsUserOptionsAndRefusesWhatTheRepositoryDecides) {
  auto ok =
      parse_repository_mount_options({"ro,nosuid", "upperdir=/u,workdir=/w"}, Dialect::kKernel);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->upperdir, "/u");
  EXPECT_EQ(ok->workdir, "/w");
  for (const char* bad : {"basedir=/o", "verity", "verity=require", "tryverity",
                          "digest="
                          "0000000000000000000000000000000000000000000000000000000000000000"}) {
    auto r = parse_repository_mount_options({"ro", bad}, Dialect::kKernel);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), make_error_code(Errc::kInvalidInput)) << bad;
    EXPECT_NE(r.error().message().find("set by the repository"), std::string::npos) << bad;
  }
  auto src = parse_repository_mount_options({"source=/x.img"}, Dialect::kFuse);
  ASSERT_FALSE(src);
  EXPECT_NE(src.error().message().find("set by the repository"), std::string::npos);
  auto malformed = parse_repository_mount_options({"digest=zz"}, Dialect::kKernel);
  ASSERT_FALSE(malformed);
  EXPECT_NE(malformed.error().message().find("digest"), std::string::npos);
}

// `cfs mount --repo --fuse` takes the FUSE mount's own options; the kernel mount refuses them.
TEST(ParseRepositoryMountOptions, FuseOnlyOptionsWithTheFuseDialect) {
  auto f = parse_repository_mount_options({"prefill_max=0,threads=2"}, Dialect::kFuse);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE(f->prefill_max);
  EXPECT_EQ(*f->prefill_max, 0u);
  EXPECT_EQ(f->threads, 2u);
  EXPECT_FALSE(parse_repository_mount_options({"prefill_max=0"}, Dialect::kKernel));
}

TEST(ParseOptions, Rejects) {
  struct Case {
    const char* opts;
    const char* needle;
  };
  const Case cases[] = {
      {"basedir=", "needs a path"},
      {"basedir=/a::/b", "empty directory name"},
      {"digest=xyz", "hex digits"},
      {"digest=abcd", "hex digits"},
      {"verity=maybe", "verity=off, verity=on or verity=require"},
      {"metacopy=yes", "expected on or off"},
      {"redirect_dir=always", "expected on, follow"},
      {"noverity", "use verity=off"},
      {"bogus=1", "unsupported mount option 'bogus=1'"},
      {"ro=1", "takes no value"},
  };
  for (const auto& c : cases) {
    auto r = parse(c.opts);
    ASSERT_FALSE(r) << c.opts;
    EXPECT_NE(r.error().message().find(c.needle), std::string::npos)
        << c.opts << " -> " << r.error().message();
  }
}

// One -o model for both mounts: each refuses what only the other understands, naming it.
TEST(ParseOptions, DialectsShareKeysAndRefuseTheOthersOnly) {
  Options k;
  auto r = parse_options("basedir=/o,threads=4", k, Dialect::kKernel);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("only for the FUSE mount"), std::string::npos);

  Options f;
  ASSERT_TRUE(
      parse_options("basedir=/o:/p,source=/i.cfs,tree_cache=/t,threads=4,nosuid,"
                    "allow_other,noacl",
                    f, Dialect::kFuse));
  EXPECT_EQ(f.basedirs, (std::vector<std::string>{"/o", "/p"}));
  EXPECT_EQ(f.source, "/i.cfs");
  EXPECT_EQ(f.tree_cache, "/t");
  EXPECT_EQ(f.threads, 4u);
  EXPECT_EQ(f.attr_options, (std::vector<std::string>{"nosuid"}));
  EXPECT_EQ(f.fuse_options, (std::vector<std::string>{"allow_other"}));
  EXPECT_TRUE(validate(f, Dialect::kFuse));
  EXPECT_FALSE(validate(f, Dialect::kKernel));
  // The FUSE mount checks in userspace: on by default, off only when asked.
  EXPECT_EQ(effective_verity(f, Dialect::kFuse), VerityMode::kOn);
  EXPECT_EQ(effective_verity(f, Dialect::kKernel), VerityMode::kOff);

  for (const char* kernel_only :
       {"idmap=/proc/1/ns/user", "metacopy=on", "redirect_dir=on", "userxattr"}) {
    Options o;
    ASSERT_TRUE(parse_options(std::string("basedir=/o,") + kernel_only, o, Dialect::kFuse));
    auto v = validate(o, Dialect::kFuse);
    ASSERT_FALSE(v) << kernel_only;
    EXPECT_NE(v.error().message().find("kernel mount only"), std::string::npos);
  }
  Options bad;
  EXPECT_FALSE(parse_options("basedir=/o,threads=0", bad, Dialect::kFuse));
  EXPECT_FALSE(parse_options("basedir=/o,threads=x", bad, Dialect::kFuse));
}

// prefill_max= is a FUSE-only byte count: 0 turns prefilling off, so it is not "unset".
TEST(ParseOptions, PrefillMaxIsAByteCountForTheFuseMountOnly) {
  Options f;
  EXPECT_FALSE(f.prefill_max);
  ASSERT_TRUE(parse_options("basedir=/o,prefill_max=0", f, Dialect::kFuse));
  ASSERT_TRUE(f.prefill_max);
  EXPECT_EQ(*f.prefill_max, 0u);
  ASSERT_TRUE(parse_options("basedir=/o,prefill_max=1048576", f, Dialect::kFuse));
  EXPECT_EQ(*f.prefill_max, 1048576u);
  EXPECT_TRUE(validate(f, Dialect::kFuse));
  for (const char* bad : {"prefill_max=", "prefill_max=x", "prefill_max=-1", "prefill_max=1M",
                          "prefill_max=1073741825"}) {
    Options o;
    auto r = parse_options(std::string("basedir=/o,") + bad, o, Dialect::kFuse);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message().find("prefill_max="), std::string::npos) << bad;
  }
  Options k;
  auto r = parse_options("basedir=/o,prefill_max=0", k, Dialect::kKernel);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("only for the FUSE mount"), std::string::npos);
}

TEST(CheckMountPoint, SaysWhatIsWrong) {
  auto r = check_mount_point("/nonexistent-cfs-mount-point");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("does not exist"), std::string::npos);
  r = check_mount_point("/proc/self/status");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not a directory"), std::string::npos);
  EXPECT_TRUE(check_mount_point("/"));
}

TEST(ParseOptions, IgnoresMountUserspaceOptions) {
  auto o = parse("basedir=/o,defaults,nofail,x-systemd.automount,_netdev");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->ignored.size(), 4u);
}

TEST(Validate, Requirements) {
  auto r = validate(*parse("ro"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("basedir= is required"), std::string::npos);
  r = validate(*parse("basedir=/o,upperdir=/u"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("upperdir= needs workdir="), std::string::npos);
  r = validate(*parse("basedir=/o,workdir=/w"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("workdir= needs upperdir="), std::string::npos);
}

// Each conflicting pair must be refused with both option names in the message, whatever the
// running kernel would do (6.16+ accepts several of these).
TEST(Validate, ConflictsNameBothOptions) {
  const std::string d = "digest=" + std::string(64, '1');
  struct Case {
    std::string opts;
    std::string a, b;
  };
  const Case cases[] = {
      {"metacopy=off,verity", "metacopy=off", "verity"},
      {"metacopy=off,verity=on", "metacopy=off", "verity=on"},
      {"metacopy=off,verity=require", "metacopy=off", "verity=require"},
      {"metacopy=off,tryverity", "metacopy=off", "tryverity"},
      {"metacopy=off," + d, "metacopy=off", "digest="},
      {"redirect_dir=off,verity", "redirect_dir=off", "verity"},
      {"redirect_dir=nofollow,verity=on", "redirect_dir=nofollow", "verity=on"},
      {"redirect_dir=follow,verity,upperdir=/u,workdir=/w", "redirect_dir=follow", "verity"},
      {"userxattr,verity=require", "userxattr", "verity=require"},
      {"verity=off," + d, "digest=", "verity=off"},
      {"verity=off,tryverity", "tryverity", "verity=off"},
      {"metacopy=on,redirect_dir=nofollow", "metacopy=on", "redirect_dir=nofollow"},
      {"metacopy=on,redirect_dir=off", "metacopy=on", "redirect_dir=off"},
      {"metacopy=on,redirect_dir=follow,upperdir=/u,workdir=/w", "metacopy=on",
       "redirect_dir=follow"},
      {"metacopy=on,userxattr", "metacopy=on", "userxattr"},
  };
  for (const auto& c : cases) {
    auto o = parse("basedir=/o," + c.opts);
    ASSERT_TRUE(o) << c.opts;
    auto r = validate(*o);
    ASSERT_FALSE(r) << c.opts;
    EXPECT_TRUE(r.error().is(Errc::kConflict)) << c.opts;
    const std::string m = r.error().message();
    EXPECT_NE(m.find(c.a), std::string::npos) << c.opts << " -> " << m;
    EXPECT_NE(m.find(c.b), std::string::npos) << c.opts << " -> " << m;
  }
}

TEST(Validate, AcceptedCombinations) {
  const char* ok[] = {
      "verity,metacopy=on,redirect_dir=on",
      "verity,redirect_dir=follow",  // no upper layer: follow counts as on
      "metacopy=off",                // no verity: the user's choice (6.16+ needs no metacopy)
      "redirect_dir=nofollow",       // implicitly disables metacopy, as overlayfs does
      "verity=off,metacopy=off",
      "userxattr",
      "tryverity,upperdir=/u,workdir=/w",
  };
  for (const char* s : ok) {
    auto o = parse(std::string("basedir=/o,") + s);
    ASSERT_TRUE(o) << s;
    auto r = validate(*o);
    EXPECT_TRUE(r) << s << " -> " << r.error().message();
  }
}

}  // namespace
}  // namespace cfs::mount
