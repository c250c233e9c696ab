#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root
# ctest-timeout: 300
"""Executes every command block of docs/by-hand.md in order and checks the outputs it shows.

On a kernel without fs-verity (this CI machine), blocks marked needs-verity must fail exactly
as the page says; on a kernel with it they must succeed and print what the page shows.
"""
import os
import shutil
import sys
import tempfile
import unittest

import cfs_testlib as t
import docrun

PAGE = os.path.join(t.SOURCE_DIR, "docs", "by-hand.md")
TOOLS = ["setfattr", "getfattr", "truncate", "mkfs.erofs", "mkfs.ext4", "fsverity", "mount",
         "od", "seq", "tail"]


class ByHand(unittest.TestCase):
    def test_every_block_is_marked(self):
        blocks = docrun.parse(PAGE)  # raises on an unmarked block
        self.assertTrue(any(b.kind == "run" for b in blocks))
        self.assertFalse([b.line for b in blocks if b.kind == "show"],
                         "by-hand.md must execute every block")

    def test_page_runs(self):
        t.require_root()
        missing = [x for x in TOOLS if not shutil.which(x)]
        if missing:
            self.skipTest(f"missing tools: {missing}")
        blocks = docrun.parse(PAGE)
        scratch = tempfile.mkdtemp(prefix="cfs-doc-")
        try:
            have_verity = docrun.kernel_has_fsverity(scratch)
            print(f"kernel fs-verity: {'yes' if have_verity else 'no'}", file=sys.stderr)
            work, results = os.path.join(scratch, "w"), os.path.join(scratch, "r")
            os.mkdir(work)
            os.mkdir(results)
            env = dict(os.environ, LC_ALL="C", PATH=t.BIN_DIR + ":" + os.environ["PATH"])
            try:
                res = docrun.run(blocks, work, results, have_verity, env=env)
            finally:
                docrun.unmount_all(work)
            problems = docrun.check(res, have_verity)
            self.assertFalse(problems, "\n\n".join(problems))
            self.assertFalse(docrun.mounts_under(work), "the page left mounts behind")
        finally:
            docrun.unmount_all(scratch)
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    t.main()
