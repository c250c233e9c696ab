#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;fuse;root
# ctest-timeout: 300
"""The FUSE mount's digest= check: the image is opened once, checked, and exactly the checked
bytes are served, as the kernel mount does (issue 11). SHA-256 and SHA-512 image digests are
accepted; expected digests come from `fsverity digest`, not from cfs."""
import os
import shutil
import subprocess
import time
import unittest

import cfs_testlib as t
from cfs_testlib import is_mounted


def fsverity_digest(path, alg="sha256"):
    return subprocess.run(["fsverity", "digest", "--compact", f"--hash-alg={alg}", path],
                          check=True, stdout=subprocess.PIPE).stdout.decode().strip()


class ImageCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t.require_root()
        if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
            t.skip("FUSE unavailable")
        if shutil.which("fsverity") is None:
            t.skip("fsverity (fsverity-utils) not installed")

    def setUp(self):
        self._dir = t.tempdir("cfs-fusecheck-")
        self.d = self._dir.__enter__()
        src = os.path.join(self.d, "src")
        os.makedirs(src)
        for i in range(3):
            with open(os.path.join(src, f"file{i}"), "wb") as f:
                f.write(bytes([65 + i]) * (5000 * (i + 1)))
        self.store = os.path.join(self.d, "store")
        self.image = os.path.join(self.d, "img.cfs")
        t.run([t.tool("mkcomposefs"), f"--digest-store={self.store}", src, self.image])
        self.mnt = os.path.join(self.d, "mnt")
        os.makedirs(self.mnt)

    def tearDown(self):
        if is_mounted(self.mnt):
            t.run(["fusermount3", "-u", self.mnt], check=False)
            for _ in range(200):
                if not is_mounted(self.mnt):
                    break
                time.sleep(0.05)
        self._dir.__exit__(None, None, None)

    def mount(self, digest, check=True):
        return t.run([t.tool("cfs"), "mount", "--fuse", self.image, self.mnt, "-o",
                      f"basedir={self.store},digest={digest}"], check=check)

    def test_sha256_and_sha512_digests(self):
        for alg in ("sha256", "sha512"):
            with self.subTest(alg=alg):
                self.mount(fsverity_digest(self.image, alg))
                try:
                    self.assertEqual(sorted(os.listdir(self.mnt)), ["file0", "file1", "file2"])
                finally:
                    t.run(["fusermount3", "-u", self.mnt])
                    for _ in range(200):
                        if not is_mounted(self.mnt):
                            break
                        time.sleep(0.05)

    def test_wrong_digest_refused(self):
        wrong = fsverity_digest(self.image, "sha512")[:-1] + "0"
        if wrong == fsverity_digest(self.image, "sha512"):
            wrong = wrong[:-1] + "1"
        p = self.mount(wrong, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"wrong fs-verity digest", p.stderr)
        self.assertFalse(is_mounted(self.mnt))

    def test_served_bytes_are_the_checked_bytes(self):
        # After a successful check the image file is overwritten in place. What the mount shows
        # must not change: it serves the bytes that were checked, not the file.
        self.mount(fsverity_digest(self.image))
        with open(self.image, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            f.write(b"\0" * size)
        listing = sorted(os.listdir(self.mnt))
        with open(os.path.join(self.mnt, "file1"), "rb") as f:
            data = f.read()
        self.assertEqual(listing, ["file0", "file1", "file2"])
        self.assertEqual(data, b"B" * 10000)


if __name__ == "__main__":
    t.main()
