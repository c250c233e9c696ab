#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;fuse;root
# ctest-timeout: 900
# ctest-cost: 35
# ctest-lock: page_cache
"""The FUSE server's memory levels off over repeated walks of the same tree.

An image of 21,000 files (three directories of 4,000 entries, like /usr/share/man/man1, and
300 small directories with xattrs; built from a dump, so no object store is needed for a walk)
is walked 10 times with `find -ls` through the read-only mount and through the writable mount
(upperdir=). After every walk the server's VmRSS is read from /proc/PID/status (the kernel's
count, not the server's own). The first walks fill what the kernel drives (the node table, the
image's mapped pages, allocator arenas); after WARM walks RSS may not rise by more than
TOLERANCE_KIB over its value then. Before the fix the writable server grew by about 1-3 MiB per
walk of this tree (10 MiB per walk of /usr/share) and never stopped.

Then the kernel drops its dentries and inodes (drop_caches=2), which makes it send FORGET for
every node; later walks look everything up again under fresh node ids and must stay within the
same bound (the node table frees forgotten nodes instead of keeping them).

Not a timing test: only memory is asserted."""
import hashlib
import os
import subprocess
import time
import unittest

import cfs_testlib as t

from test_fuse_mount import fuse_umount, is_mounted, require_fuse

WALKS = 10
WARM = 3  # walks after which RSS must be level
TOLERANCE_KIB = 1024  # growth allowed after the warm-up (allocator noise)


def make_dump(path):
    def h(s):
        return hashlib.sha256(s.encode()).hexdigest()

    lines = ["/ 0 40755 2 0 0 0 0.0 - - -"]
    for b in range(3):
        lines.append(f"/big{b} 0 40755 2 0 0 0 0.0 - - -")
        for i in range(4000):
            if i % 3 == 0:
                lines.append(f"/big{b}/link-{i:05}.1.gz 12 120777 1 0 0 0 0.0 target-{i}.gz - -")
            else:
                d = h(f"b{b}/{i}")
                lines.append(f"/big{b}/page-{i:05}.1.gz {100 + i} 100644 1 0 0 0 0.0 "
                             f"{d[:2]}/{d[2:]} - {d}")
    for a in range(60):
        lines.append(f"/pkg{a:02} 0 40755 2 0 0 0 0.0 - - -")
        for s in range(5):
            lines.append(f"/pkg{a:02}/sub{s} 0 40755 2 0 0 0 0.0 - - - user.k=v")
            for f in range(30):
                d = h(f"{a}/{s}/{f}")
                lines.append(f"/pkg{a:02}/sub{s}/file-{f:02}.txt {1000 + f} 100644 1 0 0 0 0.0 "
                             f"{d[:2]}/{d[2:]} - {d}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines) - 1


def plant_objects(dump, store, n=16):
    """Empty files for the first objects of the image: both mounts refuse a store holding none
    of them (a walk reads no file data, so their content does not matter)."""
    for line in open(dump):
        fields = line.split()
        if len(fields) > 8 and fields[8] != "-" and "/" in fields[8]:
            os.makedirs(os.path.join(store, fields[8][:2]), exist_ok=True)
            open(os.path.join(store, fields[8]), "w").close()
            n -= 1
            if n == 0:
                return


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def walk(mnt):
    subprocess.run(["find", mnt, "-ls"], stdout=subprocess.DEVNULL, check=True)


class FuseMemory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_fuse()
        cls.tmp = t.tempdir(prefix="cfs-mem-")
        cls.dir = cls.tmp.__enter__()
        cls.entries = make_dump(f"{cls.dir}/tree.dump")
        cls.image = f"{cls.dir}/tree.cfs"
        t.run([t.tool("mkcomposefs"), "--from-file", f"{cls.dir}/tree.dump", cls.image])
        os.makedirs(f"{cls.dir}/store")
        plant_objects(f"{cls.dir}/tree.dump", f"{cls.dir}/store")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.__exit__(None, None, None)

    def setUp(self):
        self.mnt = f"{self.dir}/mnt"
        os.makedirs(self.mnt, exist_ok=True)
        self.server = None

    def tearDown(self):
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        if self.server is not None:
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def serve(self, extra):
        """Starts the server in the foreground (so its pid is ours) and waits for the mount."""
        opts = f"basedir={self.dir}/store,verity=on{extra}"
        self.server = subprocess.Popen([t.tool("cfs"), "mount", "--fuse", "-f", self.image,
                                        self.mnt, "-o", opts],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(600):
            if is_mounted(self.mnt):
                return self.server.pid
            if self.server.poll() is not None:
                raise AssertionError("server exited: " + self.server.stderr.read().decode())
            time.sleep(0.05)
        raise AssertionError("mount did not appear")

    def walks(self, pid, n):
        rss = []
        for _ in range(n):
            walk(self.mnt)
            rss.append(vm_rss_kib(pid))
        return rss

    def check_level(self, label, extra, forget_phase=False):
        pid = self.serve(extra)
        rss = self.walks(pid, WALKS)
        print(f"{label}: VmRSS KiB after each of {WALKS} walks of {self.entries} entries: {rss}",
              flush=True)
        limit = rss[WARM - 1] + TOLERANCE_KIB
        self.assertLessEqual(max(rss[WARM:]), limit,
                             f"{label}: RSS kept growing after walk {WARM}: {rss}")
        if forget_phase:
            # FORGET for every node, then lookups under new ids.
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2\n")
            after = self.walks(pid, 3)
            print(f"{label}: after the kernel dropped its inodes: {after}", flush=True)
            self.assertLessEqual(max(after), limit,
                                 f"{label}: forgotten nodes were not reused: {rss} then {after}")
        fuse_umount(self.mnt)
        self.assertEqual(self.server.wait(timeout=60), 0)

    def test_read_only_server_levels_off(self):
        self.check_level("read-only", "")

    def test_upper_server_levels_off(self):
        upper, work = f"{self.dir}/upper", f"{self.dir}/work"
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        self.check_level("upper", f",upperdir={upper},workdir={work}", forget_phase=True)


if __name__ == "__main__":
    t.main()
