#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""Every command's --json is valid UTF-8 JSON for any file name, and a name read back with
Python's surrogateescape (os.fsencode) is the exact bytes of the name (the rule in cfs(1)).

The parser is Python's json module over the raw bytes decoded strictly as UTF-8; digests come
from `fsverity digest`."""
import json
import os
import shutil
import subprocess
import unittest

import cfs_testlib as t

# Valid UTF-8, invalid bytes, a truncated sequence, an encoded surrogate, control characters.
NAMES = [b"plain", "caf\u00e9 \u20ac \U0001F600".encode(), b"a\xffb", b"trunc\xe2\x82",
         b"sur\xed\xa0\x80", b"ctl\x01\x1f\t\"\\"]


def parse(out):
    return json.loads(out.decode("utf-8", errors="strict"))


def fsverity_digest(path):
    return subprocess.run(["fsverity", "digest", "--compact", path], check=True,
                          stdout=subprocess.PIPE).stdout.decode().strip()


class JsonNames(unittest.TestCase):
    def setUp(self):
        self._dir = t.tempdir("cfs-json-")
        self.d = os.fsencode(self._dir.__enter__())

    def tearDown(self):
        self._dir.__exit__(None, None, None)

    def test_digest(self):
        paths = []
        for i, n in enumerate(NAMES):
            p = os.path.join(self.d, n)
            with open(p, "wb") as f:
                f.write(bytes([i]) * (1000 + i))
            paths.append(p)
        for cmd in ("digest", "measure"):
            p = t.run([t.tool("cfs"), cmd, "--json", *paths])
            rows = parse(p.stdout)
            self.assertEqual([os.fsencode(r["file"]) for r in rows], paths)
            if shutil.which("fsverity"):
                self.assertEqual([r["digest"] for r in rows],
                                 [fsverity_digest(x) for x in paths])

    def test_fsck(self):
        src = os.path.join(self.d, b"src")
        os.makedirs(src)
        with open(os.path.join(src, b"f"), "wb") as f:
            f.write(b"x" * 100)
        for n in NAMES:
            image = os.path.join(self.d, n + b".cfs")
            t.run([t.tool("mkcomposefs"), src, image])
            p = t.run([t.tool("cfs"), "fsck", "--json", image])
            self.assertEqual(os.fsencode(parse(p.stdout)["target"]), image)
            # An error message carrying the name is encoded by the same rule.
            missing = os.path.join(self.d, b"missing-" + n)
            p = t.run([t.tool("cfs"), "fsck", "--json", missing], check=False)
            self.assertEqual(p.returncode, 3)
            self.assertIn(os.fsdecode(missing), parse(p.stdout)["error"])

    def test_kernel_mount(self):
        t.require_root()
        src = os.path.join(self.d, b"src")
        os.makedirs(src)
        with open(os.path.join(src, b"f"), "wb") as f:
            f.write(b"y" * 100)
        image = os.path.join(self.d, b"im\xffage.cfs")
        store = os.path.join(self.d, b"st\xfeore")
        mnt = os.path.join(self.d, b"m\xe2\x82nt")
        os.makedirs(mnt)
        t.run([t.tool("mkcomposefs"), b"--digest-store=" + store, src, image])
        p = t.run([t.tool("cfs"), "mount", "--json", image, mnt, "-o", b"basedir=" + store],
                  check=False)
        if p.returncode != 0:
            self.skipTest("kernel mount unavailable: " + p.stderr.decode(errors="replace"))
        try:
            rep = parse(p.stdout)
            self.assertEqual(os.fsencode(rep["image"]), image)
            self.assertEqual(os.fsencode(rep["target"]), mnt)
        finally:
            t.run([t.tool("cfs"), "umount", mnt], check=False)


if __name__ == "__main__":
    t.main()
