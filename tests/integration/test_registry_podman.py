#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry;root
# ctest-timeout: 180
"""An outside zstd:chunked reader accepts what `cfs oci push --compression=zstd-chunked` writes
(issue 15): Debian 12's podman 4.3.1 (containers/storage 1.43) pulls a cfs-pushed image from
the loopback docker-registry with partial pulls enabled, through the fault proxy that logs every
Range. The oracles are podman and Python, never cfs:

* podman's debug log says each layer was "Retrieved partial blob", never that it fell back;
* the proxy saw no whole-layer GET, only Range requests: the table of contents, then one range
  per regular file, each of which `zstd -dc` turns into exactly that file's bytes as Python's
  tarfile reads them from the layer umoci wrote;
* the files podman stored in its overlay layers (sha256, mode, symlink targets, hardlinks)
  equal that layer tar's members.

podman runs with a private storage.conf (overlay driver, graphroot and runroot in a temp dir)
and containers.conf; every image is removed and anything mounted below the temp dir is
unmounted before it is deleted."""
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import unittest
import urllib.request

import cfs_registry as r
import cfs_testlib as t

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TOC_POSITION = "io.github.containers.zstd-chunked.manifest-position"
# What containers/storage before 1.44 reads (and all podman 4.3.1 knows).
LEGACY = {"io.containers.zstd-chunked.manifest-checksum":
          "io.github.containers.zstd-chunked.manifest-checksum",
          "io.containers.zstd-chunked.manifest-position": TOC_POSITION}


def umoci_layer(layout, tag, root):
    r.run(["umoci", "insert", "--image", f"{layout}:{tag}", root, "/"])


def write_tree(root, files):
    """files: {path: bytes | ("symlink", target) | ("link", other path)}; modes 0644/0755."""
    for rel, what in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if isinstance(what, tuple) and what[0] == "symlink":
            os.symlink(what[1], p)
        elif isinstance(what, tuple):
            os.link(os.path.join(root, what[1]), p)
        else:
            with open(p, "wb") as f:
                f.write(what)
            os.chmod(p, 0o755 if rel.startswith("usr/bin/") else 0o644)


def parse_ranges(header):
    """'bytes=a-b,c-d' -> [(a, b), ...] (inclusive)."""
    m = re.fullmatch(r"bytes=(.*)", header)
    return [tuple(int(x) for x in part.split("-")) for part in m.group(1).split(",")]


class PodmanPartialPull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t.require_root()
        r.require_tools("podman", "umoci", "zstd")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-podman-")
        cls.reg = r.Registry()
        cls.proxy = None
        cls.podman_env = None
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        cls.reg.start()
        cls.proxy = r.FaultProxy(cls.reg.host)
        rng = random.Random(1543)
        cls.layout = os.path.join(cls.tmp, "img")
        r.run(["umoci", "init", "--layout", cls.layout])
        r.run(["umoci", "new", "--image", f"{cls.layout}:v1"])
        layers = [
            {"usr/bin/tool": b"#!/bin/sh\necho tool\n" * 40, "etc/hostname": b"cfs\n",
             "usr/lib/big": rng.randbytes(400_000), "usr/lib/small": rng.randbytes(100),
             "usr/share/empty": b"", "usr/lib/libx.so": ("symlink", "big"),
             "usr/lib/big.hard": ("link", "usr/lib/big")},
            {"usr/share/doc/a": rng.randbytes(5000), "usr/share/doc/b": rng.randbytes(70_000),
             "usr/bin/other": b"#!/bin/sh\necho other\n" * 30},
        ]
        for i, files in enumerate(layers):
            root = os.path.join(cls.tmp, f"l{i}")
            write_tree(root, files)
            umoci_layer(cls.layout, "v1", root)
        repo = os.path.join(cls.tmp, "repo")
        t.cfs("repo", "init", "--repo", repo, "--insecure")
        t.cfs("oci", "pull", "--repo", repo, f"oci:{cls.layout}:v1", "app")
        t.cfs("oci", "push", "--repo", repo, "--tls-verify=false", "--compression",
              "zstd-chunked", "--no-lazy-metadata", "app", cls.proxy.ref("cfs/podman:v1"))

        # The layer tars umoci wrote (gzip), in order: the reference contents.
        with open(os.path.join(cls.layout, "index.json")) as f:
            top = json.load(f)["manifests"][0]["digest"]
        manifest = json.loads(r.layout_blob(cls.layout, top))
        cls.tars = []
        for layer in manifest["layers"]:
            tar = gzip.decompress(r.layout_blob(cls.layout, layer["digest"]))
            # umoci 0.4.7 ends its tars inside the last entry's padding: complete them.
            tar += bytes(-len(tar) % 512 + 1024)
            with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
                cls.tars.append([(m, tf.extractfile(m).read() if m.isreg() else None)
                                 for m in tf.getmembers()])

        store = os.path.join(cls.tmp, "podman")
        os.makedirs(store)
        storage_conf = os.path.join(store, "storage.conf")
        with open(storage_conf, "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{store}/graph"\n'
                    f'runroot = "{store}/run"\n[storage.options]\n'
                    'pull_options = {enable_partial_images = "true", use_hard_links = "false", '
                    'ostree_repos = ""}\n')
        containers_conf = os.path.join(store, "containers.conf")
        with open(containers_conf, "w") as f:
            f.write(f'[engine]\ntmp_dir = "{store}/tmp"\nevents_logger = "none"\nlock_type = "file"\n')
        cls.podman_env = {"CONTAINERS_STORAGE_CONF": storage_conf,
                          "CONTAINERS_CONF": containers_conf}
        cls.since = time.time()
        cls.pull = t.run(["podman", "--log-level=debug", "pull", "--tls-verify=false",
                          f"{cls.proxy.host}/cfs/podman:v1"], env=cls.podman_env, check=False)
        cls.log = cls.pull.stderr.decode(errors="replace")
        if cls.pull.returncode != 0:
            raise AssertionError(f"podman pull failed:\n{cls.log[-3000:]}")
        req = urllib.request.Request(f"http://{cls.reg.host}/v2/cfs/podman/manifests/v1",
                                     headers={"Accept": OCI_MANIFEST})
        with urllib.request.urlopen(req) as resp:
            cls.pushed = json.loads(resp.read())

    @classmethod
    def tearDownClass(cls):
        if cls.podman_env:
            t.run(["podman", "rmi", "-a", "-f"], env=cls.podman_env, check=False)
        # Whatever podman mounted below the temp dir goes before the dir does.
        for m in sorted((m for m in t.mount_points() if m.startswith(cls.tmp + "/")),
                        reverse=True):
            t.umount(m)
        if cls.proxy:
            cls.proxy.close()
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def blob(self, digest):
        with open(self.reg.blob_path(digest), "rb") as f:
            return f.read()

    def test_layers_carry_both_key_sets(self):
        for layer in self.pushed["layers"]:
            ann = layer["annotations"]
            for old, new in LEGACY.items():
                self.assertEqual(ann[old], ann[new], old)

    def test_partial_path_taken(self):
        fell_back = [line for line in self.log.splitlines() if "Failed to retrieve partial" in line]
        self.assertEqual(fell_back, [])
        for layer in self.pushed["layers"]:
            self.assertIn(f"Retrieved partial blob {layer['digest']}", self.log)

    def test_only_ranges_of_single_files(self):
        """Per layer: no whole-blob GET; the TOC's range; then every regular file with data
        exactly once, each range being one zstd frame of that file's bytes alone."""
        for layer, members in zip(self.pushed["layers"], self.tars):
            digest = layer["digest"]
            reqs = self.proxy.requests(method="GET", path=f"/blobs/{digest}", since=self.since)
            self.assertTrue(reqs, digest)
            self.assertTrue(all(q["range"] and q["status"] == 206 for q in reqs), reqs)
            ranges = [x for q in reqs for x in parse_ranges(q["range"])]
            off, length = (int(x) for x in layer["annotations"][TOC_POSITION].split(":")[:2])
            self.assertIn((off, off + length - 1), ranges)
            ranges.remove((off, off + length - 1))
            blob = self.blob(digest)
            got = sorted(t.run(["zstd", "-dc"], input=blob[a:b + 1]).stdout for a, b in ranges)
            want = sorted(data for m, data in members if m.isreg() and m.size)
            self.assertEqual(len(got), len(want), ranges)
            self.assertEqual(got, want)

    def test_stored_files_equal_the_layer_tars(self):
        data = json.loads(t.run(["podman", "image", "inspect",
                                 f"{self.proxy.host}/cfs/podman:v1"], env=self.podman_env).stdout)[0]
        gd = data["GraphDriver"]["Data"]
        diffs = list(reversed(gd.get("LowerDir", "").split(":"))) if gd.get("LowerDir") else []
        diffs.append(gd["UpperDir"])
        self.assertEqual(len(diffs), len(self.tars))
        for diff, members in zip(diffs, self.tars):
            seen = set()
            for m, content in members:
                name = os.path.normpath(m.name)
                if name == ".":
                    continue
                seen.add(name)
                p = os.path.join(diff, name)
                st = os.lstat(p)
                if m.isreg():
                    self.assertTrue(stat.S_ISREG(st.st_mode), name)
                    with open(p, "rb") as f:
                        self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                                         hashlib.sha256(content).hexdigest(), name)
                    self.assertEqual(stat.S_IMODE(st.st_mode), m.mode, name)
                elif m.issym():
                    self.assertEqual(os.readlink(p), m.linkname, name)
                elif m.islnk():
                    target = os.lstat(os.path.join(diff, os.path.normpath(m.linkname)))
                    self.assertEqual(st.st_ino, target.st_ino, name)
                elif m.isdir():
                    self.assertTrue(stat.S_ISDIR(st.st_mode), name)
            # Nothing podman stored is missing from the tar.
            stored = set()
            for dirpath, dirnames, filenames in os.walk(diff):
                for n in dirnames + filenames:
                    stored.add(os.path.relpath(os.path.join(dirpath, n), diff))
            self.assertEqual(stored, seen)


if __name__ == "__main__":
    t.main()
