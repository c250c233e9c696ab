#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;fuse;root
# ctest-timeout: 300
"""The FUSE mount with a writable upper layer (upperdir=,workdir=).

Writes, renames and deletes through the mount, then checks the upper directory in overlayfs'
on-disk format: whiteouts (chardev 0/0), opaque directories, a chmod of a lower file giving a
metacopy copy-up whose `trusted.overlay.metacopy` holds the object's fs-verity digest (oracle:
`fsverity digest` of the object), a data write giving a full copy without metacopy. Changes
persist across remounts, and the kernel's own overlay (mount -t erofs + overlay with the same
upperdir) shows the same tree and contents."""
import os
import random
import shutil
import stat
import subprocess
import tempfile
import unittest

import cfs_testlib as t

from test_fuse_mount import fuse_umount, is_mounted, require_fuse


def fsverity_digest(path):
    p = t.run(["fsverity", "digest", "--compact", path])
    return p.stdout.decode().strip()


def listing(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            out[rel] = (st.st_mode, st.st_uid, st.st_size, data)
    return out


class FuseUpper(unittest.TestCase):
    def setUp(self):
        require_fuse()
        if shutil.which("fsverity") is None:
            t.skip("fsverity (fsverity-utils) not installed")
        self.dir = tempfile.mkdtemp(prefix="cfs-upper-")
        d = self.dir
        self.src, self.store, self.image = f"{d}/src", f"{d}/store", f"{d}/image.cfs"
        self.mnt, self.upper, self.work = f"{d}/mnt", f"{d}/upper", f"{d}/work"
        for p in (self.src, self.mnt, self.upper, self.work):
            os.makedirs(p)
        rng = random.Random(11)
        self.big = rng.randbytes(300000)
        os.makedirs(f"{self.src}/d/sub")
        os.makedirs(f"{self.src}/e")
        with open(f"{self.src}/big", "wb") as f:
            f.write(self.big)
        with open(f"{self.src}/d/f", "wb") as f:
            f.write(b"hello world\n" * 500)
        with open(f"{self.src}/d/sub/x", "wb") as f:
            f.write(rng.randbytes(9000))
        with open(f"{self.src}/e/gone", "wb") as f:
            f.write(rng.randbytes(7000))
        os.symlink("f", f"{self.src}/d/lnk")
        p = t.run([t.tool("mkcomposefs"), f"--digest-store={self.store}", self.src, self.image],
                  check=False)
        if p.returncode != 0:
            self.skipTest("mkcomposefs cannot build images: " + p.stderr.decode(errors="replace"))

    def tearDown(self):
        for m in (self.mnt, f"{self.dir}/k", f"{self.dir}/e"):
            if is_mounted(m):
                subprocess.run(["umount", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def mount(self):
        t.run([t.tool("cfs"), "mount", "--fuse", self.image, self.mnt, "-o",
               f"basedir={self.store},verity=require,upperdir={self.upper},workdir={self.work}"])
        self.assertTrue(is_mounted(self.mnt))

    def object_of(self, src_rel):
        digest = fsverity_digest(f"{self.src}/{src_rel}")
        if ":" in digest:
            digest = digest.split(":", 1)[1]
        return f"{self.store}/{digest[:2]}/{digest[2:]}"

    def up(self, rel):
        return f"{self.upper}/{rel}"

    def assert_whiteout(self, rel):
        st = os.lstat(self.up(rel))
        self.assertTrue(stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, rel)

    def test_write_rename_delete_copy_up_and_kernel_view(self):
        m = self.mnt
        self.mount()
        try:
            # Metadata-only change of a lower metacopy file: metacopy copy-up with the digest.
            os.chmod(f"{m}/big", 0o600)
            obj = self.object_of("big")
            self.assertTrue(os.path.exists(obj), obj)
            want = bytes.fromhex("00240001" + fsverity_digest(obj).split(":")[-1])
            self.assertEqual(os.getxattr(self.up("big"), "trusted.overlay.metacopy"), want)
            self.assertEqual(os.getxattr(self.up("big"), "trusted.overlay.redirect"), b"/big")
            st = os.lstat(self.up("big"))
            self.assertEqual(st.st_size, len(self.big))
            self.assertLessEqual(st.st_blocks, 8)  # sparse (at most an xattr block)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
            with open(f"{m}/big", "rb") as f:
                self.assertEqual(f.read(), self.big)
            self.assertNotIn("trusted.overlay.metacopy", os.listxattr(f"{m}/big"))
            # Data change: full copy-up, no metacopy left.
            with open(f"{m}/big", "r+b") as f:
                f.seek(100)
                f.write(b"PATCHED")
            new_big = self.big[:100] + b"PATCHED" + self.big[107:]
            with open(self.up("big"), "rb") as f:
                self.assertEqual(f.read(), new_big)
            self.assertNotIn("trusted.overlay.metacopy", os.listxattr(self.up("big")))
            self.assertNotIn("trusted.overlay.redirect", os.listxattr(self.up("big")))
            self.assertEqual(stat.S_IMODE(os.lstat(self.up("big")).st_mode), 0o600)
            # Creates, renames, deletes.
            with open(f"{m}/d/new", "wb") as f:
                f.write(b"new file\n")
            os.rename(f"{m}/d/f", f"{m}/moved")         # lower file: metacopy + redirect
            self.assert_whiteout("d/f")
            self.assertEqual(os.getxattr(self.up("moved"), "trusted.overlay.redirect"), b"/d/f")
            os.unlink(f"{m}/e/gone")
            self.assert_whiteout("e/gone")
            os.rmdir(f"{m}/e")
            self.assert_whiteout("e")
            with self.assertRaises(OSError) as cm:
                os.rename(f"{m}/d", f"{m}/dd")          # lower directory: EXDEV
            self.assertEqual(cm.exception.errno, 18)
            os.mkdir(f"{m}/e")                           # over the whiteout: opaque
            self.assertEqual(os.getxattr(self.up("e"), "trusted.overlay.opaque"), b"y")
            os.mkdir(f"{m}/n")
            os.symlink("../moved", f"{m}/n/l")
            os.rename(f"{m}/n", f"{m}/n2")
            os.link(f"{m}/d/new", f"{m}/n2/hard")
            self.assertEqual(os.lstat(f"{m}/n2/hard").st_nlink, 2)
            os.setxattr(f"{m}/d/sub/x", "user.note", b"v")
            self.assertEqual(os.getxattr(self.up("d/sub/x"), "user.note"), b"v")
            self.assertEqual(sorted(os.listdir(m)), ["big", "d", "e", "moved", "n2"])
            self.assertEqual(sorted(os.listdir(f"{m}/d")), ["lnk", "new", "sub"])
            self.assertEqual(os.listdir(f"{m}/e"), [])
            with open(f"{m}/moved", "rb") as f:
                self.assertEqual(f.read(), b"hello world\n" * 500)
            before = listing(m)
        finally:
            fuse_umount(m)
        # Remount: everything persists.
        self.mount()
        try:
            self.assertEqual(listing(m), before)
        finally:
            fuse_umount(m)
        # The kernel overlay reads the same upper directory the same way.
        e, k = f"{self.dir}/e", f"{self.dir}/k"
        os.makedirs(e)
        os.makedirs(k)
        p = t.run(["mount", "-t", "erofs", "-o", "ro,loop", self.image, e], check=False)
        if p.returncode != 0:
            self.skipTest("kernel EROFS mount unavailable")
        p = t.run(["mount", "-t", "overlay", "overlay", "-o",
                   f"metacopy=on,redirect_dir=on,lowerdir={e}::{self.store},"
                   f"upperdir={self.upper},workdir={self.work}", k], check=False)
        if p.returncode != 0:
            self.skipTest("kernel overlay with data-only layers unavailable: " +
                          p.stderr.decode(errors="replace"))
        self.assertEqual(listing(k), before)

    def test_same_result_as_a_plain_directory(self):
        """Differential: one sequence of changes applied through the mount and to a plain copy
        of the source tree must give the same tree (types, modes, owners, sizes, contents,
        link counts)."""
        ref = f"{self.dir}/ref"
        shutil.copytree(self.src, ref, symlinks=True)

        def ops(r):
            os.makedirs(f"{r}/newdir/x")
            with open(f"{r}/newdir/x/a", "wb") as f:
                f.write(b"a\n")
            shutil.copytree(f"{r}/d", f"{r}/d2", symlinks=True)
            shutil.rmtree(f"{r}/d/sub")
            os.mkdir(f"{r}/d/sub")
            with open(f"{r}/d/sub/again", "wb") as f:
                f.write(b"again")
            os.rename(f"{r}/newdir", f"{r}/newdir2")
            os.chmod(f"{r}/d2", 0o700)
            os.utime(f"{r}/d2/f", (1.5e9, 1.5e9))
            with open(f"{r}/d2/f", "ab") as f:
                f.write(b"appended")
            os.chown(f"{r}/e/gone", 12, 34)
            os.rename(f"{r}/e/gone", f"{r}/gone.moved")
            os.symlink("d2/f", f"{r}/sym")
            os.link(f"{r}/d/sub/again", f"{r}/hard")
            os.truncate(f"{r}/big", 5000)
            os.rename(f"{r}/d/lnk", f"{r}/d/lnk2")

        self.mount()
        try:
            ops(self.mnt)
            ops(ref)
            got = listing(self.mnt)
            want = listing(ref)
            for k in set(got) | set(want):
                self.assertEqual(got.get(k), want.get(k), k)
            nlinks = {k: os.lstat(f"{self.mnt}/{k}").st_nlink for k in got if k != "d" and
                      not os.path.isdir(f"{self.mnt}/{k}")}
            self.assertEqual(nlinks, {k: os.lstat(f"{ref}/{k}").st_nlink for k in nlinks})
        finally:
            fuse_umount(self.mnt)

    def test_tampered_object_under_metacopy_copy_up(self):
        m = self.mnt
        self.mount()
        try:
            os.chmod(f"{m}/d/sub/x", 0o640)
            self.assertIn("trusted.overlay.metacopy", os.listxattr(self.up("d/sub/x")))
        finally:
            fuse_umount(m)
        obj = self.object_of("d/sub/x")
        with open(obj, "r+b") as f:
            b = f.read(1)
            f.seek(0)
            f.write(bytes([b[0] ^ 1]))
        self.mount()
        try:
            with self.assertRaises(OSError) as cm:
                with open(f"{m}/d/sub/x", "rb") as f:
                    f.read()
            self.assertEqual(cm.exception.errno, 5)
            # A data copy-up of a file that does not verify fails, leaving the metacopy.
            with self.assertRaises(OSError):
                open(f"{m}/d/sub/x", "r+b").close()
            self.assertIn("trusted.overlay.metacopy", os.listxattr(self.up("d/sub/x")))
        finally:
            fuse_umount(m)

    def test_option_errors(self):
        p = t.run([t.tool("cfs"), "mount", "--fuse", self.image, self.mnt, "-o",
                   f"basedir={self.store},upperdir={self.upper}"], check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"workdir", p.stderr)
        p = t.run([t.tool("cfs"), "mount", "--fuse", self.image, self.mnt, "-o",
                   f"basedir={self.store},upperdir={self.upper},workdir={self.upper}/w"],
                  check=False)
        self.assertEqual(p.returncode, 1)
        self.assertFalse(is_mounted(self.mnt))


if __name__ == "__main__":
    t.main()
