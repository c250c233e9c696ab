#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root;fuse
# ctest-timeout: 120
"""examples/run-example.sh, the main job scripts/setup.sh runs after building: the composefs
image of examples/tree (its digests against `fsverity digest` of the same files), and the OCI
job end to end: the tree as a one-layer umoci image, `cfs oci pull`, `cfs oci mount --fuse`,
a file read back and compared with `cmp`, unmounted, nothing left mounted."""
import os
import re
import subprocess

import cfs_testlib as t
import oci_testlib as o

SCRIPT = os.path.join(t.SOURCE_DIR, "examples", "run-example.sh")


class Example(t.unittest.TestCase):
    def test_example_runs_the_oci_job(self):
        t.require_root()
        if not os.path.exists("/dev/fuse") or not o.have("umoci", "fusermount3", "fsverity"):
            self.skipTest("needs /dev/fuse, umoci, fusermount3 and fsverity")
        # The script works in `mktemp -d`: under a directory of this test's own (TMPDIR), so
        # "nothing left mounted" is checked there, whatever other tests mount meanwhile.
        with t.tempdir() as tmp:
            p = subprocess.run([SCRIPT, t.BIN_DIR], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=tmp))
            left = [m for m in t.mount_points() if m.startswith(os.path.realpath(tmp) + "/")]
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        # The digests it prints are fsverity-utils' digests of the same files.
        files = os.path.join(t.SOURCE_DIR, "examples", "files")
        for name in sorted(os.listdir(files)):
            self.assertIn(f"sha256:{o.fsverity_digest(os.path.join(files, name))} files/{name}",
                          out)
        oci = out[out.index("== OCI"):]
        self.assertRegex(oci, r"image [0-9a-f]{64,128}\n")
        self.assertRegex(oci, r"cfs oci mount --fuse example mnt: 1[01] entries")
        self.assertIn("read back: identical", oci)
        self.assertTrue(oci.rstrip().endswith("unmounted"), oci)
        self.assertEqual(left, [])


if __name__ == "__main__":
    t.main()
