#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root
# ctest-timeout: 300
# ctest-cost: 15
"""Images that cfs mkcomposefs builds from generated trees mount on this kernel (file-backed
EROFS + overlayfs with the digest store as a data-only layer), and the mounted tree equals the
source: types, modes, owners, sizes, mtimes, symlink targets, xattrs (escaped
trusted.overlay.* come back unescaped, whiteouts become xwhiteouts), contents, and with
--hardlinks shared inode numbers and link counts. The kernel is the oracle."""
import contextlib
import os
import stat
import subprocess
import unittest

import cfs_images
import cfs_testlib as t


def try_mount(args):
    return subprocess.run(["mount"] + args, capture_output=True, text=True)


@contextlib.contextmanager
def mounted_erofs(image, mnt):
    os.makedirs(mnt, exist_ok=True)
    p = try_mount(["-t", "erofs", "-o", "ro", image, mnt])
    if p.returncode != 0:
        p = try_mount(["-t", "erofs", "-o", "ro,loop", image, mnt])
    if p.returncode != 0:
        t.skip(f"cannot mount EROFS images here: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=True)


@contextlib.contextmanager
def mounted_composefs(image, store, work):
    with mounted_erofs(image, os.path.join(work, "erofs")) as lower:
        mnt = os.path.join(work, "mnt")
        os.makedirs(mnt, exist_ok=True)
        opts = f"ro,metacopy=on,redirect_dir=on,lowerdir={lower}::{store}"
        p = try_mount(["-t", "overlay", "overlay", "-o", opts, mnt])
        if p.returncode != 0:
            t.skip(f"overlayfs with data-only layers unavailable: {p.stderr.strip()}")
        try:
            yield mnt
        finally:
            subprocess.run(["umount", mnt], check=True)


def add_odd_entries(root):
    """Names and targets that stress escaping and limits."""
    odd = os.path.join(root, "odd")
    os.makedirs(odd)
    names = [b"new\nline", b"\xff\xfe high bytes", b" lead and trail ", b"-dash", b"=eq=",
             b"tab\there", b"back\\slash", b"x" * 255, b"\x01ctl"]
    for i, n in enumerate(names):
        with open(os.path.join(odd.encode(), n), "wb") as f:
            f.write(bytes([i]) * (10 + i * 40))
    os.symlink("t" * 4095, os.path.join(odd, "longlink"))
    os.symlink("s" * 3000, os.path.join(odd, "midlink"))
    os.symlink(b"\xff/target\nwith newline", os.path.join(odd.encode(), b"oddlink"))
    os.setxattr(os.path.join(odd, "-dash"), "user.odd", b"v\x00\xffal\nue")
    os.setxattr(os.path.join(odd, "-dash"), "trusted.overlay.custom", b"mine")
    os.setxattr(odd, "trusted.overlay.opaque", b"y")  # the user's own: escaped, not obeyed
    os.setxattr(os.path.join(odd, "-dash"), "user.big", b"B" * 3000)
    os.mknod(os.path.join(odd, "wh2"), 0o640 | stat.S_IFCHR, os.makedev(0, 0))
    os.mknod(os.path.join(odd, "sock-like-fifo"), 0o600 | stat.S_IFIFO)
    for i in range(300):  # a directory spanning several blocks
        with open(os.path.join(odd, "many-%04d" % i), "wb") as f:
            f.write(b"%d" % i * (i % 7))
    os.utime(odd, ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))


class MountedImages(unittest.TestCase):
    def setUp(self):
        self._dir = t.tempdir("cfs-mkmount-")
        self.d = self._dir.__enter__()

    def tearDown(self):
        self._dir.__exit__(None, None, None)

    def build(self, src, *extra):
        store = os.path.join(self.d, "store")
        image = os.path.join(self.d, "image.cfs")
        t.run([t.tool("mkcomposefs"), "--digest-store=" + store, *extra, src, image])
        fsck = subprocess.run(["fsck.erofs", image], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)
        return image, store

    def test_mounted_tree_equals_source(self):
        src = os.path.join(self.d, "src")
        cfs_images.make_tree(src)
        add_odd_entries(src)
        image, store = self.build(src)
        expected = cfs_images.expected_through_mount(cfs_images.snapshot(src))
        with mounted_composefs(image, store, self.d) as mnt:
            got = cfs_images.snapshot(mnt)
        self.assertEqual(sorted(got), sorted(expected))
        for rel in expected:
            self.assertEqual(got[rel], expected[rel], rel)

    def test_use_epoch_and_user_xattrs_through_mount(self):
        src = os.path.join(self.d, "src")
        cfs_images.make_tree(src)
        image, store = self.build(src, "--use-epoch", "--user-xattrs")
        snap = cfs_images.snapshot(src)
        with mounted_composefs(image, store, self.d) as mnt:
            got = cfs_images.snapshot(mnt)
        for rel, rec in got.items():
            self.assertEqual(rec["mtime_ns"], 0, rel)
            user = {k: v for k, v in snap[rel]["xattrs"].items() if k.startswith("user.")}
            extra = {k for k in rec["xattrs"] if k not in user}
            # Only the writer's own whiteout markers may be added.
            self.assertTrue(extra <= cfs_images.WHITEOUT_MARKERS, (rel, extra))

    def test_hardlinks_share_inodes(self):
        src = os.path.join(self.d, "src")
        os.makedirs(os.path.join(src, "a", "b"))
        with open(os.path.join(src, "a", "b", "file"), "wb") as f:
            f.write(b"hardlinked content " * 20)
        with open(os.path.join(src, "small"), "wb") as f:
            f.write(b"tiny")
        os.link(os.path.join(src, "a", "b", "file"), os.path.join(src, "first"))
        os.link(os.path.join(src, "a", "b", "file"), os.path.join(src, "a", "second"))
        os.link(os.path.join(src, "small"), os.path.join(src, "a", "small2"))
        os.symlink("target", os.path.join(src, "sl"))
        os.link(os.path.join(src, "sl"), os.path.join(src, "a", "sl2"), follow_symlinks=False)
        image, store = self.build(src, "--hardlinks")
        expected = cfs_images.snapshot(src)
        with mounted_composefs(image, store, self.d) as mnt:
            got = cfs_images.snapshot(mnt)
            for group in (["a/b/file", "first", "a/second"], ["small", "a/small2"],
                          ["sl", "a/sl2"]):
                sts = [os.lstat(os.path.join(mnt, p)) for p in group]
                self.assertEqual(len({s.st_ino for s in sts}), 1, group)
                self.assertEqual({s.st_nlink for s in sts}, {len(group)}, group)
        self.assertEqual(got, expected)

    def test_big_sparse_file(self):
        src = os.path.join(self.d, "src")
        os.makedirs(src)
        size = (4 << 30) + 4097  # > 4 GiB: extended inode size, chunk format 21
        with open(os.path.join(src, "sparse"), "wb") as f:
            f.truncate(size)
            f.seek(size - 5)
            f.write(b"tail!")
        image = os.path.join(self.d, "image.cfs")
        out = t.run([t.tool("mkcomposefs"), "--print-digest", src, image]).stdout.decode()
        with mounted_erofs(image, os.path.join(self.d, "erofs")) as mnt:
            st = os.stat(os.path.join(mnt, "sparse"))
            self.assertEqual(st.st_size, size)
            meta = os.getxattr(os.path.join(mnt, "sparse"), "trusted.overlay.metacopy")
            self.assertEqual(meta[:4], bytes.fromhex("00240001"))
            digest = meta[4:].hex()
            self.assertEqual(len(digest), 64)
            self.assertEqual(os.getxattr(os.path.join(mnt, "sparse"), "trusted.overlay.redirect"),
                             ("/" + digest[:2] + "/" + digest[2:]).encode())
        self.assertEqual(out.strip(), cfs_images.fsverity_digest(image))


if __name__ == "__main__":
    t.require_root()
    for tool in ("fsverity", "fsck.erofs", "mount"):
        if not __import__("shutil").which(tool):
            t.skip(f"{tool} not installed")
    if not cfs_images.cfs_mkcomposefs_works():
        t.skip("cfs mkcomposefs cannot build images yet (writer not landed)")
    t.main()
