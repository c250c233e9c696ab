#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 600
"""`cfs oci pull docker://…` into a repository, and seals of repository images, against
Debian's docker-registry 2.8 on loopback (through the fault proxy, which logs every request).
Oracles: skopeo pushes the images (`skopeo copy oci:… docker://…`), and `cfs oci pull oci:` of
the same layout (another transport: no registry code) gives the image id the registry pull must
give; the proxy's log says which blobs were fetched and with which Range; `cfs repo fsck` and
`cfs oci fsck` check what is left after failures; `fsverity digest` gives a sealed digest."""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"


def cfs(*args, check=True):
    return t.run([t.tool("cfs"), *args], check=check)


class RepoPull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-repopull-")
        cls.reg = r.Registry()
        cls.reg.start()
        cls.proxy = r.FaultProxy(cls.reg.host)
        rng = random.Random(1414)
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [
            {"usr/bin/tool": b"#!/bin/sh\necho tool\n" * 10, "etc/hostname": b"cfs\n"},
            {"usr/share/big": rng.randbytes(6 << 20), "usr/share/small": rng.randbytes(3000)},
        ])
        # v2 = v1's layers plus one: a second pull must fetch only that one.
        r.run(["umoci", "tag", "--image", f"{cls.layout}:v1", "v2"])
        extra = os.path.join(cls.tmp, "extra")
        os.makedirs(os.path.join(extra, "etc"))
        with open(os.path.join(extra, "etc", "motd"), "wb") as f:
            f.write(b"v2 " * 1000)
        r.run(["umoci", "insert", "--image", f"{cls.layout}:v2", extra, "/"])
        for tag in ("v1", "v2"):
            r.push(cls.layout, tag, cls.reg.ref(f"cfs/app:{tag}"), "--dest-tls-verify=false")
        r.push(cls.layout, "v1", cls.reg.ref("cfs/app-docker:v1"), "--dest-tls-verify=false",
               "--format", "v2s2")
        cls.manifest = {tag: json.loads(r.inspect_raw(cls.reg.ref(f"cfs/app:{tag}"), NOTLS))
                        for tag in ("v1", "v2")}
        cls.big = max(cls.manifest["v1"]["layers"], key=lambda d: d["size"])
        # The oracle: the same layout pulled from oci: (no registry code involved).
        cls.oracle_repo = cls.new_repo("oracle")
        cls.oracle = {tag: json.loads(cfs("oci", "pull", "--repo", cls.oracle_repo, "--json",
                                          f"oci:{cls.layout}:{tag}", tag).stdout)["image"]
                      for tag in ("v1", "v2")}

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def new_repo(cls, name):
        path = os.path.join(cls.tmp, "repo-" + name)
        shutil.rmtree(path, ignore_errors=True)
        cfs("repo", "init", "--repo", path, "--insecure")
        return path

    def pull(self, repo, ref, *opts, check=True):
        p = cfs("oci", "pull", "--repo", repo, NOTLS, "--json", ref, *opts, check=check)
        return json.loads(p.stdout) if check else p

    def compute_id(self, repo, name):
        return cfs("oci", "compute-id", "--repo", repo, name).stdout.decode().strip()

    def tags(self, repo):
        return [i["name"] for i in
                json.loads(cfs("oci", "images", "--repo", repo, "--json").stdout)["images"]]

    def assert_clean(self, repo):
        cfs("repo", "fsck", "--repo", repo)
        cfs("oci", "fsck", "--repo", repo)

    def blob_gets(self, since):
        return [(e["path"].rsplit("/", 1)[1], e["range"], e["status"])
                for e in self.proxy.requests("GET", "/blobs/", since=since)]

    def test_same_image_as_oci_pull(self):
        for name in ("cfs/app:v1", "cfs/app-docker:v1"):
            with self.subTest(name=name):
                repo = self.new_repo("same-" + name.replace("/", "_").replace(":", "_"))
                ref = self.reg.ref(name)
                got = self.pull(repo, ref, "app")
                self.assertEqual(got["image"], self.oracle["v1"])
                self.assertEqual(got["tag"], "app")
                self.assertEqual(got["manifest"], r.sha256_bytes(r.inspect_raw(ref, NOTLS)))
                self.assertEqual(self.compute_id(repo, "app"), self.oracle["v1"])
                # The default tag is the reference as given.
                self.assertEqual(self.pull(repo, ref)["tag"], ref)
                self.assert_clean(repo)
                self.assertEqual(os.listdir(os.path.join(repo, "cfs-downloads", "sha256")), [])

    def test_second_pull_fetches_only_the_new_layer(self):
        repo = self.new_repo("incremental")
        self.pull(repo, self.proxy.ref("cfs/app:v1"))
        since = time.time()
        got = self.pull(repo, self.proxy.ref("cfs/app:v2"))
        self.assertEqual(got["image"], self.oracle["v2"])
        v1_layers = {d["digest"] for d in self.manifest["v1"]["layers"]}
        new = [d["digest"] for d in self.manifest["v2"]["layers"] if d["digest"] not in v1_layers]
        self.assertEqual(len(new), 1)
        fetched = sorted(g[0] for g in self.blob_gets(since))
        self.assertEqual(fetched, sorted(new + [self.manifest["v2"]["config"]["digest"]]))
        self.assertEqual([l["skipped"] for l in got["layers"]],
                         [d["digest"] not in new for d in self.manifest["v2"]["layers"]])

    def test_kill_then_resume(self):
        repo = self.new_repo("kill")
        self.proxy.clear()
        # The big layer trickles (8 Mbit/s) so the pull can be killed in its middle.
        self.proxy.add_fault(method="GET", path=self.big["digest"], throttle_bps=8_000_000)
        partial = os.path.join(repo, "cfs-downloads", "sha256",
                               self.big["digest"].split(":")[1] + ".partial")
        p = subprocess.Popen([t.tool("cfs"), "oci", "pull", "--repo", repo, NOTLS,
                              self.proxy.ref("cfs/app:v1")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                if os.path.exists(partial) and os.path.getsize(partial) > (1 << 20):
                    break
                time.sleep(0.05)
            else:
                self.fail("the big blob never started downloading")
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        have = os.path.getsize(partial)
        self.assertLess(have, self.big["size"])
        self.assertEqual(self.tags(repo), [])
        self.assert_clean(repo)
        since = time.time()
        got = self.pull(repo, self.proxy.ref("cfs/app:v1"))
        self.assertEqual(got["image"], self.oracle["v1"])
        gets = self.blob_gets(since)
        # The small layer finished before the kill: not fetched again.
        small = [d["digest"] for d in self.manifest["v1"]["layers"] if d != self.big]
        self.assertFalse([g for g in gets if g[0] in {s.split(":")[1] for s in small}
                          or g[0] in small], gets)
        big = [g for g in gets if self.big["digest"] in g[0]]
        self.assertEqual(len(big), 1, gets)
        start = int(big[0][1].removeprefix("bytes=").split("-")[0])
        self.assertGreater(start, 0)
        self.assertLessEqual(start, have)
        self.assertFalse(os.path.exists(partial))
        self.assert_clean(repo)

    def test_dropped_connection_resumes(self):
        repo = self.new_repo("drop")
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=self.big["digest"], drop_after=1_000_000)
        got = self.pull(repo, self.proxy.ref("cfs/app:v1"))
        self.assertEqual(got["image"], self.oracle["v1"])
        ranges = [e["range"] for e in self.proxy.requests("GET", self.big["digest"])]
        self.assertEqual(ranges, [None, "bytes=1000000-"])
        self.assert_clean(repo)

    def test_flipped_byte_fails_and_tags_nothing(self):
        repo = self.new_repo("flip")
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=self.big["digest"], flip=123456, times=None)
        p = self.pull(repo, self.proxy.ref("cfs/app:v1"), "app", check=False)
        self.assertEqual(p.returncode, 1)
        # The gzip CRC or the digest check, whichever sees it first, names the layer.
        self.assertIn(f"layer {self.manifest['v1']['layers'].index(self.big)} ", p.stderr.decode())
        self.assertEqual(self.tags(repo), [])
        self.assert_clean(repo)
        # Without the fault the same repository pulls the right image.
        self.proxy.clear()
        self.assertEqual(self.pull(repo, self.proxy.ref("cfs/app:v1"), "app")["image"],
                         self.oracle["v1"])
        self.assert_clean(repo)

    def test_errors(self):
        repo = self.new_repo("errors")
        t.expect_cli_error(self, ["oci", "pull", "--repo", repo, NOTLS,
                                  self.reg.ref("cfs/nothing:v1")], 1, "cfs/nothing")
        t.expect_cli_error(self, ["oci", "pull", "--repo", repo, "--tls-verify=maybe",
                                  self.reg.ref("cfs/app:v1")], 2, "--tls-verify")
        self.assertEqual(self.tags(repo), [])


if __name__ == "__main__":
    t.main()
