#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 600
# ctest-cost: 13
"""Builds into a repository killed (SIGKILL) at random moments never leave a name pointing at
something missing, and running the build again heals everything; gc running while a build
runs loses nothing.

Oracles: the image digest of a complete build into a fresh repository (and composefs 1.0.8
mkcomposefs --min-version=1 when built locally); `fsverity digest` of the source files for the
object names; fsck's findings, each checked against the file system."""
import json
import os
import random
import signal
import subprocess
import time
import unittest

import cfs_testlib as t
from cfs_testlib import cfs

RUNS = int(os.environ.get("CFS_CRASH_RUNS", "24"))
MKCOMPOSEFS_108 = os.environ.get("CFS_REF_MKCOMPOSEFS",
                                 "/work/ref/composefs/build/tools/mkcomposefs")
# What a crash may leave: temporary files of the interrupted writer (fsck --repair removes
# them). Anything else (a name pointing at nothing, a missing or corrupt object) is a bug.
HARMLESS = {"temp-file"}


def make_tree(root, seed, files=160):
    rnd = random.Random(seed)
    for i in range(files):
        d = f"{root}/d{i % 8}"
        os.makedirs(d, exist_ok=True)
        # Mostly small files, a few over 1 MiB (the store's direct-I/O path).
        size = 1100000 if i % 50 == 1 else rnd.choice([10, 3000, 40000, 150000]) if i % 3 else 5000
        with open(f"{d}/f{i}", "wb") as f:
            f.write(rnd.randbytes(size))
    os.utime(root, (1700000000, 1700000000))


def fsck(repo):
    p = cfs("repo", "fsck", "--json", "--repo", repo, check=False)
    return p.returncode, json.loads(p.stdout)


class Crash(unittest.TestCase):
    def setUp(self):
        self._tmp = t.tempdir("cfs-repo-crash-")
        self.dir = self._tmp.__enter__()

    def tearDown(self):
        self._tmp.__exit__(None, None, None)

    def expected_digest(self, src):
        fresh = os.path.join(self.dir, "fresh")
        cfs("repo", "init", "--repo", fresh, "--insecure", "--algorithm", "fsverity-sha256-12")
        d = json.loads(cfs("create", "--repo", fresh, src, "--json").stdout)["image"]
        if os.access(MKCOMPOSEFS_108, os.X_OK):
            ref = subprocess.run([MKCOMPOSEFS_108, "--min-version=1", "--print-digest-only", src],
                                 capture_output=True, text=True, check=True).stdout.strip()
            self.assertEqual(ref, d)
        return d

    def test_kill_at_random_moments(self):
        repo = os.path.join(self.dir, "repo")
        cfs("repo", "init", "--repo", repo, "--insecure", "--algorithm", "fsverity-sha256-12")
        rnd = random.Random(12)
        srcs = []
        for v in range(3):
            src = os.path.join(self.dir, f"src{v}")
            make_tree(src, v)
            srcs.append((src, self.expected_digest(src)))
        # How long one build takes here, to spread the kills over it.
        start = time.monotonic()
        cfs("create", "--repo", os.path.join(self.dir, "fresh"), srcs[0][0])
        full = time.monotonic() - start
        interrupted = 0
        for run in range(RUNS):
            src, want = srcs[run % len(srcs)]
            name = f"v{run % len(srcs)}"
            p = subprocess.Popen([t.tool("cfs"), "create", "--repo", repo, src, "--name", name],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0, full * 1.1))
            p.send_signal(signal.SIGKILL)
            if p.wait() == -signal.SIGKILL:
                interrupted += 1
            rc, out = fsck(repo)
            bad = [x for x in out["problems"] if x["kind"] not in HARMLESS]
            self.assertEqual(bad, [], f"run {run}")
            self.assertEqual(out["missing_objects"], 0)
            self.assertEqual(out["broken_links"], 0)
            # A name that exists names the complete image of its tree.
            ref = os.path.join(repo, "images", "refs", name)
            if os.path.lexists(ref):
                self.assertEqual(os.path.basename(os.readlink(ref)), want, f"run {run}")
            # Every few runs, gc in between (it must not trip over leftovers either).
            if run % 5 == 4:
                cfs("repo", "gc", "--repo", repo)
        self.assertGreater(interrupted, RUNS // 3, "the kills should interrupt most builds")
        # Running the builds again heals everything.
        for v, (src, want) in enumerate(srcs):
            got = json.loads(cfs("create", "--repo", repo, src, "--name", f"v{v}",
                                 "--json").stdout)["image"]
            self.assertEqual(got, want)
        cfs("repo", "fsck", "--repair", "--repo", repo, check=False)
        rc, out = fsck(repo)
        self.assertEqual((rc, out["problems"]), (0, []))
        for src, want in srcs:
            for dirpath, _, files in os.walk(src):
                for f in files:
                    if os.path.getsize(os.path.join(dirpath, f)) <= 64:
                        continue
                    d = subprocess.run(["fsverity", "digest", "--compact",
                                        os.path.join(dirpath, f)], capture_output=True,
                                       text=True, check=True).stdout.strip()
                    self.assertTrue(os.path.isfile(f"{repo}/objects/{d[:2]}/{d[2:]}"))

    def test_gc_while_a_build_runs_loses_nothing(self):
        repo = os.path.join(self.dir, "repo")
        cfs("repo", "init", "--repo", repo, "--insecure", "--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "big")
        make_tree(src, 99, files=600)
        want = self.expected_digest(src)
        # Something for gc to collect, so that it has work to do.
        old = os.path.join(self.dir, "old")
        make_tree(old, 5, files=40)
        cfs("create", "--repo", repo, old)
        for attempt in range(5):
            build = subprocess.Popen([t.tool("cfs"), "create", "--repo", repo, src, "--name",
                                      "big"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.05 * (attempt + 1))
            gc = subprocess.run([t.tool("cfs"), "repo", "gc", "--json", "--repo", repo],
                                capture_output=True, text=True)
            out, err = build.communicate()
            self.assertEqual(build.returncode, 0, err)
            self.assertEqual(gc.returncode, 0, gc.stderr)
            if "waiting" in gc.stderr:
                break  # gc really ran while the build held the repository
        else:
            self.skipTest("the build never overlapped gc on this machine")
        self.assertEqual(os.path.basename(os.readlink(f"{repo}/images/refs/big")), want)
        rc, report = fsck(repo)
        self.assertEqual((rc, report["problems"]), (0, []))


if __name__ == "__main__":
    import shutil
    if not shutil.which("fsverity"):
        t.skip("fsverity (fsverity-utils) not installed")
    t.main()
