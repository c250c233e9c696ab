#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root;fuse
# ctest-timeout: 600
# ctest-cost: 11
# ctest-lock: page_cache
"""GC never breaks a live mount: an image mounted from a repository (kernel or FUSE) keeps its
objects after its name is gone, every one of its files reads back whole after gc, and once it is
unmounted — by cfs, by a plain umount, by its FUSE server dying, or by its mount namespace going
away — the next gc collects it.

Oracles: the source trees (file contents read through the mount), the file system (which
objects exist), /proc/self/mountinfo (what is mounted)."""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest

import cfs_testlib as t
from cfs_testlib import is_mounted, umount, cfs


def make_tree(root, version):
    """A tree of 40 files; version v changes files 0, 10, 20, 30 (10% churn)."""
    os.makedirs(f"{root}/usr/share/data", exist_ok=True)
    os.makedirs(f"{root}/etc", exist_ok=True)
    with open(f"{root}/etc/os-release", "w") as f:
        f.write(f"VERSION={version}\n")
    for i in range(40):
        tag = version if i % 10 == 0 else 0
        with open(f"{root}/usr/share/data/f{i:02}", "wb") as f:
            f.write((f"file {i} version {tag}\n".encode()) * (100 + 50 * i))


def tree_files(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


class MountGc(unittest.TestCase):
    def setUp(self):
        t.require_root()
        self._tmp = t.tempdir("cfs-repo-mount-")
        self.dir = self._tmp.__enter__()
        self.repo = os.path.join(self.dir, "repo")
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        cfs("repo", "init", "--repo", self.repo, "--insecure", "--algorithm",
            "fsverity-sha256-12")
        self.v1, self.v2 = os.path.join(self.dir, "v1"), os.path.join(self.dir, "v2")
        make_tree(self.v1, 1)
        make_tree(self.v2, 2)
        self.i1 = self.create(self.v1, "v1")
        self.i2 = self.create(self.v2, "v2")

    def tearDown(self):
        umount(self.mnt)
        self._tmp.__exit__(None, None, None)

    def create(self, src, name):
        return json.loads(cfs("create", "--repo", self.repo, src, "--name", name,
                              "--json").stdout)["image"]

    def objects(self):
        return t.store_objects(f"{self.repo}/objects")

    def only_v1(self):
        """Objects of v1 that v2 does not share: its image and its four changed files."""
        digests = set()
        for i in (0, 10, 20, 30):
            out = subprocess.run(["fsverity", "digest", "--compact",
                                  f"{self.v1}/usr/share/data/f{i:02}"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            digests.add(out)
        return digests | {self.i1}

    def leases(self):
        d = f"{self.repo}/cfs-mounts"
        return os.listdir(d) if os.path.isdir(d) else []

    def gc(self, *extra):
        return json.loads(cfs("repo", "gc", "--json", "--repo", self.repo, *extra).stdout)

    def mount(self, *extra):
        cfs("mount", "--repo", self.repo, *extra, "v1", self.mnt)
        self.assertTrue(is_mounted(self.mnt))

    def check_v1_readable(self):
        want = tree_files(self.v1)
        got = tree_files(self.mnt)
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertEqual(got[k], want[k], k)

    def collected_after_unmount(self, unmount):
        self.assertTrue(self.only_v1() <= self.objects())
        unmount()
        out = self.gc()
        self.assertEqual(out["mounts"], [])
        self.assertEqual(len(out["stale_mounts"]), 1)
        self.assertTrue(self.only_v1().isdisjoint(self.objects()))
        self.assertEqual(self.leases(), [])
        self.assertTrue(json.loads(cfs("repo", "fsck", "--json", "--repo",
                                       self.repo).stdout)["ok"])

    def mounted_v1_survives_gc(self, *mount_args):
        self.mount(*mount_args)
        cfs("repo", "untag", "--repo", self.repo, "v1")
        out = self.gc()
        self.assertEqual([m["image"] for m in out["mounts"]], [self.i1])
        self.assertIn(self.i1, out["root_images"])
        self.assertTrue(self.only_v1() <= self.objects())
        # Drop what the page cache holds so that every file is read from its object again.
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        self.check_v1_readable()

    def test_kernel_mount_keeps_objects(self):
        self.mounted_v1_survives_gc()
        self.collected_after_unmount(lambda: cfs("umount", self.mnt))

    def test_fuse_mount_keeps_objects(self):
        if not os.path.exists("/dev/fuse"):
            self.skipTest("/dev/fuse missing")
        self.mounted_v1_survives_gc("--fuse")
        self.collected_after_unmount(lambda: cfs("umount", self.mnt))

    def test_report_says_what_is_verified(self):
        # An insecure repository gives up verity on the kernel mount; the FUSE mount still
        # checks every block, and only the image digest goes unchecked. -v and --json say so.
        kinds = [("kernel", [], False)]
        if os.path.exists("/dev/fuse"):
            kinds.append(("fuse", ["--fuse"], True))
        for how, extra, verified in kinds:
            with self.subTest(how):
                out = json.loads(cfs("mount", "--repo", self.repo, "--json", *extra, "v1",
                                     self.mnt).stdout)
                self.assertEqual((out["mount"], out["verity"]), (how, verified))
                cfs("umount", self.mnt)
                text = cfs("mount", "--repo", self.repo, "-v", *extra, "v1",
                           self.mnt).stdout.decode()
                self.assertIn("image digest not checked" if verified else "verity not required",
                              text)
                cfs("umount", self.mnt)

    def test_plain_umount_makes_the_lease_stale(self):
        self.mount()
        cfs("repo", "untag", "--repo", self.repo, "v1")
        self.collected_after_unmount(lambda: subprocess.run(["umount", self.mnt], check=True))

    def test_reused_mount_ids_do_not_keep_a_stale_lease(self):
        # The kernel reuses mount IDs and overlay device numbers: unmount v1, mount v2 at the
        # same place (it gets the same numbers), and v1 must still be collected.
        self.mount()
        cfs("repo", "untag", "--repo", self.repo, "v1")
        subprocess.run(["umount", self.mnt], check=True)
        cfs("mount", "--repo", self.repo, "v2", self.mnt)
        out = self.gc()
        self.assertEqual([m["image"] for m in out["mounts"]], [self.i2])
        if out["stale_mounts"] == []:
            self.skipTest("kernel without unique mount IDs (Linux < 6.8): v1 stays until v2 goes")
        self.assertTrue(self.only_v1().isdisjoint(self.objects()))

    def test_dead_fuse_server_makes_the_lease_stale(self):
        if not os.path.exists("/dev/fuse"):
            self.skipTest("/dev/fuse missing")
        self.mount("--fuse")
        cfs("repo", "untag", "--repo", self.repo, "v1")
        (lease,) = os.listdir(f"{self.repo}/cfs-mounts")
        with open(f"{self.repo}/cfs-mounts/{lease}") as f:
            pid = json.load(f)["pid"]
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
        # The mount point is still in mountinfo (ENOTCONN) but serves nothing any more.
        self.assertTrue(is_mounted(self.mnt))
        self.collected_after_unmount(lambda: None)

    def test_mount_in_another_namespace(self):
        if shutil.which("unshare") is None:
            self.skipTest("unshare (util-linux) not installed")
        # A mount made in a private mount namespace is invisible in ours: gc finds a process
        # in that namespace and reads its mountinfo. When the namespace goes, so does the lease.
        ready = os.path.join(self.dir, "ready")
        script = (f"{t.tool('cfs')} mount --repo {self.repo} v1 {self.mnt} && touch {ready} && "
                  "exec sleep 600")
        p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script])
        try:
            for _ in range(400):
                if os.path.exists(ready):
                    break
                time.sleep(0.05)
            self.assertTrue(os.path.exists(ready))
            self.assertFalse(is_mounted(self.mnt))
            cfs("repo", "untag", "--repo", self.repo, "v1")
            out = self.gc()
            self.assertEqual([m["image"] for m in out["mounts"]], [self.i1])
            self.assertTrue(self.only_v1() <= self.objects())
        finally:
            p.kill()
            p.wait()
        self.collected_after_unmount(lambda: None)

    def test_mounting_needs_a_real_image(self):
        t.expect_cli_error(self, ["mount", "--repo", self.repo, "nope", self.mnt], 1, "nope")
        self.assertFalse(is_mounted(self.mnt))
        self.assertEqual(self.leases(), [])
        # A corrupt image object is refused before anything is mounted.
        obj = f"{self.repo}/objects/{self.i1[:2]}/{self.i1[2:]}"
        with open(obj, "r+b") as f:
            f.seek(2000)
            f.write(b"\xff")
        t.expect_cli_error(self, ["mount", "--repo", self.repo, "v1", self.mnt], 1,
                           "does not match")
        self.assertFalse(is_mounted(self.mnt))
        self.assertEqual(self.leases(), [])


if __name__ == "__main__":
    if not shutil.which("fsverity"):
        t.skip("fsverity (fsverity-utils) not installed")
    t.main()
