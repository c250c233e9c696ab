#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root;fuse
# ctest-timeout: 600
"""SHA-512 images end to end: `cfs create --hash sha512` and `mkcomposefs --hash=sha512`.

Oracles, none of them cfs: Debian's `fsverity digest --hash-alg=sha512` (image digest, file
digests, object names "ab/" + 126 hex), the kernel's EROFS driver (mount -t erofs) for the
metacopy and redirect xattrs, whose bytes are checked against struct ovl_metacopy as the kernel
defines it (version 0, len 68, flags 0, algorithm 2 = FS_VERITY_HASH_ALG_SHA512, digest), and
the source tree for contents. Also: composefs-info ls/objects/dump/missing-objects, the dump
round trip, fsck, and the FUSE mount refusing a tampered object with EIO."""
import errno
import os
import shutil
import subprocess
import time
import unittest

import cfs_testlib as t
from cfs_testlib import is_mounted


def fsverity(path, alg="sha512"):
    out = subprocess.run(["fsverity", "digest", "--compact", "--hash-alg=" + alg,
                          "--block-size=4096", path], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def make_tree(root):
    os.makedirs(os.path.join(root, "d/e"))
    files = {
        "numbers": "".join("%d\n" % i for i in range(20000)).encode(),
        "small": b"hi\n",
        "edge64": b"x" * 64,
        "edge65": b"y" * 65,
        "d/big": bytes(range(256)) * 1200,
        "d/e/same": b"y" * 65,  # same content as edge65: one object
        "empty": b"",
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    os.symlink("numbers", os.path.join(root, "link"))
    return files


class Sha512Images(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("fsverity") is None:
            raise unittest.SkipTest("fsverity (fsverity-utils) not installed")
        cls.dir = t.tempdir("cfs-sha512-").__enter__()
        cls.src = os.path.join(cls.dir, "src")
        cls.files = make_tree(cls.src)
        cls.store = os.path.join(cls.dir, "objects")
        cls.image = os.path.join(cls.dir, "img.cfs")
        out = t.run([t.tool("cfs"), "create", "--hash", "sha512", "--digest-store=" + cls.store,
                     "--print-digest", cls.src, cls.image])
        cls.printed = out.stdout.decode().strip()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def external(self):
        """Source files stored as objects (more than 64 bytes), with their sha512 digests."""
        return {name: fsverity(os.path.join(self.src, name))
                for name, data in self.files.items() if len(data) > 64}

    def test_image_digest_is_sha512(self):
        self.assertEqual(len(self.printed), 128)
        self.assertEqual(self.printed, fsverity(self.image))

    def test_object_names_are_sha512_digests(self):
        want = sorted({d[:2] + "/" + d[2:] for d in self.external().values()})
        got = sorted(os.path.relpath(os.path.join(dp, f), self.store)
                     for dp, _, fs in os.walk(self.store) for f in fs)
        self.assertEqual(got, want)
        for name in got:
            self.assertEqual(len(name), 129)
            self.assertEqual(fsverity(os.path.join(self.store, name)), name.replace("/", ""))

    def test_mkcomposefs_name_writes_the_same_image(self):
        other = os.path.join(self.dir, "mk.cfs")
        t.run([t.tool("mkcomposefs"), "--hash=sha512", self.src, other])
        with open(self.image, "rb") as a, open(other, "rb") as b:
            self.assertTrue(a.read() == b.read())
        r = t.run([t.tool("mkcomposefs"), "--hash=md5", self.src, other], check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"md5", r.stderr)

    def test_sha256_stays_the_default(self):
        out = t.run([t.tool("cfs"), "create", "--print-digest-only", self.src])
        self.assertEqual(len(out.stdout.decode().strip()), 64)
        img = os.path.join(self.dir, "256.cfs")
        printed = t.run([t.tool("mkcomposefs"), "--print-digest", self.src, img])
        self.assertEqual(printed.stdout.decode().strip(), fsverity(img, "sha256"))

    def test_info_dump_ls_objects(self):
        dump = t.run([t.tool("composefs-info"), "dump", self.image]).stdout.decode()
        ext = self.external()
        seen = 0
        for line in dump.splitlines():
            fields = line.split(" ")
            path = fields[0].lstrip("/")
            if path in ext:
                d = ext[path]
                self.assertEqual(fields[8], d[:2] + "/" + d[2:], path)  # PAYLOAD
                self.assertEqual(fields[10], d, path)  # DIGEST: 128 hex, as composefs-rs
                seen += 1
        self.assertEqual(seen, len(ext))
        objects = t.run([t.tool("composefs-info"), "objects", self.image]).stdout.decode()
        self.assertEqual(objects.split(), sorted({d[:2] + "/" + d[2:] for d in ext.values()}))
        missing = t.run([t.tool("composefs-info"), "--basedir", self.store, "missing-objects",
                         self.image]).stdout
        self.assertEqual(missing, b"")
        ls = t.run([t.tool("composefs-info"), "ls", self.image]).stdout.decode()
        self.assertIn("/numbers\t@ " + ext["numbers"][:2] + "/" + ext["numbers"][2:], ls)

    def test_dump_round_trip(self):
        dump = os.path.join(self.dir, "img.dump")
        with open(dump, "wb") as f:
            f.write(t.run([t.tool("composefs-info"), "dump", self.image]).stdout)
        again = os.path.join(self.dir, "again.cfs")
        t.run([t.tool("mkcomposefs"), "--from-file", "--hash=sha512", dump, again])
        self.assertEqual(fsverity(again), self.printed)

    def test_fsck(self):
        want = b"%d objects checked, 0 problems" % len(set(self.external().values()))
        r = t.run([t.tool("cfs"), "fsck", "--basedir", self.store, self.image])
        self.assertIn(want, r.stdout + r.stderr)
        r = t.run([t.tool("cfs"), "fsck", "--store", self.store])
        self.assertIn(want, r.stdout + r.stderr)

    def test_metacopy_bytes_as_the_kernel_reads_them(self):
        t.require_root()
        mnt = os.path.join(self.dir, "erofs")
        os.makedirs(mnt, exist_ok=True)
        t.run(["mount", "-t", "erofs", "-o", "ro,loop", self.image, mnt])
        try:
            for name, d in self.external().items():
                p = os.path.join(mnt, name)
                value = os.getxattr(p, "trusted.overlay.metacopy", follow_symlinks=False)
                self.assertEqual(value, bytes([0, 68, 0, 2]) + bytes.fromhex(d), name)
                redirect = os.getxattr(p, "trusted.overlay.redirect", follow_symlinks=False)
                self.assertEqual(redirect, ("/" + d[:2] + "/" + d[2:]).encode(), name)
            # Inline and empty files carry no metacopy.
            with self.assertRaises(OSError) as cm:
                os.getxattr(os.path.join(mnt, "edge64"), "trusted.overlay.metacopy")
            self.assertEqual(cm.exception.errno, errno.ENODATA)
        finally:
            t.run(["umount", mnt], check=False)


class Sha512Fuse(unittest.TestCase):
    def test_tampered_object_gives_eio(self):
        t.require_root()
        if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
            self.skipTest("FUSE not available")
        with t.tempdir("cfs-sha512-fuse-") as d:
            src = os.path.join(d, "src")
            files = make_tree(src)
            store, image, mnt = (os.path.join(d, n) for n in ("objects", "img.cfs", "mnt"))
            os.makedirs(mnt)
            t.run([t.tool("cfs"), "create", "--hash", "sha512", "--digest-store=" + store, src,
                   image])
            # Tamper with the object behind d/big before anything reads it.
            digest = fsverity(os.path.join(src, "d/big"))
            obj = os.path.join(store, digest[:2], digest[2:])
            with open(obj, "r+b") as f:
                f.seek(5000)
                f.write(b"X")
            t.run([t.tool("cfs"), "mount", "--fuse", "-o",
                   "basedir=%s,verity=require" % store, image, mnt])
            try:
                with open(os.path.join(mnt, "numbers"), "rb") as f:
                    self.assertEqual(f.read(), files["numbers"])
                with self.assertRaises(OSError) as cm:
                    with open(os.path.join(mnt, "d/big"), "rb") as f:
                        f.read()
                self.assertEqual(cm.exception.errno, errno.EIO)
            finally:
                t.run([t.tool("cfs"), "umount", mnt], check=False)
                for _ in range(100):
                    if not is_mounted(mnt):
                        break
                    time.sleep(0.05)


if __name__ == "__main__":
    t.main()
