#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry;fuse
# ctest-timeout: 600
"""`cfs oci mount --lazy docker://…`: the verified FUSE mount of a registry image whose objects
are fetched when files are opened, against Debian's docker-registry 2.8 on loopback behind the
fault proxy (which logs every request with its Range header).

Oracles: the file contents the test wrote into the image (independent of cfs); the byte ranges
of each file in the pushed layer blobs, read from the blob with Python's tarfile (uncompressed
layers); the proxy's request log (what was fetched); `cfs repo fsck` (nothing partial left)."""
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"


def cfs(*args, check=True, **kw):
    return t.run([t.tool("cfs"), *args], check=check, **kw)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


class LazyMount(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t.require_root()
        if not os.path.exists("/dev/fuse"):
            t.skip("no /dev/fuse")
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-lazy-")
        cls.reg = r.Registry()
        try:  # tearDownClass does not run when setUpClass fails
            cls.reg.start()
            cls.prepare()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def prepare(cls):
        rng = random.Random(1515)
        cls.files = {
            "usr/bin/tool": b"#!/bin/sh\necho tool\n" * 10,
            "etc/hostname": b"cfs\n",
            "usr/share/big": rng.randbytes(3 << 20),
            "usr/share/small": rng.randbytes(3000),
            "usr/share/doc/a": rng.randbytes(70000),
            "usr/share/doc/b": rng.randbytes(5000),
        }
        upper = {"usr/share/small": rng.randbytes(4100), "opt/new": rng.randbytes(9000)}
        layout = os.path.join(cls.tmp, "img")
        r.build_image(layout, "v1", [cls.files, upper])
        cls.files.update(upper)
        # The source repository: the image pulled from the layout, pushed with its lazy
        # metadata (uncompressed layers: files are plain byte ranges of the blob).
        cls.src_repo = cls.new_repo("src")
        cfs("oci", "pull", "--repo", cls.src_repo, f"oci:{layout}:v1", "app")
        cfs("oci", "push", "--repo", cls.src_repo, NOTLS, "--compression=none", "app",
            cls.reg.ref("cfs/lazy:v1"))
        cfs("oci", "push", "--repo", cls.src_repo, NOTLS, "--compression=zstd-chunked", "app",
            cls.reg.ref("cfs/lazyz:v1"))
        # Without lazy metadata: pushed by skopeo.
        r.push(layout, "v1", cls.reg.ref("cfs/plain:v1"), "--dest-tls-verify=false")
        cls.manifest = json.loads(r.inspect_raw(cls.reg.ref("cfs/lazy:v1"), NOTLS))
        cls.ranges = cls.file_ranges()

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def new_repo(cls, name):
        path = os.path.join(cls.tmp, "repo-" + name)
        shutil.rmtree(path, ignore_errors=True)
        cfs("repo", "init", "--repo", path, "--insecure")
        return path

    @classmethod
    def file_ranges(cls):
        """path -> (layer blob digest, first byte, last byte) of the topmost copy of each
        file, from the pushed (uncompressed) blobs read with tarfile."""
        out = {}
        for layer in cls.manifest["layers"]:
            with tarfile.open(cls.reg.blob_path(layer["digest"]), "r:") as tf:
                for m in cls.members(tf):
                    if m.isfile() and m.size > 0:
                        name = m.name.lstrip("./")
                        out[name] = (layer["digest"], m.offset_data, m.offset_data + m.size - 1)
        return out

    @staticmethod
    def members(tf):
        """Every member; umoci 0.4.7 ends a layer inside the last member's padding, which
        tarfile calls truncated after it has read that member."""
        while True:
            try:
                m = tf.next()
            except tarfile.ReadError:
                return
            if m is None:
                return
            yield m

    def setUp(self):
        self.proxy = r.FaultProxy(self.reg.host)
        self.mnt = tempfile.mkdtemp(prefix="mnt-", dir=self.tmp)
        self.servers = []

    def tearDown(self):
        t.umount(self.mnt)
        for p in self.servers:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
        self.proxy.close()

    def mount(self, repo, source, *opts, foreground=False):
        args = [t.tool("cfs"), "oci", "mount", "--lazy", "--repo", repo, NOTLS, *opts, source,
                self.mnt]
        if not foreground:
            t.run(args)
            self.assertTrue(t.is_mounted(self.mnt))
            return None
        p = subprocess.Popen(args + ["-f"], stderr=subprocess.PIPE)
        self.servers.append(p)
        for _ in range(200):
            if t.is_mounted(self.mnt):
                return p
            if p.poll() is not None:
                self.fail(f"lazy mount exited: {p.stderr.read().decode()}")
            time.sleep(0.05)
        self.fail("lazy mount did not come up")

    def blob_gets(self, since):
        layers = {d["digest"] for d in self.manifest["layers"]}
        return [(e["path"].rsplit("/", 1)[1], e["range"])
                for e in self.proxy.requests("GET", "/blobs/", since=since)
                if e["path"].rsplit("/", 1)[1] in layers]

    def expected_range(self, path):
        blob, first, last = self.ranges[path]
        return (blob, f"bytes={first}-{last}")

    def test_tree_at_once_and_one_file_fetches_only_its_range(self):
        repo = self.new_repo("one")
        since = time.time()
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill")
        # ls -R and stat of everything: no layer bytes.
        walked = set()
        for root, dirs, names in os.walk(self.mnt):
            for n in names:
                p = os.path.join(root, n)
                st = os.stat(p)
                rel = os.path.relpath(p, self.mnt)
                walked.add(rel)
                if rel in self.files:
                    self.assertEqual(st.st_size, len(self.files[rel]), rel)
        self.assertLessEqual(set(self.files), walked)
        self.assertEqual(self.blob_gets(since), [])
        # One file: exactly its range, once.
        since = time.time()
        self.assertEqual(read_file(os.path.join(self.mnt, "usr/share/doc/a")),
                         self.files["usr/share/doc/a"])
        self.assertEqual(self.blob_gets(since), [self.expected_range("usr/share/doc/a")])

    def test_every_file_equals_the_image(self):
        repo = self.new_repo("all")
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill")
        for rel, data in self.files.items():
            with self.subTest(path=rel):
                self.assertEqual(read_file(os.path.join(self.mnt, rel)), data)
        cfs("repo", "fsck", "--repo", repo)

    def test_zstd_chunked_one_frame_per_file(self):
        repo = self.new_repo("zstd")
        layers = {d["digest"] for d in
                  json.loads(r.inspect_raw(self.reg.ref("cfs/lazyz:v1"), NOTLS))["layers"]}
        self.mount(repo, self.proxy.ref("cfs/lazyz:v1"), "--no-fill")
        for rel, data in self.files.items():
            with self.subTest(path=rel):
                since = time.time()
                self.assertEqual(read_file(os.path.join(self.mnt, rel)), data)
                gets = [e for e in self.proxy.requests("GET", "/blobs/", since=since)
                        if e["path"].rsplit("/", 1)[1] in layers]
                # One frame, one range (files of up to 64 bytes are inline in the image).
                self.assertEqual(len(gets), 1 if len(data) > 64 else 0, gets)
                self.assertTrue(all(g["range"].startswith("bytes=") for g in gets), gets)
        t.umount(self.mnt)
        cfs("repo", "fsck", "--repo", repo)

    def test_concurrent_opens_fetch_once(self):
        repo = self.new_repo("single-flight")
        self.proxy.set_throttle(8 << 20)  # 8 Mbit/s: the big file takes ~3 s
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill")
        since = time.time()
        results = []

        def reader():
            results.append(read_file(os.path.join(self.mnt, "usr/share/big")))

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(results, [self.files["usr/share/big"]] * 4)
        self.assertEqual(self.blob_gets(since), [self.expected_range("usr/share/big")])

    def test_flipped_byte_is_eio_for_that_file_only(self):
        repo = self.new_repo("flip")
        blob, first, last = self.ranges["usr/share/doc/b"]
        path = self.reg.blob_path(blob)
        with open(path, "r+b") as f:
            f.seek(first + 100)
            orig = f.read(1)
            f.seek(first + 100)
            f.write(bytes([orig[0] ^ 0x40]))
        try:
            self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill")
            with self.assertRaises(OSError) as cm:
                read_file(os.path.join(self.mnt, "usr/share/doc/b"))
            self.assertEqual(cm.exception.errno, errno.EIO)
            self.assertEqual(read_file(os.path.join(self.mnt, "usr/share/doc/a")),
                             self.files["usr/share/doc/a"])
        finally:
            with open(path, "r+b") as f:
                f.seek(first + 100)
                f.write(orig)
        t.umount(self.mnt)
        # Nothing stored for it: only the good file's object is there, and fsck is clean.
        self.assertEqual(len(self.repo_objects(repo)) - self.image_objects, 1)
        cfs("repo", "fsck", "--repo", repo)

    def repo_objects(self, repo):
        return t.store_objects(os.path.join(repo, "objects"))

    image_objects = 1  # the merged image itself

    def test_registry_gone_fetched_files_keep_working(self):
        repo = self.new_repo("gone")
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill", "--timeout", "3")
        self.assertEqual(read_file(os.path.join(self.mnt, "usr/bin/tool")),
                         self.files["usr/bin/tool"])
        self.proxy.close()
        start = time.monotonic()
        with self.assertRaises(OSError) as cm:
            read_file(os.path.join(self.mnt, "usr/share/doc/a"))
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertLess(time.monotonic() - start, 120)  # bounded (generous: loaded machines)
        self.assertEqual(read_file(os.path.join(self.mnt, "usr/bin/tool")),
                         self.files["usr/bin/tool"])
        self.assertEqual(read_file(os.path.join(self.mnt, "etc/hostname")), b"cfs\n")

    def test_kill_mid_fetch_leaves_nothing_partial(self):
        repo = self.new_repo("kill")
        self.proxy.set_throttle(2 << 20)  # 2 Mbit/s: the big file takes ~12 s
        server = self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill", foreground=True)
        reader = subprocess.Popen(["cat", os.path.join(self.mnt, "usr/share/big")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        since = time.time()
        for _ in range(200):
            if self.blob_gets(since):
                break
            time.sleep(0.05)
        time.sleep(1)
        before = self.repo_objects(repo)
        server.send_signal(signal.SIGKILL)
        server.wait()
        reader.kill()
        reader.wait()
        t.umount(self.mnt)
        self.assertEqual(self.repo_objects(repo), before)
        cfs("repo", "fsck", "--repo", repo)
        self.proxy.set_throttle(None)
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill")
        self.assertEqual(read_file(os.path.join(self.mnt, "usr/share/big")),
                         self.files["usr/share/big"])
        t.umount(self.mnt)
        cfs("repo", "fsck", "--repo", repo)

    def test_fill_completes_and_then_no_network(self):
        repo = self.new_repo("fill")
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"))
        wanted = {self.ranges[p] for p in self.files}
        for _ in range(600):
            if len(self.blob_gets(0)) >= len(wanted):
                break
            time.sleep(0.05)
        # Once filled, the registry is not needed any more.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = cfs("repo", "fsck", "--repo", repo, "--json").stdout
            if b"not fetched yet" not in out:
                break
            time.sleep(0.2)
        self.proxy.close()
        for rel, data in self.files.items():
            self.assertEqual(read_file(os.path.join(self.mnt, rel)), data)

    def test_prefetch_list_goes_first(self):
        repo = self.new_repo("prefetch")
        lst = os.path.join(self.tmp, "prefetch.txt")
        with open(lst, "w") as f:
            f.write("/usr/share/doc/b\n/opt/new\n")
        since = time.time()
        self.mount(repo, self.proxy.ref("cfs/lazy:v1"), "--no-fill", "--prefetch", lst)
        for _ in range(200):
            if len(self.blob_gets(since)) >= 2:
                break
            time.sleep(0.05)
        self.assertEqual(sorted(self.blob_gets(since)),
                         sorted([self.expected_range("usr/share/doc/b"),
                                 self.expected_range("opt/new")]))

    def test_next_time_offline_and_pull_completes(self):
        repo = self.new_repo("again")
        ref = self.proxy.ref("cfs/lazy:v1")
        self.mount(repo, ref, "--no-fill")
        self.assertEqual(read_file(os.path.join(self.mnt, "etc/hostname")), b"cfs\n")
        t.umount(self.mnt)
        fsck = json.loads(cfs("repo", "fsck", "--repo", repo, "--json").stdout)
        self.assertTrue(fsck["ok"], fsck)
        # The registry is gone: the image registered last time is mounted, what was fetched
        # is there, the rest fails after the timeout.
        self.proxy.close()
        self.mount(repo, ref, "--no-fill", "--timeout", "2")
        self.assertEqual(read_file(os.path.join(self.mnt, "etc/hostname")), b"cfs\n")
        with self.assertRaises(OSError) as cm:
            read_file(os.path.join(self.mnt, "usr/share/doc/a"))
        self.assertEqual(cm.exception.errno, errno.EIO)
        t.umount(self.mnt)
        # A full pull completes the image; then every file is there without any network.
        cfs("oci", "pull", "--repo", repo, NOTLS, self.reg.ref("cfs/lazy:v1"))
        self.mount(repo, ref, "--no-fill", "--timeout", "2")
        for rel, data in self.files.items():
            self.assertEqual(read_file(os.path.join(self.mnt, rel)), data)
        t.umount(self.mnt)
        fsck = json.loads(cfs("repo", "fsck", "--repo", repo, "--json").stdout)
        self.assertTrue(fsck["ok"], fsck)
        self.assertFalse(any("not fetched yet" in n for n in fsck.get("notes", [])), fsck)

    def test_image_without_lazy_metadata_is_pulled_whole(self):
        # Pushed by skopeo: no index, so the whole image is pulled (saying so) and mounted.
        repo = self.new_repo("plain")
        p = cfs("oci", "mount", "--lazy", "--repo", repo, NOTLS, "--json",
                self.reg.ref("cfs/plain:v1"), self.mnt)
        self.assertIn(b"no lazy metadata", p.stderr)
        self.assertIn(b"pulling the whole image", p.stderr)
        self.assertFalse(json.loads(p.stdout)["lazy"])
        for rel, data in self.files.items():
            self.assertEqual(read_file(os.path.join(self.mnt, rel)), data)
        t.umount(self.mnt)
        fsck = json.loads(cfs("repo", "fsck", "--repo", repo, "--json").stdout)
        self.assertTrue(fsck["ok"], fsck)

    def test_image_without_lazy_metadata_is_refused_with_no_full_pull(self):
        repo = self.new_repo("plain-refused")
        p = cfs("oci", "mount", "--lazy", "--repo", repo, NOTLS, "--no-full-pull",
                self.reg.ref("cfs/plain:v1"), self.mnt, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"no lazy metadata", p.stderr)
        self.assertIn(b"cfs oci pull", p.stderr)
        self.assertFalse(t.is_mounted(self.mnt))
        self.assertFalse(os.path.exists(os.path.join(repo, "streams", "refs")) and
                         os.listdir(os.path.join(repo, "streams", "refs")))

    def test_require_seal_refuses_an_unsealed_image(self):
        repo = self.new_repo("seal")
        p = cfs("oci", "mount", "--lazy", "--repo", repo, NOTLS, "--require-seal",
                self.reg.ref("cfs/lazy:v1"), self.mnt, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"seal", p.stderr)
        self.assertFalse(t.is_mounted(self.mnt))
        images = os.path.join(repo, "images")
        self.assertEqual([x for x in os.listdir(images) if x != "refs"]
                         if os.path.isdir(images) else [], [])  # nothing registered


if __name__ == "__main__":
    unittest.main()
