#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 300
"""`cfs oci push` and `cfs oci seal` / `verify-seal` against Debian's docker-registry 2.8 on
loopback. Oracles: skopeo (what the registry holds; pulling pushed images back), umoci (the
images), `fsverity digest` (the sealed digest), `fsverity sign` (the signature bytes: a PKCS#7
built-in signature is deterministic for an RSA key) and `openssl smime -verify`."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.request

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"
SEAL_TYPE = "application/vnd.composefs.metadata.v1"
SIG_TYPE = "application/vnd.composefs.signature.v1+pkcs7"
KEY512 = "composefs.merged.erofs.v1.fsverity-sha512-12"


def cfs(*args, check=True):
    return t.run([t.tool("cfs"), *args], check=check)


def fsverity_digest(path, alg="sha512"):
    out = t.run(["fsverity", "digest", f"--hash-alg={alg}", path]).stdout.decode().split()[0]
    return out.split(":", 1)[1]


class OciPush(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-ocitest-")
        cls.reg = r.Registry()
        cls.reg.start()
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [
            {"etc/hostname": b"cfs\n", "usr/bin/tool": b"#!/bin/sh\necho tool\n" * 20},
            {"usr/share/data": os.urandom(300 << 10)},
        ], config=["--config.cmd", "/usr/bin/tool"])
        # The same image as a Docker schema 2 manifest, converted by skopeo.
        cls.docker_layout = os.path.join(cls.tmp, "docker")
        r.skopeo("copy", "--quiet", "--format", "v2s2", f"oci:{cls.layout}:v1",
                 f"oci:{cls.docker_layout}:v1")

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def layout_manifest(self, layout, tag):
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        for m in index["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return m, r.layout_blob(layout, m["digest"])
        raise KeyError(tag)

    def test_push_is_byte_identical(self):
        for layout, name in ((self.layout, "cfs/push-oci:v1"), (self.docker_layout, "cfs/push-docker:v1")):
            with self.subTest(name=name):
                desc, raw = self.layout_manifest(layout, "v1")
                ref = self.reg.ref(name)
                out = cfs("oci", "push", NOTLS, "--json", f"oci:{layout}:v1", ref).stdout.decode()
                result = json.loads(out.strip().splitlines()[-1])
                self.assertEqual(result["manifest"], desc["digest"])
                # The registry holds exactly the layout's manifest bytes ...
                self.assertEqual(r.inspect_raw(ref, NOTLS), raw)
                # Pushing again sends no blob.
                m = json.loads(raw)
                again = json.loads(cfs("oci", "push", NOTLS, "--json", f"oci:{layout}:v1",
                                       ref).stdout.decode().strip().splitlines()[-1])
                self.assertEqual(again["blobs_uploaded"], 0)
                self.assertEqual(again["blobs_existed"], 1 + len(m["layers"]))
                # skopeo pulls the whole image back with the same digest and blobs (an oci:
                # destination converts a Docker manifest, so only for the OCI one).
                if layout == self.docker_layout:
                    continue
                back = os.path.join(self.tmp, "back-" + name.replace("/", "_").replace(":", "_"))
                r.skopeo("copy", "--quiet", "--src-tls-verify=false", ref, f"oci:{back}:x")
                bdesc, _ = self.layout_manifest(back, "x")
                self.assertEqual(bdesc["digest"], desc["digest"])
                for blob in [m["config"]] + m["layers"]:
                    self.assertEqual(r.layout_blob(back, blob["digest"]),
                                     r.layout_blob(layout, blob["digest"]))

    def test_push_index(self):
        r.build_image(self.layout, "arm", [{"etc/hostname": b"arm\n"}])
        manifests = []
        for tag, arch in (("v1", "amd64"), ("arm", "arm64")):
            d, _ = self.layout_manifest(self.layout, tag)
            manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "digest": d["digest"], "size": d["size"],
                              "platform": {"architecture": arch, "os": "linux"}})
        blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": manifests}).encode()
        digest = hashlib.sha256(blob).hexdigest()
        with open(os.path.join(self.layout, "blobs", "sha256", digest), "wb") as f:
            f.write(blob)
        with open(os.path.join(self.layout, "index.json")) as f:
            index = json.load(f)
        index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                                   "digest": "sha256:" + digest, "size": len(blob),
                                   "annotations": {"org.opencontainers.image.ref.name": "multi"}})
        with open(os.path.join(self.layout, "index.json"), "w") as f:
            json.dump(index, f)
        ref = self.reg.ref("cfs/push-multi:latest")
        self.assertEqual(cfs("oci", "push", NOTLS, f"oci:{self.layout}:multi", ref).stdout.decode().strip(),
                         "sha256:" + digest)
        self.assertEqual(r.inspect_raw(ref, NOTLS), blob)
        for m in manifests:
            base = self.reg.ref("cfs/push-multi")
            self.assertEqual(r.sha256_bytes(r.inspect_raw(f"{base}@{m['digest']}", NOTLS)), m["digest"])

    def test_push_index_pushes_a_repeated_child_once(self):
        # An index may list one manifest many times (4 MiB hold ~25k) and nest such indexes:
        # each child is pushed once (pushed per entry, these 20 were 21 manifests).
        layout = os.path.join(self.tmp, "repeated")
        shutil.copytree(self.layout, layout)
        desc, _ = self.layout_manifest(layout, "v1")
        child = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": desc["digest"], "size": desc["size"]}
        blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [child] * 20}).encode()
        digest = hashlib.sha256(blob).hexdigest()
        with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
            f.write(blob)
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                                   "digest": "sha256:" + digest, "size": len(blob),
                                   "annotations": {"org.opencontainers.image.ref.name": "rep"}})
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump(index, f)
        ref = self.reg.ref("cfs/push-repeated:latest")
        out = cfs("oci", "push", NOTLS, "--json", f"oci:{layout}:rep", ref).stdout.decode()
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["manifest"], "sha256:" + digest)
        self.assertEqual(result["manifests"], 2)  # the index and its one child
        self.assertEqual(r.inspect_raw(ref, NOTLS), blob)

    def test_push_errors(self):
        t.expect_cli_error(self, ["oci", "push", NOTLS, f"oci:{self.layout}:nosuchtag",
                                  self.reg.ref("cfs/x:1")], 1,
                           "no image tagged 'nosuchtag' (tags: v1")
        # Without oci: a SOURCE names a repository image.
        t.expect_cli_error(self, ["oci", "push", NOTLS, "--repo", os.path.join(self.tmp, "none"),
                                  self.layout, self.reg.ref("cfs/x:1")], 1, "no repository there")
        # A layer file that is not what the manifest says: the registry refuses the digest and
        # no manifest appears.
        bad = os.path.join(self.tmp, "bad")
        shutil.copytree(self.layout, bad)
        _, raw = self.layout_manifest(bad, "v1")
        layer = json.loads(raw)["layers"][-1]["digest"].split(":")[1]
        path = os.path.join(bad, "blobs", "sha256", layer)
        data = bytearray(open(path, "rb").read())
        data[100] ^= 1
        open(path, "wb").write(bytes(data))
        p = cfs("oci", "push", NOTLS, f"oci:{bad}:v1", self.reg.ref("cfs/bad:v1"), check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotEqual(r.skopeo("inspect", "--raw", NOTLS, self.reg.ref("cfs/bad:v1"),
                                     check=False).returncode, 0)


class OciSeal(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci", "fsverity", "openssl")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-sealtest-")
        cls.reg = r.Registry()
        cls.reg.start()
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [{"usr/bin/tool": b"#!/bin/sh\necho sealed\n" * 10}])
        # The composefs image a pull would build, and a tampered one (one byte of one file).
        cls.image = cls.composefs_image("good", b"#!/bin/sh\necho sealed\n" * 10)
        cls.tampered = cls.composefs_image("bad", b"#!/bin/sh\necho sealeD\n" * 10)
        for name in ("a", "b"):
            r.openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", f"/CN=cfs seal {name}", "-keyout", cls.path(f"{name}.key"),
                      "-out", cls.path(f"{name}.pem"))

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp, name)

    @classmethod
    def composefs_image(cls, name, content):
        root = cls.path(name + "-root")
        os.makedirs(os.path.join(root, "usr/bin"))
        with open(os.path.join(root, "usr/bin/tool"), "wb") as f:
            f.write(content)
        out = cls.path(name + ".cfs")
        t.run([t.tool("mkcomposefs"), root, out])
        return out

    def push_image(self, name):
        ref = self.reg.ref(name)
        r.push(self.layout, "v1", ref, "--dest-tls-verify=false")
        return ref, r.sha256_bytes(r.inspect_raw(ref, NOTLS))

    def referrers(self, ref_base, subject):
        """The fallback referrers index and every artifact manifest it lists (skopeo)."""
        tag = subject.replace(":", "-")
        index = json.loads(r.inspect_raw(f"{ref_base}:{tag}", NOTLS))
        return [json.loads(r.inspect_raw(f"{ref_base}@{m['digest']}", NOTLS))
                for m in index["manifests"]]

    def get_blob(self, repo, digest):
        with urllib.request.urlopen(f"http://{self.reg.host}/v2/{repo}/blobs/{digest}") as resp:
            return resp.read()

    def test_unsigned_seal(self):
        ref, subject = self.push_image("cfs/seal:v1")
        out = json.loads(cfs("oci", "seal", NOTLS, "--file", "--json", self.image, ref).stdout)
        self.assertEqual(out["subject"], subject)
        self.assertFalse(out["signed"])
        arts = self.referrers(self.reg.ref("cfs/seal"), subject)
        self.assertEqual(len(arts), 1)
        a = arts[0]
        self.assertEqual(a["artifactType"], SEAL_TYPE)
        self.assertEqual(a["subject"]["digest"], subject)
        self.assertEqual(a["config"]["mediaType"], "application/vnd.oci.empty.v1+json")
        self.assertEqual(a["layers"][0]["annotations"][KEY512], fsverity_digest(self.image))
        # Sealing again is idempotent: still one referrer.
        cfs("oci", "seal", NOTLS, "--file", self.image, ref)
        self.assertEqual(len(self.referrers(self.reg.ref("cfs/seal"), subject)), 1)
        cfs("oci", "verify-seal", NOTLS, "--file", self.image, ref)
        t.expect_cli_error(self, ["oci", "verify-seal", NOTLS, "--file", self.tampered, ref], 1,
                           "is not the computed", fsverity_digest(self.tampered))
        # A SHA-256 seal is another annotation; none exists.
        t.expect_cli_error(self, ["oci", "verify-seal", NOTLS, "--file", "--hash", "sha256", self.image, ref],
                           1, "no composefs seal")
        # No signature, so a certificate cannot be satisfied.
        t.expect_cli_error(self, ["oci", "verify-seal", NOTLS, "--file", "--cert", self.path("a.pem"),
                                  self.image, ref], 1, "no signed composefs seal")

    def test_signed_seal(self):
        ref, subject = self.push_image("cfs/signed:v1")
        cfs("oci", "seal", NOTLS, "--file", "--key", self.path("a.key"), "--cert", self.path("a.pem"),
            self.image, ref)
        a = self.referrers(self.reg.ref("cfs/signed"), subject)[0]
        layer = a["layers"][0]
        self.assertEqual(layer["mediaType"], SIG_TYPE)
        sig = self.get_blob("cfs/signed", layer["digest"])
        # The bytes `fsverity sign` makes for this image with this key.
        oracle = self.path("oracle.sig")
        t.run(["fsverity", "sign", self.image, oracle, "--hash-alg=sha512",
               "--key=" + self.path("a.key"), "--cert=" + self.path("a.pem")])
        self.assertEqual(sig, open(oracle, "rb").read())
        # openssl verifies it over the kernel's formatted digest.
        formatted = t.run(["fsverity", "digest", "--hash-alg=sha512", "--for-builtin-sig",
                           "--compact", self.image]).stdout.decode().strip()
        msg, sigf = self.path("msg"), self.path("sig")
        open(msg, "wb").write(bytes.fromhex(formatted))
        open(sigf, "wb").write(sig)
        t.run(["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", sigf,
               "-content", msg, "-certfile", self.path("a.pem"), "-nointern", "-noverify"])

        cfs("oci", "verify-seal", NOTLS, "--file", "--cert", self.path("a.pem"), self.image, ref)
        t.expect_cli_error(self, ["oci", "verify-seal", NOTLS, "--file", "--cert", self.path("b.pem"),
                                  self.image, ref], 1, "does not verify")
        t.expect_cli_error(self, ["oci", "verify-seal", NOTLS, "--file", "--cert", self.path("a.pem"),
                                  self.tampered, ref], 1, "is not the computed")

    def test_tampered_signature(self):
        ref, subject = self.push_image("cfs/forged:v1")
        base = self.reg.ref("cfs/forged")
        # A correct signature with one byte flipped, in an otherwise well-formed seal.
        good = self.path("forged-src.sig")
        t.run(["fsverity", "sign", self.image, good, "--hash-alg=sha512",
               "--key=" + self.path("a.key"), "--cert=" + self.path("a.pem")])
        sig = bytearray(open(good, "rb").read())
        sig[-5] ^= 0x40
        sigf = self.path("forged.sig")
        open(sigf, "wb").write(bytes(sig))
        cfs("registry", "put-blob", NOTLS, ref, sigf)
        cfgf = self.path("empty.json")
        open(cfgf, "wb").write(b"{}")
        cfs("registry", "put-blob", NOTLS, ref, cfgf)
        raw_subject = r.inspect_raw(ref, NOTLS)
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": SEAL_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": r.sha256_bytes(b"{}"), "size": 2},
            "layers": [{"mediaType": SIG_TYPE, "digest": r.sha256_bytes(bytes(sig)),
                        "size": len(sig), "annotations": {KEY512: fsverity_digest(self.image)}}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": subject, "size": len(raw_subject)}}
        mf = self.path("forged.json")
        blob = json.dumps(manifest).encode()
        open(mf, "wb").write(blob)
        cfs("registry", "put-manifest", NOTLS, f"{base}@{r.sha256_bytes(blob)}", mf)
        # Unsigned verification only compares digests; with the certificate it fails.
        cfs("oci", "verify-seal", NOTLS, "--file", self.image, ref)
        t.expect_cli_error(self, ["oci", "verify-seal", NOTLS, "--file", "--cert", self.path("a.pem"),
                                  self.image, ref], 1, "does not verify")


if __name__ == "__main__":
    t.main()
