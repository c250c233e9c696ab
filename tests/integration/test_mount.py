#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root
# ctest-timeout: 300
"""Kernel mounts with mount.composefs / cfs mount on this machine's kernel (EROFS + overlayfs,
no fs-verity): the mounted tree equals the source, every mount path (file-backed or loop EROFS;
fsconfig, legacy data-only or legacy plain overlay) works, verity modes reach the kernel,
conflicting options are refused, upper layers and copy-up work, errors are clear, and
unmounting leaves nothing behind."""
import errno
import fcntl
import glob
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import time
import unittest

import cfs_images as ci
import cfs_testlib as t


mountinfo = t.mountinfo


def kernel_version():
    return tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])


def loop_devices():
    """{loopN: backing file}. Other tests on the machine may use loop devices too, so checks
    compare only devices backed by this test's images or sealed copies."""
    out = {}
    for p in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            with open(p) as f:
                out[p.split("/")[3]] = f.read().strip()  # /sys/block/loopN/loop/backing_file
        except OSError:
            pass
    return out


def loop_backing_inode(dev):
    """(st_dev, st_ino) of the file behind /dev/DEV (LOOP_GET_STATUS64), None when detached.
    A sealed copy is a memfd, named like every other test's ("/memfd:composefs-image"), but its
    inode is its own: that is how this test tells its copies from a neighbour's."""
    try:
        fd = os.open(f"/dev/{dev}", os.O_RDONLY)
    except OSError:
        return None
    try:
        buf = bytearray(232)  # struct loop_info64
        fcntl.ioctl(fd, 0x4C05, buf)  # LOOP_GET_STATUS64
        return struct.unpack_from("=QQ", buf)  # lo_device, lo_inode
    except OSError:  # ENXIO: no file bound
        return None
    finally:
        os.close(fd)


class Fixture:
    """One source tree and its image + store, shared by the test cases."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cfs-mount-test-")
        os.chmod(self.dir, 0o755)  # the not-root case must reach the mount point
        self.src = os.path.join(self.dir, "src")
        self.image = os.path.join(self.dir, "image.cfs")
        self.store = os.path.join(self.dir, "objects")
        os.makedirs(os.path.join(self.dir, "work"))
        ci.make_tree(self.src)
        self.builder = ci.build_image(self.src, self.image, self.store,
                                      os.path.join(self.dir, "work"))
        self.expected = ci.expected_through_mount(ci.snapshot(self.src))

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


FIX = None


def setUpModule():
    global FIX
    t.require_root()
    if shutil.which("modprobe"):
        for fs in ("erofs", "overlay"):
            subprocess.run(["modprobe", fs], capture_output=True)
    with open("/proc/filesystems") as f:
        have = f.read()
    for fs in ("erofs", "overlay"):
        if fs not in have:
            t.skip(f"kernel has no {fs} filesystem")
    for tool in ("mkfs.erofs", "fsverity", "cp"):
        if not shutil.which(tool):
            t.skip(f"{tool} not installed")
    FIX = Fixture()
    print(f"images built by: {FIX.builder}", flush=True)


def tearDownModule():
    if FIX:
        FIX.cleanup()


class MountCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cfs-mnt-", dir=FIX.dir)
        os.chmod(self.tmp, 0o755)
        self.mnt = os.path.join(self.tmp, "mnt")
        os.makedirs(self.mnt)
        self.loops_before = loop_devices()
        self.sealed_copies = set()  # backing inodes of the memfd loop devices this test made

    def tearDown(self):
        while os.path.ismount(self.mnt):
            subprocess.run(["umount", self.mnt], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cfs_mount(self, opts="", image=None, extra=(), check=True):
        o = "basedir=" + FIX.store + ("," + opts if opts else "")
        p = t.run([t.tool("cfs"), "mount", "--json", *extra, image or FIX.image, self.mnt,
                   "-o", o], check=check)
        if p.returncode != 0:
            return p
        r = json.loads(p.stdout)
        if r.get("loop_device"):
            dev = os.path.basename(r["loop_device"])
            if loop_devices().get(dev, "").startswith("/memfd:"):
                self.sealed_copies.add(loop_backing_inode(dev))
        return r

    def mount_composefs(self, opts, image=None):
        return t.run([t.tool("mount.composefs"), image or FIX.image, self.mnt, "-o", opts],
                     check=False)

    def umount(self):
        t.run([t.tool("cfs"), "umount", self.mnt])
        self.assertFalse(os.path.ismount(self.mnt))

    def assert_tree_matches(self):
        got = ci.snapshot(self.mnt)
        for rel in sorted(set(FIX.expected) | set(got)):
            self.assertEqual(got.get(rel), FIX.expected.get(rel), f"mismatch at {rel}")

    def assert_nothing_left(self, info_before=None):
        # Scoped to this test's files: other tests may mount concurrently on a shared host.
        ours = [ln for ln in mountinfo().splitlines() if FIX.dir in ln]
        self.assertEqual(ours, [], "mounts left under the test directory")
        def ours():
            return {d: b for d, b in loop_devices().items()
                    if (d, b) not in self.loops_before.items() and
                    (b.startswith(FIX.dir) or (b.startswith("/memfd:composefs-image") and
                                               loop_backing_inode(d) in self.sealed_copies))}
        # An autoclear loop device may be released just after the unmount returns.
        for _ in range(100):
            new = ours()
            if not new:
                break
            time.sleep(0.05)
        self.assertEqual(new, {}, "loop devices left")
        leftovers = glob.glob("/tmp/.composefs.*") + glob.glob("/tmp/composefs.*")
        self.assertEqual(leftovers, [], "temporary directories left")


class TreeAndPaths(MountCase):
    def test_default_path_tree_equals_source(self):
        before = mountinfo()
        r = self.cfs_mount()
        # What probing must choose on this kernel (overlayfs.md §9, mounting.md §4).
        k = kernel_version()
        self.assertEqual(r["erofs"], "file" if k >= (6, 12) else "loop")
        self.assertEqual(r["overlay"], "fsconfig" if k >= (6, 7) else "legacy")
        self.assertEqual(r["lower"], "detached" if k >= (6, 15) else "attached")
        self.assertEqual(r["verity"], "off")
        line = [ln for ln in mountinfo().splitlines() if f" {self.mnt} " in ln]
        self.assertEqual(len(line), 1)
        self.assertIn(" - overlay composefs ", line[0])
        self.assertIn("lowerdir+=", line[0])
        self.assertIn("datadir+=" + FIX.store, line[0])
        # The EROFS is detached: the overlay is the only mount on the target.
        self.assertEqual([ln for ln in mountinfo().splitlines() if " - erofs " in ln and
                          (f" {self.mnt} " in ln or FIX.dir in ln)], [])
        self.assert_tree_matches()
        self.umount()
        self.assert_nothing_left(before)

    def test_forced_paths(self):
        # (erofs backend, overlay API, lower mode requested, lower mode expected). "attached"
        # is what kernels before 6.15 need (they refuse a detached layer); with mount(2) the
        # EROFS then stays stacked beneath the overlay.
        cases = [("loop", "fsconfig", "detached", "detached"),
                 ("file", "legacy", "detached", "detached"),
                 ("file", "legacy-plain", "detached", "detached"),
                 ("loop", "legacy-plain", "auto", "detached"),
                 ("file", "fsconfig", "attached", "attached"),
                 ("loop", "fsconfig", "attached", "attached"),
                 ("file", "legacy", "attached", "stacked")]
        for erofs, overlay, lower, lower_used in cases:
            with self.subTest(erofs=erofs, overlay=overlay, lower=lower):
                before = mountinfo()
                r = self.cfs_mount(extra=["--erofs-backend", erofs, "--overlay-api", overlay,
                                          "--lower-mode", lower])
                self.assertEqual((r["erofs"], r["overlay"], r["lower"]),
                                 (erofs, overlay, lower_used))
                erofs_mounts = [ln for ln in mountinfo().splitlines()
                                if " - erofs " in ln and f" {self.mnt} " in ln]
                self.assertEqual(len(erofs_mounts), 1 if lower_used == "stacked" else 0)
                line = [ln for ln in mountinfo().splitlines() if f" {self.mnt} " in ln][-1]
                if overlay == "legacy":
                    self.assertIn("::" + FIX.store, line)
                if overlay == "legacy-plain":
                    self.assertIn(":" + FIX.store, line)
                    self.assertNotIn("::", line)
                if erofs == "loop":
                    dev = os.path.basename(r["loop_device"])
                    with open(f"/sys/block/{dev}/loop/backing_file") as f:
                        self.assertEqual(f.read().strip(), os.path.realpath(FIX.image))
                    with open(f"/sys/block/{dev}/loop/autoclear") as f:
                        self.assertEqual(f.read().strip(), "1")
                    with open(f"/sys/block/{dev}/ro") as f:
                        self.assertEqual(f.read().strip(), "1")
                # Plain lower layers: the image's root whiteouts hide the object directories.
                self.assert_tree_matches()
                self.umount()
                self.assert_nothing_left(before)

    def test_mount_helper_via_mount8(self):
        """`mount -t composefs` finds /sbin/mount.composefs: run it in a private mount
        namespace whose /usr/sbin holds only our symlink."""
        if not shutil.which("unshare") or not os.path.exists("/usr/bin/mount"):
            self.skipTest("unshare or mount(8) missing")
        script = (f"mount -t tmpfs cfs-sbin /usr/sbin && "
                  f"ln -s {t.tool('cfs')} /usr/sbin/mount.composefs && "
                  f"/usr/bin/mount -t composefs -o basedir={FIX.store},ro {FIX.image} {self.mnt} && "
                  f"grep ' {self.mnt} ' /proc/self/mountinfo && cat {self.mnt}/small && "
                  f"umount {self.mnt}")
        p = t.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], check=False)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = p.stdout.decode()
        self.assertIn("overlay composefs", out)
        self.assertIn("hello composefs", out)

    def test_mount_composefs_flags(self):
        before = mountinfo()
        p = t.run([t.tool("mount.composefs"), "-n", "-v", FIX.image, self.mnt, "-o",
                   f"basedir={FIX.store},nosuid,nodev", "-t", "composefs"], check=False)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertIn(b"overlay=fsconfig", p.stdout)
        line = [ln for ln in mountinfo().splitlines() if f" {self.mnt} " in ln][0]
        self.assertIn("nosuid", line.split()[5])
        self.assertIn("nodev", line.split()[5])
        self.umount()
        # -f (fake) validates and mounts nothing.
        p = t.run([t.tool("mount.composefs"), "-f", FIX.image, self.mnt, "-o",
                   f"basedir={FIX.store}"], check=False)
        self.assertEqual(p.returncode, 0)
        self.assertFalse(os.path.ismount(self.mnt))
        p = t.run([t.tool("mount.composefs"), "-t", "ext4", FIX.image, self.mnt, "-o",
                   f"basedir={FIX.store}"], check=False)
        self.assertEqual(p.returncode, 2)
        self.assert_nothing_left(before)

    def test_escaped_path_with_comma(self):
        """A basedir containing a comma (escaped for mount(8) with a backslash) survives both
        option syntaxes: one fsconfig key per layer, and overlay's escaped legacy string."""
        target = os.path.join(self.tmp, "obj,ects")
        os.symlink(FIX.store, target)
        for api in ("fsconfig", "legacy"):
            with self.subTest(api=api):
                t.run([t.tool("cfs"), "mount", "--overlay-api", api, FIX.image, self.mnt,
                       "-o", "basedir=" + target.replace(",", "\\,")])
                with open(os.path.join(self.mnt, "big"), "rb") as f:
                    self.assertEqual(len(f.read()), 200_000)
                self.umount()


class Verity(MountCase):
    def test_verity_modes_reach_kernel(self):
        for opts, mode in [("verity=off", "off"), ("verity=on", "on"), ("verity", "require"),
                           ("verity=require", "require")]:
            with self.subTest(opts=opts):
                r = self.cfs_mount(opts)
                self.assertEqual(r["verity"], mode)
                line = [ln for ln in mountinfo().splitlines() if f" {self.mnt} " in ln][-1]
                if mode == "off":
                    self.assertNotIn("verity=", line)
                else:
                    self.assertIn(f"verity={mode}", line)
                    self.assertIn("metacopy=on", line)  # on every kernel, not only < 6.16
                # Inline files never involve the data layer.
                with open(os.path.join(self.mnt, "small"), "rb") as f:
                    self.assertEqual(f.read(), b"hello composefs\n")
                # stat never checks digests; open does.
                os.stat(os.path.join(self.mnt, "big"))
                if mode == "off":
                    self.assert_tree_matches()
                elif not os.path.exists("/sys/fs/ext4/features/verity"):
                    # No fs-verity in this kernel: every file with a digest fails at open.
                    with self.assertRaises(OSError) as cm:
                        open(os.path.join(self.mnt, "big"), "rb").close()
                    self.assertEqual(cm.exception.errno, errno.EIO)
                    self.assertTrue(r["warnings"], "expected the no-fs-verity warning")
                self.umount()

    def test_verity_off_ignores_wrong_digest(self):
        d = os.path.join(self.tmp, "wrong")
        os.makedirs(os.path.join(d, "work"))
        src = os.path.join(d, "src")
        os.makedirs(src)
        with open(os.path.join(src, "f"), "wb") as f:
            f.write(b"content whose digest will be recorded wrongly in the image " * 3)
        img, store = os.path.join(d, "img.cfs"), os.path.join(d, "objects")
        ci.emulate_mkcomposefs(src, img, store, os.path.join(d, "work"),
                               {"f": bytes.fromhex("00240001" + "ab" * 32)})
        t.run([t.tool("cfs"), "mount", img, self.mnt, "-o", f"basedir={store},verity=off"])
        with open(os.path.join(self.mnt, "f"), "rb") as f:
            self.assertTrue(f.read().startswith(b"content whose digest"))
        self.umount()

    def test_digest_option_sealed_copy(self):
        digest = ci.fsverity_digest(FIX.image)
        before = mountinfo()
        r = self.cfs_mount("digest=" + digest)
        # This machine's image file has no fs-verity: the sealed memfd copy was checked and
        # mounted (memfds are not file-backed-EROFS capable, hence the loop device).
        self.assertEqual(r["digest_check"], "sealed-copy")
        self.assertEqual(r["erofs"], "loop")
        self.assertEqual(r["verity"], "require")
        with open(f"/sys/block/{os.path.basename(r['loop_device'])}/loop/backing_file") as f:
            self.assertIn("memfd:", f.read())
        with open(os.path.join(self.mnt, "small"), "rb") as f:
            self.assertEqual(f.read(), b"hello composefs\n")
        self.umount()
        self.assert_nothing_left(before)

        wrong = "0" * 64
        p = self.mount_composefs(f"basedir={FIX.store},digest={wrong}")
        self.assertEqual(p.returncode, 1)
        err = p.stderr.decode()
        self.assertIn("wrong fs-verity digest", err)
        self.assertIn("sha256:" + wrong, err)
        self.assertIn("sha256:" + digest, err)
        self.assertFalse(os.path.ismount(self.mnt))
        self.assert_nothing_left(before)

    def test_tryverity(self):
        r = self.cfs_mount("tryverity")
        # This kernel has the verity= option (6.6+), so tryverity means require.
        self.assertEqual(r["verity"], "require")
        self.umount()


class Conflicts(MountCase):
    CASES = [
        ("metacopy=off,verity", ["metacopy=off", "verity"]),
        ("metacopy=off,verity=require", ["metacopy=off", "verity=require"]),
        ("redirect_dir=nofollow,verity=on", ["redirect_dir=nofollow", "verity=on"]),
        ("redirect_dir=off,verity", ["redirect_dir=off", "verity"]),
        ("userxattr,verity", ["userxattr", "verity"]),
        ("verity=off,digest=" + "1" * 64, ["digest=", "verity=off"]),
        ("metacopy=on,redirect_dir=nofollow", ["metacopy=on", "redirect_dir=nofollow"]),
        ("upperdir=/tmp", ["upperdir=", "workdir="]),
    ]

    def test_conflicts_refused_on_this_kernel(self):
        before = mountinfo()
        for opts, names in self.CASES:
            with self.subTest(opts=opts):
                p = self.mount_composefs(f"basedir={FIX.store},{opts}")
                self.assertEqual(p.returncode, 1, p.stderr)
                err = p.stderr.decode()
                self.assertTrue(err.startswith("mount.composefs: error: "), err)
                for n in names:
                    self.assertIn(n, err)
                self.assertFalse(os.path.ismount(self.mnt))
        self.assert_nothing_left(before)


class Errors(MountCase):
    def expect_error(self, opts, needle, image=None, code=1):
        p = self.mount_composefs(opts, image)
        self.assertEqual(p.returncode, code, p.stderr)
        self.assertIn(needle, p.stderr.decode())
        self.assertFalse(os.path.ismount(self.mnt))

    def test_errors(self):
        before = mountinfo()
        not_cfs = os.path.join(self.tmp, "not.cfs")
        with open(not_cfs, "wb") as f:
            f.write(b"\0" * 8192)
        self.expect_error(f"basedir={FIX.store}", "not a composefs image", not_cfs)
        self.expect_error(f"basedir={FIX.store}", "No such file", not_cfs + ".missing")
        self.expect_error(f"basedir={self.tmp}/nope", "basedir")
        self.expect_error(f"basedir={self.tmp}/nope", "No such file or directory")
        self.expect_error("ro", "basedir= is required")
        self.expect_error(f"basedir={FIX.store},bogus", "unsupported mount option 'bogus'", code=2)
        self.expect_error(f"basedir={FIX.store},digest=12", "hex digits", code=2)
        # A store holding none of the image's objects: refused up front, naming the basedir.
        empty = os.path.join(self.tmp, "empty-store")
        os.makedirs(empty)
        self.expect_error(f"basedir={empty}", f"basedir={empty} holds none of the image's")
        self.assert_nothing_left(before)

    def test_missing_mount_point(self):
        for argv in ([t.tool("mount.composefs"), FIX.image, self.mnt + "-nope", "-o",
                      f"basedir={FIX.store}"],
                     [t.tool("cfs"), "mount", "--fuse", FIX.image, self.mnt + "-nope", "-o",
                      f"basedir={FIX.store}"]):
            p = t.run(argv, check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(f"mount point {self.mnt}-nope does not exist", p.stderr.decode())

    def test_not_root(self):
        if not shutil.which("setpriv"):
            self.skipTest("setpriv missing")
        p = t.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   t.tool("mount.composefs"), FIX.image, self.mnt, "-o",
                   f"basedir={FIX.store}"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("needs root", p.stderr.decode())

    def test_missing_object_fails_at_open(self):
        d = os.path.join(self.tmp, "partial")
        shutil.copytree(FIX.store, d)
        digest = ci.fsverity_digest(os.path.join(FIX.src, "big"))
        os.unlink(os.path.join(d, digest[:2], digest[2:]))
        t.run([t.tool("cfs"), "mount", FIX.image, self.mnt, "-o", f"basedir={d}"])
        os.stat(os.path.join(self.mnt, "big"))  # lookup is lazy: stat works
        with self.assertRaises(OSError) as cm:
            open(os.path.join(self.mnt, "big"), "rb").close()
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        self.umount()

    def test_odd_mount_point_names(self):
        """mountinfo escapes spaces, tabs, newlines and backslashes as octal; cfs umount must
        still find the mount point."""
        odd = os.path.join(self.tmp, "a dir\twith\\odd\nname")
        os.makedirs(odd)
        t.run([t.tool("cfs"), "mount", FIX.image, odd, "-o", f"basedir={FIX.store}"])
        self.assertTrue(os.path.ismount(odd))
        with open(os.path.join(odd, "small"), "rb") as f:
            self.assertEqual(f.read(), b"hello composefs\n")
        t.run([t.tool("cfs"), "umount", odd])
        self.assertFalse(os.path.ismount(odd))

    def test_umount_fuse_mount(self):
        """cfs umount also removes a userspace (`cfs mount --fuse`) mount."""
        if not os.path.exists("/dev/fuse"):
            self.skipTest("no /dev/fuse")
        p = t.run([t.tool("cfs"), "mount", "--fuse", FIX.image, self.mnt, "-o",
                   f"basedir={FIX.store}"], check=False)
        if p.returncode != 0:
            self.skipTest(f"cfs mount --fuse unavailable: {p.stderr.decode()[:200]}")
        for _ in range(50):
            if os.path.ismount(self.mnt):
                break
            time.sleep(0.1)
        self.assertIn(" fuse.composefs ", [ln for ln in mountinfo().splitlines()
                                           if f" {self.mnt} " in ln][0])
        t.run([t.tool("cfs"), "umount", self.mnt])
        self.assertFalse(os.path.ismount(self.mnt))

    def test_umount_refuses_non_composefs(self):
        p = t.run([t.tool("cfs"), "umount", self.mnt], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a mount point", p.stderr.decode())
        p = t.run([t.tool("cfs"), "umount", "/proc"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not a composefs mount", p.stderr.decode())
        self.assertTrue(os.path.ismount("/proc"))


class Upper(MountCase):
    def setUp(self):
        super().setUp()
        self.upper = os.path.join(self.tmp, "upper")
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.upper)
        os.makedirs(self.work)

    def test_write_and_copy_up(self):
        r = self.cfs_mount(f"upperdir={self.upper},workdir={self.work},rw")
        self.assertEqual(r["overlay"], "fsconfig")
        m = self.mnt
        with open(os.path.join(m, "new-file"), "wb") as f:
            f.write(b"written through the mount\n")
        with open(os.path.join(self.upper, "new-file"), "rb") as f:
            self.assertEqual(f.read(), b"written through the mount\n")

        # Metadata-only copy-up of a metacopy file: the upper file is again a metacopy file
        # (no data blocks) whose data still comes from the object store. Without fs-verity in
        # the kernel the new metacopy xattr carries no digest (overlayfs.md §6).
        with open(os.path.join(FIX.src, "big"), "rb") as f:
            big = f.read()
        os.chmod(os.path.join(m, "big"), 0o600)
        up = os.path.join(self.upper, "big")
        st = os.lstat(up)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        # No data extents (st_blocks may count an ext4 xattr block): SEEK_DATA finds none.
        with open(up, "rb") as f:
            with self.assertRaises(OSError) as cm:
                os.lseek(f.fileno(), 0, os.SEEK_DATA)
            self.assertEqual(cm.exception.errno, errno.ENXIO, "metadata copy-up copied data")
        self.assertIn("trusted.overlay.metacopy", os.listxattr(up))
        value = os.getxattr(up, "trusted.overlay.metacopy")
        if os.path.exists("/sys/fs/ext4/features/verity"):
            self.assertIn(value, (b"", bytes.fromhex("00240001" + ci.fsverity_digest(
                os.path.join(FIX.src, "big")))))
        else:
            self.assertEqual(value, b"")
        with open(os.path.join(m, "big"), "rb") as f:
            self.assertEqual(f.read(), big)

        # Data copy-up: the metacopy xattr goes, the upper holds the full new content.
        with open(os.path.join(m, "big"), "ab") as f:
            f.write(b"appended")
        self.assertNotIn("trusted.overlay.metacopy", os.listxattr(up))
        with open(up, "rb") as f:
            self.assertEqual(f.read(), big + b"appended")

        # Deleting a lower file leaves a whiteout in the upper layer.
        os.unlink(os.path.join(m, "small"))
        wst = os.lstat(os.path.join(self.upper, "small"))
        self.assertTrue(stat.S_ISCHR(wst.st_mode) and wst.st_rdev == 0)
        self.assertFalse(os.path.exists(os.path.join(m, "small")))
        self.umount()

    def test_require_refuses_copy_up_without_verity(self):
        if os.path.exists("/sys/fs/ext4/features/verity"):
            self.skipTest("kernel has fs-verity; the VM test covers copy-up with digests")
        self.cfs_mount(f"upperdir={self.upper},workdir={self.work},verity=require")
        with self.assertRaises(OSError) as cm:
            os.chmod(os.path.join(self.mnt, "big"), 0o600)
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertFalse(os.path.exists(os.path.join(self.upper, "big")))
        self.umount()

    def test_ro_with_upper(self):
        self.cfs_mount(f"upperdir={self.upper},workdir={self.work},ro")
        with self.assertRaises(OSError) as cm:
            open(os.path.join(self.mnt, "new"), "wb").close()
        self.assertEqual(cm.exception.errno, errno.EROFS)
        self.umount()


class Idmap(MountCase):
    def test_idmap_shifts_owners(self):
        if not shutil.which("unshare"):
            self.skipTest("unshare missing")
        holder = subprocess.Popen(["unshare", "--user", "sleep", "60"])
        try:
            # Until the holder is in its own user namespace: a map written before unshare(2)
            # would be the initial namespace's, refused (EPERM; a fixed 0.3 s was not always
            # enough on a loaded machine).
            own = os.readlink("/proc/self/ns/user")
            deadline = time.monotonic() + 30
            while os.readlink(f"/proc/{holder.pid}/ns/user") == own:
                self.assertIsNone(holder.poll(), "unshare --user exited")
                self.assertLess(time.monotonic(), deadline, "unshare --user never unshared")
                time.sleep(0.01)
            # Root may write any mapping of a child user namespace.
            for f in ("uid_map", "gid_map"):
                with open(f"/proc/{holder.pid}/{f}", "w") as m:
                    m.write("0 100000 65536\n")
            self.cfs_mount(f"idmap=/proc/{holder.pid}/ns/user")
            self.assertEqual(os.lstat(os.path.join(self.mnt, "small")).st_uid, 100000)
            st = os.lstat(os.path.join(self.mnt, "owned"))
            self.assertEqual((st.st_uid, st.st_gid), (101234, 105678))
            with open(os.path.join(self.mnt, "owned"), "rb") as f:
                self.assertTrue(f.read().startswith(b"owned by someone else"))
            self.umount()
        finally:
            holder.kill()
            holder.wait()


class Nesting(MountCase):
    def test_xwhiteout_hides_lower_in_stacked_overlay(self):
        """The image's whiteout (nest/gone) is an xwhiteout through the composefs mount, so a
        container overlay stacked on it hides the same name in a lower layer below."""
        self.cfs_mount()
        lower2 = os.path.join(self.tmp, "lower2")
        os.makedirs(os.path.join(lower2, "nest"))
        for n in ("gone", "keep", "extra"):
            with open(os.path.join(lower2, "nest", n), "w") as f:
                f.write("from lower2\n")
        outer = os.path.join(self.tmp, "outer")
        os.makedirs(outer)
        t.run(["mount", "-t", "overlay", "outer", "-o", f"lowerdir={self.mnt}:{lower2}", outer])
        try:
            names = sorted(os.listdir(os.path.join(outer, "nest")))
            self.assertEqual(names, ["extra", "keep"])
            with open(os.path.join(outer, "nest", "keep")) as f:
                self.assertEqual(f.read(), "kept\n")
        finally:
            t.run(["umount", outer])
        self.umount()


if __name__ == "__main__":
    t.main()
