#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root;fuse
# ctest-timeout: 300
"""Runs the 5-minute tour of README.md: every fenced command block, in order, in a scratch
directory, checking the outputs the README shows (marker syntax: tests/testlib/docrun.py).
The set-up commands at the top of the README are indented blocks, not run here (CI runs them)."""
import os
import shutil
import tempfile
import unittest

import cfs_testlib as t
import docrun

PAGE = os.path.join(t.SOURCE_DIR, "README.md")


class Readme(unittest.TestCase):
    def test_every_block_is_marked(self):
        blocks = docrun.parse(PAGE)
        self.assertTrue(any(b.kind == "run" for b in blocks))
        self.assertFalse([b.line for b in blocks if b.kind == "show"])

    def test_setup_commands_come_first(self):
        with open(PAGE) as f:
            text = f.read()
        first_block = text.index("\n    ")
        self.assertIn("scripts/setup.sh", text[first_block:first_block + 200])
        self.assertLess(text.index("scripts/setup.sh"), text.index("scripts/test.sh"))
        self.assertLess(text.index("scripts/test.sh"), text.index("```"))

    def test_tour_runs(self):
        t.require_root()
        if not os.path.exists("/dev/fuse"):
            self.skipTest("no /dev/fuse")
        for x in ("seq", "dd", "tail"):
            if not shutil.which(x):
                self.skipTest(f"missing {x}")
        usage = t.run([t.tool("cfs"), "--help"]).stdout.decode()
        for cmd in ("create", "info", "fsck", "fuse-mount"):
            if f"  {cmd} " not in usage:
                self.skipTest(f"cfs {cmd} is not built yet")
        blocks = docrun.parse(PAGE)
        scratch = tempfile.mkdtemp(prefix="cfs-readme-")
        try:
            work, results = os.path.join(scratch, "w"), os.path.join(scratch, "r")
            os.mkdir(work)
            os.mkdir(results)
            env = dict(os.environ, LC_ALL="C", PATH=t.BIN_DIR + ":" + os.environ["PATH"])
            old = os.umask(0o022)
            try:
                res = docrun.run(blocks, work, results, have_verity=False, env=env)
            finally:
                os.umask(old)
                docrun.unmount_all(work)
            problems = docrun.check(res, have_verity=False)
            self.assertFalse(problems, "\n\n".join(problems))
        finally:
            docrun.unmount_all(scratch)
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    t.main()
