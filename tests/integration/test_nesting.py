#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""Reader and writer agree on directory nesting (issue 16 item 5).

Dumps nesting directories 4,095, 4,096, 4,097 and 5,000 deep: the image cfs writes is
byte-identical to composefs 1.0.8's (the oracle; skipped when it is not built), and every
cfs reader takes it (composefs-info ls/dump print every level, cfs fsck finds it clean), with a
256 KiB stack so that no reader may recurse per level. The input dump is the oracle for what
`composefs-info dump` prints."""
import os
import resource
import subprocess

import cfs_testlib as t

REF = os.environ.get("CFS_REF_MKCOMPOSEFS", "/work/ref/composefs/build/tools/mkcomposefs")


def small_stack():
    resource.setrlimit(resource.RLIMIT_STACK, (256 * 1024, 256 * 1024))


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=small_stack, timeout=120)


class Nesting(t.unittest.TestCase):
    def test_deep_trees_round_trip(self):
        for depth in (4095, 4096, 4097, 5000):
            with self.subTest(depth=depth), t.tempdir() as d:
                lines = ["/ 4096 40755 2 0 0 0 0.0 - - -"]
                path = ""
                for _ in range(depth):
                    path += "/d"
                    lines.append(f"{path} 4096 40755 2 0 0 0 0.0 - - -")
                lines.append(f"{path}/f 5 100644 1 0 0 0 0.0 - hello -")
                dump = os.path.join(d, "deep.dump")
                with open(dump, "w") as f:
                    f.write("\n".join(lines) + "\n")
                img = os.path.join(d, "deep.cfs")
                p = run([t.tool("mkcomposefs"), "--from-file", dump, img])
                self.assertEqual(p.returncode, 0, p.stderr)
                if os.access(REF, os.X_OK):
                    ref = os.path.join(d, "ref.cfs")
                    subprocess.run([REF, "--from-file", dump, ref], check=True)
                    self.assertEqual(t.sha256_file(img), t.sha256_file(ref))
                p = run([t.tool("composefs-info"), "dump", img])
                self.assertEqual(p.returncode, 0, p.stderr)
                out = p.stdout.decode().splitlines()
                self.assertEqual(len(out), depth + 2)
                self.assertTrue(out[-1].startswith(f"{path}/f 5 100644 "), out[-1][-80:])
                p = run([t.tool("composefs-info"), "ls", img])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(len(p.stdout.splitlines()), depth + 1)
                p = run([t.tool("cfs"), "fsck", img])
                self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    t.main()
