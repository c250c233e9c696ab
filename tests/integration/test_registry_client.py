#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 300
"""cfs's registry client against Debian's docker-registry 2.8 on loopback (plain HTTP), with
skopeo and umoci as the independent oracles: images built by umoci and pushed by skopeo are
read by cfs byte for byte; blobs and manifests pushed by cfs are pulled back by skopeo; the
referrers fallback index cfs maintains is what skopeo sees under the sha256-<hex> tag."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"


def cfs(*args, check=True, input=None):
    return t.run([t.tool("cfs"), *args], check=check, input=input)


class RegistryClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-regtest-")
        cls.reg = r.Registry()
        cls.reg.start()
        rng = random.Random(14)
        cls.big = rng.randbytes(3 << 20)  # incompressible: the layer blob stays ~3 MiB
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [
            {"etc/hostname": b"cfs\n", "usr/bin/tool": b"#!/bin/sh\necho tool\n"},
            {"usr/share/big": cls.big},
        ], config=["--config.cmd", "/usr/bin/tool"])
        r.push(cls.layout, "v1", cls.reg.ref("cfs/oci:v1"), "--dest-tls-verify=false")
        r.push(cls.layout, "v1", cls.reg.ref("cfs/docker:v1"), "--dest-tls-verify=false",
               "--format", "v2s2")
        # An index of two platform manifests (a second, different config for "arm64").
        r.build_image(cls.layout, "arm", [{"etc/hostname": b"arm\n"}])
        cls.index_tag = cls._make_index(cls.layout, ["v1", "arm"])
        r.skopeo("copy", "--quiet", "--all", "--dest-tls-verify=false",
                 f"oci:{cls.layout}:{cls.index_tag}", cls.reg.ref("cfs/multi:latest"))

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def _make_index(layout, tags):
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        by_name = {m["annotations"]["org.opencontainers.image.ref.name"]: m
                   for m in index["manifests"]}
        manifests = []
        for tag, arch in zip(tags, ["amd64", "arm64"]):
            d = dict(by_name[tag])
            d.pop("annotations", None)
            d["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
            d["platform"] = {"architecture": arch, "os": "linux"}
            manifests.append(d)
        blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": manifests}).encode()
        digest = hashlib.sha256(blob).hexdigest()
        with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
            f.write(blob)
        index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                                   "digest": "sha256:" + digest, "size": len(blob),
                                   "annotations": {"org.opencontainers.image.ref.name": "idx"}})
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump(index, f)
        return "idx"

    def raw(self, ref):
        return r.inspect_raw(ref, NOTLS)

    def manifest_of(self, ref):
        return json.loads(self.raw(ref))

    # ---- pull ----

    def test_get_manifest_is_byte_identical_to_skopeo(self):
        for name in ("cfs/oci:v1", "cfs/docker:v1", "cfs/multi:latest"):
            with self.subTest(name=name):
                ref = self.reg.ref(name)
                want = self.raw(ref)
                got = cfs("registry", "get-manifest", NOTLS, ref).stdout
                self.assertEqual(got, want)
                digest = cfs("registry", "get-manifest", NOTLS, "--digest", ref).stdout.decode().strip()
                self.assertEqual(digest, r.sha256_bytes(want))
                # By digest, the same bytes.
                self.assertEqual(cfs("registry", "get-manifest", NOTLS,
                                     f"{self.reg.ref(name.split(':')[0])}@{digest}").stdout, want)

    def test_docker_manifest_is_schema2(self):
        m = self.manifest_of(self.reg.ref("cfs/docker:v1"))
        self.assertEqual(m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json")

    def test_get_blob_equals_oracle_bytes(self):
        m = self.manifest_of(self.reg.ref("cfs/oci:v1"))
        for desc in [m["config"]] + m["layers"]:
            with self.subTest(digest=desc["digest"]):
                want = r.layout_blob(self.layout, desc["digest"])
                got = cfs("registry", "get-blob", NOTLS, self.reg.ref("cfs/oci:v1"), desc["digest"]).stdout
                self.assertEqual(len(got), desc["size"])
                self.assertEqual(r.sha256_bytes(got), desc["digest"])
                self.assertEqual(got, want)

    def test_get_blob_to_file_and_ranges(self):
        m = self.manifest_of(self.reg.ref("cfs/oci:v1"))
        layer = max(m["layers"], key=lambda d: d["size"])
        want = r.layout_blob(self.layout, layer["digest"])
        with t.tempdir() as d:
            out = os.path.join(d, "blob")
            cfs("registry", "get-blob", NOTLS, "-o", out, "--size", str(layer["size"]),
                self.reg.ref("cfs/oci:v1"), layer["digest"])
            with open(out, "rb") as f:
                self.assertEqual(f.read(), want)
        rng = random.Random(1)
        for first, last in [(0, 0), (0, 99), (1000, 70000), (len(want) - 10, len(want) - 1)] + \
                [sorted(rng.sample(range(len(want)), 2)) for _ in range(3)]:
            with self.subTest(range=(first, last)):
                got = cfs("registry", "get-blob", NOTLS, "--range", f"{first}-{last}",
                          self.reg.ref("cfs/oci:v1"), layer["digest"]).stdout
                self.assertEqual(got, want[first:last + 1])

    def test_fetch_writes_a_layout_skopeo_and_umoci_read(self):
        with t.tempdir() as d:
            dest = os.path.join(d, "layout")
            ref = self.reg.ref("cfs/oci:v1")
            out = cfs("registry", "fetch", NOTLS, ref, dest).stdout.decode().strip()
            want = self.raw(ref)
            self.assertEqual(out, r.sha256_bytes(want))
            self.assertEqual(r.inspect_raw(f"oci:{dest}:v1"), want)
            t.run(["umoci", "unpack", "--image", f"{dest}:v1", os.path.join(d, "bundle")])
            with open(os.path.join(d, "bundle", "rootfs", "usr", "share", "big"), "rb") as f:
                self.assertEqual(f.read(), self.big)
            # No partial files are left behind.
            names = os.listdir(os.path.join(dest, "blobs", "sha256"))
            self.assertFalse([n for n in names if n.endswith(".partial")])

    def put_manifest(self, name, reference, body, media_type):
        req = urllib.request.Request(f"http://{self.reg.host}/v2/{name}/manifests/{reference}",
                                     data=body, method="PUT")
        req.add_header("Content-Type", media_type)
        urllib.request.urlopen(req).close()

    def test_fetch_walks_each_child_of_an_index_once(self):
        # An index may list one manifest many times (4 MiB hold ~25k) and nest such indexes
        # (up to 4 deep): each child is fetched and walked once. Walked per entry, these 20 x 20
        # were 421 manifests (and 420 fetches); ~25k^depth from a few small documents.
        raw = self.raw(self.reg.ref("cfs/oci:v1"))
        index_type = "application/vnd.oci.image.index.v1+json"

        def index_of(child_type, body):
            child = {"mediaType": child_type, "digest": r.sha256_bytes(body), "size": len(body)}
            return json.dumps({"schemaVersion": 2, "mediaType": index_type,
                               "manifests": [child] * 20}).encode()
        inner = index_of("application/vnd.oci.image.manifest.v1+json", raw)
        self.put_manifest("cfs/oci", r.sha256_bytes(inner), inner, index_type)
        outer = index_of(index_type, inner)
        self.put_manifest("cfs/oci", "repeated", outer, index_type)
        with t.tempdir() as d:
            out = [json.loads(ln) for ln in cfs("registry", "fetch", NOTLS, "--json",
                                                 self.reg.ref("cfs/oci:repeated"),
                                                 os.path.join(d, "layout"))
                   .stdout.decode().splitlines()]
            self.assertEqual(out[-1]["event"], "result")
            self.assertEqual(out[-1]["manifest"], r.sha256_bytes(outer))
            self.assertEqual(out[-1]["manifests"], 3)  # outer, inner, the image manifest
            self.assertEqual(out[-1]["blobs"], 1 + len(json.loads(raw)["layers"]))

    def test_fetch_index_copies_every_platform(self):
        with t.tempdir() as d:
            dest = os.path.join(d, "layout")
            ref = self.reg.ref("cfs/multi:latest")
            out = [json.loads(ln) for ln in cfs("registry", "fetch", NOTLS, "--json", ref, dest)
                   .stdout.decode().splitlines()]
            result = out[-1]
            self.assertEqual(result["event"], "result")
            self.assertEqual(result["manifests"], 3)
            index = json.loads(self.raw(ref))
            self.assertEqual(result["manifest"], r.sha256_bytes(self.raw(ref)))
            for child in index["manifests"]:
                blob = r.layout_blob(dest, child["digest"])
                self.assertEqual(r.sha256_bytes(blob), child["digest"])
                for desc in [json.loads(blob)["config"]] + json.loads(blob)["layers"]:
                    self.assertEqual(r.sha256_bytes(r.layout_blob(dest, desc["digest"])), desc["digest"])
            # skopeo copies every platform out of the fetched layout.
            r.skopeo("copy", "--quiet", "--all", f"oci:{dest}:latest", f"oci:{d}/again:x")
            # Events: every blob done or skipped; totals reach the sizes.
            done = [e for e in out if e["event"] in ("done", "skipped")]
            self.assertTrue(done)
            last = [e for e in out if "total_size" in e][-1]
            self.assertEqual(last["total_bytes"], last["total_size"])

    # ---- push ----

    def test_pushed_blobs_and_manifest_pull_back_with_skopeo(self):
        m = self.manifest_of(self.reg.ref("cfs/oci:v1"))
        manifest_bytes = self.raw(self.reg.ref("cfs/oci:v1"))
        dest = self.reg.ref("cfs/pushed:v2")
        for desc in [m["config"]] + m["layers"]:
            path = os.path.join(self.layout, "blobs", "sha256", desc["digest"].split(":")[1])
            # The big layer goes up in 1 MiB PATCH chunks.
            out = cfs("registry", "put-blob", NOTLS, "--chunked-threshold", str(1 << 20),
                      "--chunk-size", str(1 << 20), dest, path).stdout.decode().split()
            self.assertEqual(out, [desc["digest"], "uploaded"])
            again = cfs("registry", "put-blob", NOTLS, dest, path).stdout.decode().split()
            self.assertEqual(again, [desc["digest"], "existed"])
        with t.tempdir() as d:
            mf = os.path.join(d, "manifest.json")
            with open(mf, "wb") as f:
                f.write(manifest_bytes)
            digest = cfs("registry", "put-manifest", NOTLS, "--media-type",
                         "application/vnd.oci.image.manifest.v1+json", dest, mf).stdout.decode().strip()
            self.assertEqual(digest, r.sha256_bytes(manifest_bytes))
            self.assertEqual(self.raw(dest), manifest_bytes)
            r.skopeo("copy", "--quiet", NOTLS.replace("--", "--src-"), dest, f"oci:{d}/back:x")
            self.assertEqual(r.inspect_raw(f"oci:{d}/back:x"), manifest_bytes)
            for desc in m["layers"]:
                self.assertEqual(r.layout_blob(f"{d}/back", desc["digest"]),
                                 r.layout_blob(self.layout, desc["digest"]))

    def test_cross_repository_mount(self):
        m = self.manifest_of(self.reg.ref("cfs/oci:v1"))
        layer = m["layers"][0]["digest"]
        path = os.path.join(self.layout, "blobs", "sha256", layer.split(":")[1])
        dest = self.reg.ref("cfs/mounted:v1")
        out = cfs("registry", "put-blob", NOTLS, "--mount-from", "cfs/oci", dest, path).stdout.decode()
        self.assertEqual(out.split(), [layer, "mounted"])
        got = cfs("registry", "get-blob", NOTLS, dest, layer).stdout
        self.assertEqual(r.sha256_bytes(got), layer)

    def test_referrers_fallback_tag(self):
        subject_ref = self.reg.ref("cfs/oci:v1")
        subject_bytes = self.raw(subject_ref)
        subject = r.sha256_bytes(subject_bytes)
        repo = self.reg.ref("cfs/oci")
        with t.tempdir() as d:
            empty = os.path.join(d, "empty")
            with open(empty, "wb") as f:
                f.write(b"{}")
            cfs("registry", "put-blob", NOTLS, repo, empty)
            arts = []
            for i in range(2):
                sig = os.path.join(d, f"sig{i}")
                with open(sig, "wb") as f:
                    f.write(b"signature %d" % i)
                sig_digest = cfs("registry", "put-blob", NOTLS, repo, sig).stdout.decode().split()[0]
                art = json.dumps({
                    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": "application/vnd.composefs.metadata.v1",
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                               "digest": r.sha256_bytes(b"{}"), "size": 2},
                    "layers": [{"mediaType": "application/vnd.composefs.signature.v1+pkcs7",
                                "digest": sig_digest, "size": os.path.getsize(sig),
                                "annotations": {"composefs.merged.erofs.v1.fsverity-sha512-12": "%d" % i}}],
                    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "digest": subject, "size": len(subject_bytes)},
                    "annotations": {"n": str(i)}}).encode()
                path = os.path.join(d, f"art{i}.json")
                with open(path, "wb") as f:
                    f.write(art)
                digest = r.sha256_bytes(art)
                for _ in range(2):  # pushing twice lists it once
                    out = cfs("registry", "put-manifest", NOTLS, f"{repo}@{digest}", path)
                    self.assertEqual(out.stdout.decode().strip(), digest)
                arts.append((digest, len(art)))
            # skopeo sees the fallback index under the sha256-<hex> tag.
            index = json.loads(r.inspect_raw(f"{repo}:sha256-{subject.split(':')[1]}", NOTLS))
            self.assertEqual(index["mediaType"], "application/vnd.oci.image.index.v1+json")
            listed = [(m["digest"], m["size"]) for m in index["manifests"]]
            self.assertEqual(listed, arts)
            self.assertEqual({m["artifactType"] for m in index["manifests"]},
                             {"application/vnd.composefs.metadata.v1"})
            self.assertEqual([m["annotations"]["n"] for m in index["manifests"]], ["0", "1"])
            out = cfs("registry", "referrers", NOTLS, subject_ref).stdout.decode().splitlines()
            self.assertEqual([ln.split() for ln in out],
                             [[dg, "application/vnd.composefs.metadata.v1", str(n)] for dg, n in arts])
            none = cfs("registry", "referrers", NOTLS, "--artifact-type", "x/y", subject_ref)
            self.assertEqual(none.stdout, b"")

    def test_tags_match_skopeo(self):
        ref = self.reg.ref("cfs/oci:v1")
        want = json.loads(r.skopeo("list-tags", NOTLS, self.reg.ref("cfs/oci")).stdout)["Tags"]
        got = cfs("registry", "tags", NOTLS, ref).stdout.decode().split()
        self.assertEqual(sorted(got), sorted(want))

    # ---- errors ----

    def test_unknown_names_are_clear_errors(self):
        p = t.expect_cli_error(self, ["registry", "get-manifest", NOTLS, self.reg.ref("cfs/oci:nope")],
                               1, "HTTP 404", "MANIFEST_UNKNOWN", "/v2/cfs/oci/manifests/nope")
        self.assertEqual(p.stdout, b"")
        t.expect_cli_error(self, ["registry", "get-blob", NOTLS, self.reg.ref("cfs/oci:v1"),
                                  "sha256:" + "0" * 64], 1, "HTTP 404")
        t.expect_cli_error(self, ["registry", "get-manifest", NOTLS, "docker://127.0.0.1:1/Bad"],
                           1, "image reference", "invalid repository name")
        t.expect_cli_error(self, ["registry", "get-blob", NOTLS, self.reg.ref("cfs/oci:v1"),
                                  "sha256:xyz"], 1, "digest 'sha256:xyz'")
        # A misspelt subcommand is named (a usage error), not "A subcommand is required".
        p = t.expect_cli_error(self, ["registry", "get-manifests", self.reg.ref("cfs/oci:v1")], 2,
                               "unknown registry subcommand 'get-manifests'")
        self.assertIn(b"get-manifest", p.stderr)

    def test_connection_refused_after_retries(self):
        port = r.free_port()
        p = t.expect_cli_error(self, ["registry", "get-manifest", NOTLS, "--retry-times", "2",
                                      "--retry-delay", "0.01", f"docker://127.0.0.1:{port}/a:b"],
                               1, f"127.0.0.1:{port}", "Connection refused")
        self.assertEqual(p.stdout, b"")

    def test_tls_verify_is_the_default(self):
        # Without --tls-verify=false only https is tried; the registry speaks plain http.
        # The error says what to do about it.
        t.expect_cli_error(self, ["registry", "get-manifest", "--retry-times", "0",
                                  self.reg.ref("cfs/oci:v1")], 1, "https://" + self.reg.host,
                           "plain-HTTP registry? --tls-verify=false")

    def test_tampered_manifest_in_storage_is_refused(self):
        # distribution serves a manifest from its blob store with the digest of the link it came
        # through: a flipped byte there reaches the client, which must refuse it.
        ref = self.reg.ref("cfs/tamper:v1")
        r.push(self.layout, "arm", ref, "--dest-tls-verify=false")
        digest = r.sha256_bytes(self.raw(ref))
        path = self.reg.blob_path(digest)
        with open(path, "rb") as f:
            data = f.read()
        # Still valid JSON (the registry parses it before serving): one hex digit of the
        # config digest changes.
        config_hex = json.loads(data)["config"]["digest"].split(":")[1]
        pos = data.index(config_hex.encode()) + 10
        tampered = data[:pos] + (b"0" if data[pos:pos + 1] != b"0" else b"1") + data[pos + 1:]
        with open(path, "wb") as f:
            f.write(tampered)
        fast = ["--retry-times", "1", "--retry-delay", "0.01"]
        t.expect_cli_error(self, ["registry", "get-manifest", NOTLS, *fast, ref], 1,
                           "digest mismatch", digest, r.sha256_bytes(tampered))
        t.expect_cli_error(self, ["registry", "get-manifest", NOTLS, *fast,
                                  f"{self.reg.ref('cfs/tamper')}@{digest}"], 1, "digest mismatch")


def _running(pid):
    """True while `pid` runs (not gone, not a zombie waiting for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class RegistryFixture(unittest.TestCase):
    def test_a_registry_stops_when_the_process_that_started_it_is_killed(self):
        """A test or benchmark killed before its stop() leaves no docker-registry behind: the
        fixture's registry, in a session of its own, is signalled by its parent's death
        (session 18 found two strays left by an interrupted benchmark)."""
        if not os.path.exists(r.REGISTRY_BIN):
            self.skipTest("docker-registry not installed")
        starter = ("import time, cfs_registry as r\n"
                   "reg = r.Registry()\n"
                   "reg.start()\n"
                   "print(reg.proc.pid, reg.dir, flush=True)\n"
                   "time.sleep(600)\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        p = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, env=env,
                             text=True)
        try:
            line = p.stdout.readline().split()
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
        self.assertEqual(len(line), 2, "the starter did not report its registry")
        pid, data_dir = int(line[0]), line[1]
        try:
            # A generous bound for the signal's delivery on a loaded machine, not a timing claim:
            # without it the registry runs on indefinitely.
            deadline = time.monotonic() + 60
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(_running(pid), f"docker-registry {pid} outlived the killed starter")
        finally:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    t.main()
