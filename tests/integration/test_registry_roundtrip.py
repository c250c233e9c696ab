#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 600
# ctest-cost: 13
"""Round trips through Debian's docker-registry 2.8 on loopback: `cfs oci pull --keep-blobs`
("fat pull") and `cfs oci push` of such an image; the JSON progress events of pull and push;
seals recorded by `pull --verify-seal` and required by `cfs oci mount --require-seal`.
Oracles: skopeo pushes the source images (gzip and zstd layers, OCI and Docker v2s2 manifests)
and `skopeo inspect --raw` reads back what cfs pushed (the same manifest bytes, so the same
digest) and the blob sizes the events must count; Python's hashlib checks kept blobs; skopeo
finds the seal artifact whose digest names the recorded seal."""
import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
import unittest

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"


def cfs(*args, check=True):
    return t.run([t.tool("cfs"), *args], check=check)


class KeepBlobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-keepblobs-")
        cls.reg = r.Registry()
        cls.reg.start()
        rng = random.Random(1313)
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [
            {"etc/hostname": b"fat\n", "usr/bin/tool": b"#!/bin/sh\n" * 100},
            {"usr/share/big": rng.randbytes(3 << 20), "usr/share/small": rng.randbytes(5000)},
        ])
        cls.sources = {
            "gzip": cls.reg.ref("cfs/src:gzip"),
            "zstd": cls.reg.ref("cfs/src:zstd"),
            "v2s2": cls.reg.ref("cfs/src:v2s2"),
        }
        r.push(cls.layout, "v1", cls.sources["gzip"], "--dest-tls-verify=false")
        r.push(cls.layout, "v1", cls.sources["zstd"], "--dest-tls-verify=false",
               "--dest-compress-format", "zstd")
        r.push(cls.layout, "v1", cls.sources["v2s2"], "--dest-tls-verify=false",
               "--format", "v2s2")

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def new_repo(self, name):
        path = os.path.join(self.tmp, "repo-" + name)
        shutil.rmtree(path, ignore_errors=True)
        cfs("repo", "init", "--repo", path, "--insecure")
        return path

    def pull(self, repo, ref, *opts):
        return json.loads(cfs("oci", "pull", "--repo", repo, NOTLS, "--json", ref, *opts).stdout)

    def push(self, repo, name, ref, *opts):
        out = cfs("oci", "push", "--repo", repo, NOTLS, "--json", name, ref, *opts).stdout
        return json.loads(out.decode().strip().splitlines()[-1])

    def raw(self, ref):
        return r.inspect_raw(ref, NOTLS)

    def kept_blob(self, repo, digest):
        """The kept blob's bytes: the one object its stream names (an insecure repository
        stores an object as a plain file; `cfs repo cat` reassembles the stream)."""
        return cfs("repo", "cat", "--repo", repo, "oci-blob-" + digest).stdout

    def test_push_sends_the_pulled_manifest(self):
        for kind, src in self.sources.items():
            with self.subTest(kind=kind):
                repo = self.new_repo("fat-" + kind)
                got = self.pull(repo, src, "app", "--keep-blobs")
                raw = self.raw(src)
                manifest = json.loads(raw)
                self.assertEqual(got["manifest"], r.sha256_bytes(raw))
                # Every compressed blob is kept, byte for byte (hashlib, not cfs, says so).
                for layer, pulled in zip(manifest["layers"], got["layers"]):
                    self.assertIsNotNone(pulled["blob_stream"], layer)
                    blob = self.kept_blob(repo, layer["digest"])
                    self.assertEqual(len(blob), layer["size"])
                    self.assertEqual("sha256:" + hashlib.sha256(blob).hexdigest(), layer["digest"])
                cfs("oci", "fsck", "--repo", repo)
                # gc keeps the blobs as long as the tag (the manifest stream names them).
                cfs("repo", "gc", "--repo", repo)
                dest = self.reg.ref(f"cfs/copy-{kind}:v1")
                pushed = self.push(repo, "app", dest)
                self.assertEqual(pushed["manifest"], got["manifest"])
                self.assertEqual(self.raw(dest), raw)
                self.assertEqual(pushed["media_type"], manifest.get(
                    "mediaType", "application/vnd.oci.image.manifest.v1+json"))
                # The registry-side copy is a complete image: skopeo copies it out.
                r.skopeo("copy", "--quiet", "--src-tls-verify=false", dest,
                         f"oci:{os.path.join(self.tmp, 'out-' + kind)}:x")
                # Asked for a compression, push rebuilds the layers under a new manifest.
                again = self.push(repo, "app", self.reg.ref(f"cfs/recomp-{kind}:v1"),
                                  "--compression", "zstd")
                self.assertNotEqual(again["manifest"], got["manifest"])

    def test_without_keep_blobs_push_recompresses(self):
        repo = self.new_repo("thin")
        got = self.pull(repo, self.sources["gzip"], "app")
        self.assertEqual([l["blob_stream"] for l in got["layers"]], [None, None])
        self.assertNotIn("oci-blob-", " ".join(os.listdir(os.path.join(repo, "streams"))))
        pushed = self.push(repo, "app", self.reg.ref("cfs/thin:v1"))
        self.assertNotEqual(pushed["manifest"], got["manifest"])
        # A second pull with --keep-blobs fetches the blobs of layers the repository already
        # has, and then the original goes out.
        fat = self.pull(repo, self.sources["gzip"], "app", "--keep-blobs")
        self.assertEqual([l["skipped"] for l in fat["layers"]], [False, False])
        pushed = self.push(repo, "app", self.reg.ref("cfs/thin:v2"))
        self.assertEqual(pushed["manifest"], got["manifest"])
        # ... and a third skips them again.
        third = self.pull(repo, self.sources["gzip"], "app", "--keep-blobs")
        self.assertEqual([l["skipped"] for l in third["layers"]], [True, True])

    def test_uncompressed_layers_need_no_kept_blob(self):
        # An image with uncompressed layers (cfs pushes one; skopeo reads it back): its blobs
        # are the tars the layer streams rebuild, so nothing is kept and the push is exact.
        repo = self.new_repo("plain")
        self.pull(repo, self.sources["gzip"], "app")
        plain = self.reg.ref("cfs/plain:v1")
        self.push(repo, "app", plain, "--compression", "none")
        raw = self.raw(plain)
        other = self.new_repo("plain-pull")
        got = self.pull(other, plain, "app", "--keep-blobs")
        self.assertEqual([l["blob_stream"] for l in got["layers"]], [None, None])
        dest = self.reg.ref("cfs/plain-copy:v1")
        self.assertEqual(self.push(other, "app", dest)["manifest"], r.sha256_bytes(raw))
        self.assertEqual(self.raw(dest), raw)

    def test_oci_layout_source(self):
        # --keep-blobs works for every transport: an oci: layout's gzip blobs, pushed back,
        # give the layout's own manifest.
        repo = self.new_repo("layout")
        got = json.loads(cfs("oci", "pull", "--repo", repo, "--json", "--keep-blobs",
                             f"oci:{self.layout}:v1", "app").stdout)
        index = json.loads(open(os.path.join(self.layout, "index.json"), "rb").read())
        [desc] = [m for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"]
        self.assertEqual(got["manifest"], desc["digest"])
        dest = self.reg.ref("cfs/from-layout:v1")
        self.assertEqual(self.push(repo, "app", dest)["manifest"], desc["digest"])
        self.assertEqual(self.raw(dest), r.layout_blob(self.layout, desc["digest"]))

    def events(self, out):
        lines = [json.loads(ln) for ln in out.decode().splitlines() if ln.strip()]
        return [e for e in lines if "event" in e], lines[-1]

    def test_progress_events(self):
        # `--progress=json`: one JSON object per line; the byte counts are the blob sizes
        # skopeo reports, the totals their sum; the --json report comes last.
        manifest = json.loads(self.raw(self.sources["zstd"]))
        sizes = {l["digest"]: l["size"] for l in manifest["layers"]}
        repo = self.new_repo("progress")
        out = cfs("oci", "pull", "--repo", repo, NOTLS, "--json", "--progress=json",
                  self.sources["zstd"], "app").stdout
        events, report = self.events(out)
        self.assertNotIn("event", report)
        self.assertEqual(report["manifest"], r.sha256_bytes(self.raw(self.sources["zstd"])))
        blobs = [e for e in events if e["event"] != "merging"]
        self.assertEqual({e["digest"] for e in blobs}, set(sizes))
        for digest, size in sizes.items():
            mine = [e for e in blobs if e["digest"] == digest]
            self.assertEqual(mine[0]["event"], "start")
            self.assertEqual(mine[-1]["event"], "done")
            self.assertEqual(mine[-1]["bytes"], size)
            self.assertTrue(all(e["size"] == size for e in mine))
            counts = [e["bytes"] for e in mine]
            self.assertEqual(counts, sorted(counts))
        self.assertTrue(all(e["total_size"] == sum(sizes.values()) for e in blobs))
        self.assertEqual(blobs[-1]["total_bytes"], sum(sizes.values()))
        self.assertEqual(events[-1], {"event": "merging", "layers": len(sizes)})
        # A second pull skips every layer: they leave the total.
        events, _ = self.events(cfs("oci", "pull", "--repo", repo, NOTLS, "--json",
                                    "--progress=json", self.sources["zstd"], "app").stdout)
        skipped = [e for e in events if e["event"] == "skipped"]
        self.assertEqual(sorted(e["digest"] for e in skipped), sorted(sizes))
        self.assertEqual(skipped[-1]["total_size"], 0)
        # Push: upload events, the config included, through the same renderer.
        out = cfs("oci", "push", "--repo", repo, NOTLS, "--json", "--compression", "none", "app",
                  self.reg.ref("cfs/progress:v1")).stdout
        events, result = self.events(out)
        pushed = json.loads(self.raw(self.reg.ref("cfs/progress:v1")))
        for d in pushed["layers"] + [pushed["config"]]:
            end = [e for e in events if e.get("digest") == d["digest"]
                   and e["event"] in ("done", "skipped")]
            self.assertEqual(len(end), 1, events)
            self.assertEqual(end[0]["direction"], "upload")
            if end[0]["event"] == "done":  # else the registry had it (or mounted it)
                self.assertEqual(end[0]["bytes"], d["size"])
        self.assertEqual(result["event"], "result")
        # Without a terminal and without --progress, nothing but the report.
        out = cfs("oci", "pull", "--repo", repo, NOTLS, "--json", self.sources["zstd"]).stdout
        self.assertEqual(len(out.decode().strip().splitlines()), 1)

    def test_fsck_finds_a_damaged_kept_blob(self):
        repo = self.new_repo("damaged")
        got = self.pull(repo, self.sources["gzip"], "app", "--keep-blobs")
        cfs("oci", "fsck", "--repo", repo)
        layer = max(json.loads(self.raw(self.sources["gzip"]))["layers"], key=lambda d: d["size"])
        blob = self.kept_blob(repo, layer["digest"])
        # The blob's object, found by content (the insecure repository has no verity to
        # refuse it): flip one byte in the middle.
        objects = os.path.join(repo, "objects")
        for sub in os.listdir(objects):
            for name in os.listdir(os.path.join(objects, sub)):
                path = os.path.join(objects, sub, name)
                if os.path.getsize(path) == len(blob) and open(path, "rb").read() == blob:
                    data = bytearray(blob)
                    data[len(data) // 2] ^= 1
                    os.chmod(path, 0o644)
                    with open(path, "wb") as f:
                        f.write(data)
        p = cfs("oci", "fsck", "--repo", repo, "--json", check=False)
        self.assertEqual(p.returncode, 1)
        errors = json.loads(p.stdout)["errors"]
        self.assertTrue(any(layer["digest"] in e and "kept blob" in e for e in errors), errors)
        # ... and push refuses to send it.
        p = cfs("oci", "push", "--repo", repo, NOTLS, "app", self.reg.ref("cfs/damaged:v1"),
                check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(layer["digest"], p.stderr.decode())
        self.assertNotEqual(got["manifest"], "")


class RequireSeal(unittest.TestCase):
    """`cfs oci pull --verify-seal` records the seal; `cfs oci mount --require-seal[=CERT]`
    mounts only an image a recorded seal vouches for. Oracles: skopeo finds the seal artifact
    under the referrers fallback tag (its digest is the recorded name), `fsverity sign` makes
    the signature, and a damaged image object is caught because the digest is measured."""

    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci", "openssl")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-sealmount-")
        cls.reg = r.Registry()
        cls.reg.start()
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [{"etc/motd": b"sealed\n", "usr/bin/x": b"x" * 5000}])
        cls.ref = cls.reg.ref("cfs/sealed:v1")
        r.push(cls.layout, "v1", cls.ref, "--dest-tls-verify=false")
        cls.key, cls.cert = cls.keypair("a")
        _, cls.other = cls.keypair("b")
        src = os.path.join(cls.tmp, "repo-src")
        cfs("repo", "init", "--repo", src, "--insecure")
        cfs("oci", "pull", "--repo", src, NOTLS, cls.ref, "app")
        cfs("oci", "seal", "--repo", src, NOTLS, "--key", cls.key, "--cert", cls.cert, "app",
            cls.ref)
        cls.mnt = os.path.join(cls.tmp, "mnt")
        os.mkdir(cls.mnt)

    @classmethod
    def tearDownClass(cls):
        t.umount(cls.mnt)
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def keypair(cls, name):
        key, cert = os.path.join(cls.tmp, name + ".key"), os.path.join(cls.tmp, name + ".pem")
        r.openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                  "-subj", f"/CN=cfs seal {name}", "-keyout", key, "-out", cert)
        return key, cert

    def tearDown(self):
        t.umount(self.mnt)

    def new_repo(self, name):
        path = os.path.join(self.tmp, "repo-" + name)
        cfs("repo", "init", "--repo", path, "--insecure")
        return path

    def mount(self, repo, *opts):
        return t.run([t.tool("cfs"), "oci", "mount", "--repo", repo, *opts, "app", self.mnt],
                     check=False)

    def test_recorded_seal_is_required(self):
        repo = self.new_repo("verified")
        cfs("oci", "pull", "--repo", repo, NOTLS, f"--verify-seal={self.cert}", self.ref, "app")
        # Recorded under composefs-rs' referrer name: the artifact skopeo finds.
        subject = r.sha256_bytes(r.inspect_raw(self.ref, NOTLS))
        base = self.ref.rsplit(":", 1)[0]
        index = json.loads(r.inspect_raw(f"{base}:{subject.replace(':', '-')}", NOTLS))
        [artifact] = [m["digest"] for m in index["manifests"]]
        link = os.path.join(repo, "streams", "refs", "oci-referrers", subject, artifact)
        self.assertTrue(os.path.islink(link), os.listdir(os.path.dirname(link)))
        self.assertEqual(os.path.basename(os.readlink(link)), "oci-manifest-" + artifact)
        # The recorded manifest is the registry's, byte for byte.
        self.assertEqual(cfs("repo", "cat", "--repo", repo, "oci-manifest-" + artifact).stdout,
                         r.inspect_raw(f"{base}@{artifact}", NOTLS))
        for opts in ([], ["--require-seal"], [f"--require-seal={self.cert}"]):
            with self.subTest(opts=opts):
                p = self.mount(repo, *opts)
                self.assertEqual(p.returncode, 0, p.stderr)
                with open(os.path.join(self.mnt, "etc", "motd"), "rb") as f:
                    self.assertEqual(f.read(), b"sealed\n")
                t.umount(self.mnt)
        # Another certificate: refused, nothing mounted.
        t.expect_cli_error(self, ["oci", "mount", "--repo", repo,
                                  f"--require-seal={self.other}", "app", self.mnt], 1,
                           "does not verify")
        self.assertFalse(t.is_mounted(self.mnt))
        # gc keeps the record (it is a name), and the check still passes afterwards.
        cfs("repo", "gc", "--repo", repo)
        cfs("repo", "fsck", "--repo", repo)
        self.assertEqual(self.mount(repo, f"--require-seal={self.cert}").returncode, 0)
        t.umount(self.mnt)
        # A damaged merged image no longer matches the seal: the digest is measured, not
        # taken from the object's name.
        image = json.loads(cfs("oci", "inspect", "--repo", repo, "app").stdout)["image"]
        path = os.path.realpath(os.path.join(repo, "images", image))
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - 1)
            last = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([last[0] ^ 1]))
        t.expect_cli_error(self, ["oci", "mount", "--repo", repo, "--require-seal", "app",
                                  self.mnt], 1, "is not the computed")
        self.assertFalse(t.is_mounted(self.mnt))

    def test_registry_tags_and_referrers_json(self):
        # skopeo is the oracle: its tag list, and the fallback index it reads.
        out = json.loads(cfs("registry", "tags", NOTLS, "--json", self.ref).stdout)
        listed = json.loads(r.skopeo("list-tags", "--tls-verify=false",
                                     self.ref.rsplit(":", 1)[0]).stdout)["Tags"]
        self.assertEqual(sorted(out["tags"]), sorted(listed))
        subject = r.sha256_bytes(r.inspect_raw(self.ref, NOTLS))
        base = self.ref.rsplit(":", 1)[0]
        index = json.loads(r.inspect_raw(f"{base}:{subject.replace(':', '-')}", NOTLS))
        got = json.loads(cfs("registry", "referrers", NOTLS, "--json", self.ref).stdout)
        self.assertEqual(got["subject"], subject)
        self.assertFalse(got["from_api"])
        self.assertEqual([(m["digest"], m["size"], m["artifact_type"]) for m in got["manifests"]],
                         [(m["digest"], m["size"], m.get("artifactType", ""))
                          for m in index["manifests"]])
        self.assertEqual(got["manifests"][0]["artifact_type"],
                         "application/vnd.composefs.metadata.v1")

    def test_no_recorded_seal(self):
        repo = self.new_repo("plain")
        cfs("oci", "pull", "--repo", repo, NOTLS, self.ref, "app")
        t.expect_cli_error(self, ["oci", "mount", "--repo", repo, "--require-seal", "app",
                                  self.mnt], 1, "no composefs seal is recorded")
        self.assertFalse(t.is_mounted(self.mnt))
        # An unsigned seal does not satisfy a certificate.
        unsigned = self.reg.ref("cfs/unsigned:v1")
        r.push(self.layout, "v1", unsigned, "--dest-tls-verify=false")
        cfs("oci", "seal", "--repo", repo, NOTLS, "app", unsigned)
        other = self.new_repo("unsigned")
        cfs("oci", "pull", "--repo", other, NOTLS, unsigned, "app", "--verify-seal")
        self.assertEqual(self.mount(other, "--require-seal").returncode, 0)
        t.umount(self.mnt)
        t.expect_cli_error(self, ["oci", "mount", "--repo", other, f"--require-seal={self.cert}",
                                  "app", self.mnt], 1, "no signed composefs seal")


class SweepDownloads(unittest.TestCase):
    """`cfs repo gc` removes partial downloads older than --download-grace that no running
    pull holds (flock), and leaves everything else in REPO/cfs-downloads alone."""

    def test_sweep(self):
        with t.tempdir(prefix="cfs-sweep-") as tmp:
            repo = os.path.join(tmp, "repo")
            cfs("repo", "init", "--repo", repo, "--insecure")
            d = os.path.join(repo, "cfs-downloads", "sha256")
            os.makedirs(d)
            old = time.time() - 3 * 86400
            files = {}
            for name, age in (("stale", old), ("recent", time.time()), ("locked", old),
                              ("complete", old)):
                hexd = hashlib.sha256(name.encode()).hexdigest()
                path = os.path.join(d, hexd + ("" if name == "complete" else ".partial"))
                with open(path, "wb") as f:
                    f.write(name.encode() * 1000)
                os.utime(path, (age, age))
                files[name] = path
            fifo = os.path.join(d, "f" * 64 + ".partial")
            os.mkfifo(fifo)
            os.utime(fifo, (old, old))
            other = os.path.join(repo, "cfs-downloads", "notes.txt")
            with open(other, "w") as f:
                f.write("not a download")
            os.utime(other, (old, old))
            # A running pull holds its partial file locked (blob_io.h): this process does.
            with open(files["locked"], "rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX)
                dry = json.loads(cfs("repo", "gc", "--repo", repo, "--dry-run", "--json").stdout)
                self.assertEqual((dry["downloads_removed"], dry["download_bytes_removed"]),
                                 (2, 5000 + 8000))
                self.assertTrue(all(os.path.exists(p) for p in files.values()))
                rep = json.loads(cfs("repo", "gc", "--repo", repo, "--json").stdout)
                self.assertEqual(rep["downloads_removed"], 2)
                self.assertEqual(rep["downloads_kept"], 2)
            self.assertEqual(sorted(os.listdir(d)), sorted(
                os.path.basename(p) for p in (files["recent"], files["locked"], fifo)))
            self.assertTrue(os.path.exists(other))
            # Unlocked now; a grace of 0 takes the rest (the FIFO is not a download).
            rep = json.loads(cfs("repo", "gc", "--repo", repo, "--json",
                                 "--download-grace", "0").stdout)
            self.assertEqual(rep["downloads_removed"], 2)
            self.assertEqual(os.listdir(d), [os.path.basename(fifo)])
            cfs("repo", "fsck", "--repo", repo)


if __name__ == "__main__":
    unittest.main()
