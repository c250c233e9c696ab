#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 600
# ctest-cost: 7
"""A small, deterministic run of scripts/differential-writer.py: random dumps and random
directories (tmpfs, xattrs around the per-inode budget) built by composefs 1.0.8's mkcomposefs
and by ours must give byte-identical images or both fail. The oracle is a locally built
composefs 1.0.8 (CFS_REF_MKCOMPOSEFS, default /work/ref/composefs/build/tools/mkcomposefs);
skips when it is absent. As root the directories also get owners, devices and trusted.*
xattrs."""
import os
import subprocess
import sys

import cfs_testlib as t


def main():
    ref = os.environ.get("CFS_REF_MKCOMPOSEFS", "/work/ref/composefs/build/tools/mkcomposefs")
    if not os.access(ref, os.X_OK):
        t.skip("composefs 1.0.8 mkcomposefs not found at %s (set CFS_REF_MKCOMPOSEFS)" % ref)
    script = os.path.join(t.SOURCE_DIR, "scripts", "differential-writer.py")
    ours = t.tool("mkcomposefs")
    failed = False
    for mode, count in ((["--dirs"], 80), ([], 40)):
        p = subprocess.run([sys.executable, script, "--ref", ref, "--ours", ours, "--seed", "0",
                            "--count", str(count)] + mode, capture_output=True, text=True)
        print(p.stdout, end="")
        print(p.stderr, end="", file=sys.stderr)
        if p.returncode == 77:
            t.skip(p.stdout.strip())
        if p.returncode != 0:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
