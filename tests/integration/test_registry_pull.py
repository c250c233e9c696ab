#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 300
"""docker:// images through the OCI import pipeline (registry::open_registry_source feeding
oci::resolve_image, LayerInput, splitting and merging, driven by cfs-oci-test pull): the image
built from the registry is byte for byte the one built from `skopeo copy docker://… oci:` (the
oracle's copy of what the registry holds), with the same objects; faults injected by the proxy
end in the same image (a dropped connection resumes with a Range request, a 500 is retried) or
in a digest error with no image written (a flipped byte)."""
import json
import os
import random
import shutil
import tempfile
import unittest

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"


def oci_test(*args, check=True):
    return t.run([t.tool("cfs-oci-test"), *args], check=check)


def tree_files(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = t.sha256_file(p)
    return out


class RegistryPull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-pulltest-")
        cls.reg = r.Registry()
        cls.reg.start()
        rng = random.Random(1414)
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [
            {"usr/bin/tool": b"#!/bin/sh\necho tool\n" * 10, "etc/hostname": b"cfs\n"},
            {"usr/share/big": rng.randbytes(4 << 20), "usr/share/small": rng.randbytes(3000)},
        ])
        r.push(cls.layout, "v1", cls.reg.ref("cfs/pull:v1"), "--dest-tls-verify=false")
        r.push(cls.layout, "v1", cls.reg.ref("cfs/pull-docker:v1"), "--dest-tls-verify=false",
               "--format", "v2s2")
        cls.manifest = json.loads(r.inspect_raw(cls.reg.ref("cfs/pull:v1"), NOTLS))
        cls.big = max(cls.manifest["layers"], key=lambda d: d["size"])
        cls.proxy = r.FaultProxy(cls.reg.host)
        # The oracle: skopeo's copy of the registry image, imported from oci:.
        cls.oracle = cls.pull("oracle", cls.oracle_layout("cfs/pull:v1"))

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def oracle_layout(cls, name):
        d = os.path.join(cls.tmp, "skopeo-" + name.replace("/", "_").replace(":", "_"))
        r.skopeo("copy", "--quiet", "--src-tls-verify=false", cls.reg.ref(name), f"oci:{d}:x")
        return f"oci:{d}:x"

    @classmethod
    def pull(cls, name, ref, *opts, check=True):
        """cfs-oci-test pull into TMP/NAME/{objects,work,image}: (result json, image bytes,
        objects) or the failed process."""
        base = os.path.join(cls.tmp, name)
        shutil.rmtree(base, ignore_errors=True)
        for sub in ("objects", "work"):
            os.makedirs(os.path.join(base, sub))
        image = os.path.join(base, "image.cfs")
        p = oci_test("pull", "--sha512", "--image", image, *opts, ref,
                     os.path.join(base, "objects"), os.path.join(base, "work"), check=check)
        if p.returncode != 0:
            return p, os.path.exists(image)
        with open(image, "rb") as f:
            data = f.read()
        return json.loads(p.stdout), data, tree_files(os.path.join(base, "objects"))

    def assert_same_as_oracle(self, got):
        result, image, objects = got
        oresult, oimage, oobjects = self.oracle
        self.assertEqual(result["manifest"], oresult["manifest"])
        self.assertEqual(image, oimage)
        self.assertEqual(objects, oobjects)
        self.assertTrue(objects)

    def test_pull_equals_oracle(self):
        got = self.pull("direct", self.reg.ref("cfs/pull:v1"))
        self.assert_same_as_oracle(got)
        self.assertEqual(got[0]["manifest"], r.sha256_bytes(r.inspect_raw(self.reg.ref("cfs/pull:v1"), NOTLS)))

    def test_pull_docker_schema2(self):
        got = self.pull("docker", self.reg.ref("cfs/pull-docker:v1"))
        want = self.pull("docker-oracle", self.oracle_layout("cfs/pull-docker:v1"))
        # skopeo's oci: copy converts the Docker manifest; the registry's bytes are the oracle.
        self.assertEqual(got[0]["manifest"],
                         r.sha256_bytes(r.inspect_raw(self.reg.ref("cfs/pull-docker:v1"), NOTLS)))
        self.assertEqual(got[1], want[1])
        self.assertEqual(got[1], self.oracle[1])  # same layers: the same composefs image

    def test_dropped_connection_resumes(self):
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=self.big["digest"], drop_after=1_000_000)
        self.proxy.add_fault(method="GET", path=self.manifest["config"]["digest"], status=500)
        got = self.pull("drop", self.proxy.ref("cfs/pull:v1"))
        self.assert_same_as_oracle(got)
        gets = [(e["status"], e["range"]) for e in self.proxy.requests("GET", self.big["digest"])]
        self.assertEqual(len(gets), 2, gets)
        self.assertIsNone(gets[0][1])
        self.assertEqual(gets[1][1], "bytes=1000000-")
        self.assertEqual([e["status"] for e in
                          self.proxy.requests("GET", self.manifest["config"]["digest"])], [500, 200])

    def test_flipped_byte_writes_nothing(self):
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=self.big["digest"], flip=123456, times=None)
        p, image_exists = self.pull("flip", self.proxy.ref("cfs/pull:v1"), check=False)
        self.assertNotEqual(p.returncode, 0)
        # The gzip decoder (CRC) or the digest check, whichever sees it first, names the layer.
        self.assertIn(self.big["digest"], p.stderr.decode())
        self.assertFalse(image_exists)

    def test_seal_of_pulled_image(self):
        _, image, _ = self.pull("sealed", self.reg.ref("cfs/pull:v1"))
        path = os.path.join(self.tmp, "sealed", "image.cfs")
        ref = self.reg.ref("cfs/pull:v1")
        t.run([t.tool("cfs"), "oci", "seal", NOTLS, "--file", path, ref])
        t.run([t.tool("cfs"), "oci", "verify-seal", NOTLS, "--file", path, ref])


if __name__ == "__main__":
    t.main()
