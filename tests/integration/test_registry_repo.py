#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 600
# ctest-cost: 21
"""`cfs oci pull docker://…` into a repository, and seals of repository images, against
Debian's docker-registry 2.8 on loopback (through the fault proxy, which logs every request).
Oracles: skopeo pushes the images (`skopeo copy oci:… docker://…`), and `cfs oci pull oci:` of
the same layout (another transport: no registry code) gives the image id the registry pull must
give; the proxy's log says which blobs were fetched and with which Range; `cfs repo fsck` and
`cfs oci fsck` check what is left after failures; `fsverity digest` gives a sealed digest."""
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import cfs_registry as r
import cfs_testlib as t
import oci_testlib as o

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
        # Mid-blob, so it can be killed there, and the small layer named by then (its name waits
        # for a syncfs, seconds on a loaded machine; with one CPU the default --jobs would
        # import it only after the big one): the resumed pull must not fetch it again.
        p, partial = self.start_trickling_pull(repo, "--jobs", "2", small_named=True)
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
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

    def start_trickling_pull(self, repo, *opts, small_named=False):
        """`cfs oci pull` of cfs/app:v1 with its big layer trickling (8 Mbit/s), returned once
        more than 1 MiB of it is in the partial file (mid-blob) and, with `small_named`, the
        other layer's stream is named (streams/oci-layer-<diff_id>)."""
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=self.big["digest"], throttle_bps=8_000_000)
        partial = os.path.join(repo, "cfs-downloads", "sha256",
                               self.big["digest"].split(":")[1] + ".partial")
        streams = os.path.join(repo, "streams")

        def named():
            return os.path.isdir(streams) and any(n.startswith("oci-layer-")
                                                  for n in os.listdir(streams))
        p = subprocess.Popen([t.tool("cfs"), "oci", "pull", *opts, "--repo", repo, NOTLS,
                              self.proxy.ref("cfs/app:v1")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(partial) and os.path.getsize(partial) > (1 << 20) and \
                    (not small_named or named()):
                return p, partial
            time.sleep(0.05)
        p.kill()
        p.wait()
        self.fail("the big blob never started downloading" +
                  (" or the small layer was never named" if small_named else ""))

    def test_sigint_stops_cleanly_then_resume(self):
        # Issue 14: SIGINT mid-blob cancels the transfers (the client's token): exit 130 at
        # once with one line saying so, everything received kept for the next run, nothing
        # registered. (Before, the default action killed the pull silently: -SIGINT.)
        repo = self.new_repo("sigint")
        p, partial = self.start_trickling_pull(repo)
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=30)  # a hang detector: the trickle alone would take ~6 s more
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("the pull did not stop after SIGINT")
        err = p.stderr.read().decode()
        p.stderr.close()
        self.assertEqual(p.returncode, 130, err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("cfs: interrupted by SIGINT: the pull of "), err)
        self.assertIn("run the same command again to resume", err)
        have = os.path.getsize(partial)
        self.assertLess(have, self.big["size"])
        self.assertEqual(self.tags(repo), [])
        images = os.path.join(repo, "images")
        self.assertEqual([n for n in os.listdir(images) if n != "refs"]
                         if os.path.exists(images) else [], [])
        self.assert_clean(repo)
        # The next pull asks for exactly the rest of the big blob: every byte received before
        # the signal reached the partial file.
        since = time.time()
        got = self.pull(repo, self.proxy.ref("cfs/app:v1"))
        self.assertEqual(got["image"], self.oracle["v1"])
        big = [g for g in self.blob_gets(since) if self.big["digest"] in g[0]]
        self.assertEqual(big, [(self.big["digest"], f"bytes={have}-", 206)])
        self.assert_clean(repo)

    def test_sigint_ends_the_status_line_on_a_terminal(self):
        # With stderr on a terminal (a pty here), the status line is ended before the one line
        # saying the pull stopped: that line starts a line of its own.
        repo = self.new_repo("sigint-tty")
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=self.big["digest"], throttle_bps=8_000_000)
        partial = os.path.join(repo, "cfs-downloads", "sha256",
                               self.big["digest"].split(":")[1] + ".partial")
        master, slave = os.openpty()
        try:
            p = subprocess.Popen([t.tool("cfs"), "oci", "pull", "--repo", repo, NOTLS,
                                  self.proxy.ref("cfs/app:v1")],
                                 stdout=subprocess.DEVNULL, stderr=slave)
            os.close(slave)
            out = b""
            deadline = time.time() + 60
            while time.time() < deadline and not (
                    os.path.exists(partial) and os.path.getsize(partial) > (1 << 20)):
                out += self.read_pty(master, 0.05)
            p.send_signal(signal.SIGINT)
            p.wait(timeout=30)
            out += self.read_pty(master, 0.5)
        finally:
            os.close(master)
        self.assertEqual(p.returncode, 130, out)
        text = out.decode(errors="replace")
        self.assertIn("\r", text)  # a status line was drawn
        last = text.rstrip("\r\n").rsplit("\n", 1)[-1]
        self.assertTrue(last.startswith("cfs: interrupted by SIGINT: the pull of "), repr(text[-400:]))

    @staticmethod
    def read_pty(fd, timeout):
        """What the pty has within `timeout` seconds (b"" once the other side is closed)."""
        import select
        out = b""
        end = time.time() + timeout
        while time.time() < end:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.time()))
            if not ready:
                break
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the last writer closed it
                break
            if not chunk:
                break
            out += chunk
        return out

    def test_sigterm_then_a_second_signal_kills_at_once(self):
        # SIGTERM stops like SIGINT (143); a second signal while it stops takes its default
        # action: SIGTERM and SIGINT sent together (two different signals: neither is merged
        # into the other while pending) end the process by whichever was read second, not
        # with the clean exit's 130 or 143.
        repo = self.new_repo("sigterm")
        p, _ = self.start_trickling_pull(repo)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        err = p.stderr.read().decode()
        p.stderr.close()
        self.assertEqual(p.returncode, 143, err)
        self.assertIn("cfs: interrupted by SIGTERM", err)
        repo = self.new_repo("sigint-twice")
        p, _ = self.start_trickling_pull(repo)
        # Both pending at once, whatever the scheduler does between two kill()s (a test
        # preempted between them let the pull stop and exit 143 before the second came, in
        # session 18's CI): sent while the process is stopped, delivered when it continues.
        os.kill(p.pid, signal.SIGSTOP)
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGTERM)
        os.kill(p.pid, signal.SIGINT)
        os.kill(p.pid, signal.SIGCONT)
        p.wait(timeout=30)
        p.stderr.close()
        self.assertIn(p.returncode, (-signal.SIGTERM, -signal.SIGINT))
        self.assertEqual(self.tags(repo), [])
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

    def test_flipped_byte_in_an_uncompressed_layer(self):
        # No CRC and no tar damage (the byte is inside a file's data): only the blob digest can
        # catch it, and the import hashes the blob once, trusting the client's check of it.
        src = self.new_repo("flip-plain-src")
        self.pull(src, f"oci:{self.layout}:v1", "app")
        plain = "cfs/plain:v1"
        cfs("oci", "push", "--repo", src, NOTLS, "--compression", "none", "app",
            self.reg.ref(plain))
        layers = json.loads(r.inspect_raw(self.reg.ref(plain), NOTLS))["layers"]
        big = max(layers, key=lambda d: d["size"])
        self.assertTrue(big["mediaType"].endswith(".tar"), big)
        repo = self.new_repo("flip-plain")
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=big["digest"], flip=123456, times=None)
        p = self.pull(repo, self.proxy.ref(plain), "app", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("digest mismatch", p.stderr.decode())
        self.assertIn(big["digest"], p.stderr.decode())
        self.assertEqual(self.tags(repo), [])
        self.assert_clean(repo)
        self.proxy.clear()
        self.assertEqual(self.pull(repo, self.proxy.ref(plain), "app")["image"],
                         self.oracle["v1"])

    def test_errors(self):
        repo = self.new_repo("errors")
        t.expect_cli_error(self, ["oci", "pull", "--repo", repo, NOTLS,
                                  self.reg.ref("cfs/nothing:v1")], 1, "cfs/nothing")
        t.expect_cli_error(self, ["oci", "pull", "--repo", repo, "--tls-verify=maybe",
                                  self.reg.ref("cfs/app:v1")], 2, "--tls-verify")
        # A reference of no transport names every form this cfs accepts, docker:// included.
        t.expect_cli_error(self, ["oci", "pull", "--repo", repo, self.reg.host + "/cfs/app:v1"],
                           1, "oci:DIR[:TAG]", "docker-archive:FILE[:REF]",
                           "or docker://HOST[:PORT]/NAME")
        self.assertEqual(self.tags(repo), [])

    def test_a_layer_bomb_stops_at_the_free_space_reserve(self):
        # A registry pull streams into the import an oci: pull uses (test_oci_pull.py has the
        # full-disk case): a zstd layer of 512 MiB of zeros in a blob of a few KB, pulled into
        # a 256 MiB tmpfs that the pull must leave 160 MiB free, stops before the file system
        # fills, naming the blob, how far it got and the reserve; nothing is tagged, both
        # fscks are clean and gc gives the space back.
        t.require_root()
        layout = os.path.join(self.tmp, "bomb")
        blob, diff_id = o.zstd_bomb(512)
        o.write_layout(layout, "v1", [(blob, diff_id,
                                       "application/vnd.oci.image.layer.v1.tar+zstd")])
        ref = self.reg.ref("cfs/bomb:v1")
        r.push(layout, "v1", ref, "--dest-tls-verify=false")
        fs = os.path.join(self.tmp, "fs256")
        os.mkdir(fs)
        t.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", fs])
        self.addCleanup(t.umount, fs)
        repo = os.path.join(fs, "repo")
        cfs("repo", "init", "--repo", repo, "--insecure")
        avail = lambda: os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        before = avail()
        p = self.pull(repo, ref, "--min-free", "160MiB", check=False)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        for n in (ref, "layer 0", o.sha256(blob), "stopped after", "bytes of tar",
                  "less than the 160.0 MiB a pull leaves free", "nothing was tagged",
                  "cfs repo gc"):
            self.assertIn(n, err)
        self.assertEqual(self.tags(repo), [])
        self.assert_clean(repo)
        cfs("repo", "gc", "--repo", repo)
        self.assertGreater(avail(), before - (4 << 20))


    # Seals of repository images (docs/registry.md "Seals").

    def keypair(self, name):
        key, cert = os.path.join(self.tmp, name + ".key"), os.path.join(self.tmp, name + ".pem")
        if not os.path.exists(cert):
            r.openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", f"/CN=cfs seal {name}", "-keyout", key, "-out", cert)
        return key, cert

    def push_copy(self, tag, name):
        ref = self.reg.ref(name)
        r.push(self.layout, tag, ref, "--dest-tls-verify=false")
        return ref

    def seals(self, ref):
        """The seal artifacts skopeo finds under the referrers fallback tag of ref's manifest."""
        subject = r.sha256_bytes(r.inspect_raw(ref, NOTLS))
        base = ref.rsplit(":", 1)[0]
        index = json.loads(r.inspect_raw(f"{base}:{subject.replace(':', '-')}", NOTLS))
        return [json.loads(r.inspect_raw(f"{base}@{m['digest']}", NOTLS))
                for m in index["manifests"]]

    def registry_blob(self, ref, digest):
        name = ref.removeprefix("docker://").split("/", 1)[1].rsplit(":", 1)[0]
        with urllib.request.urlopen(f"http://{self.reg.host}/v2/{name}/blobs/{digest}") as resp:
            return resp.read()

    def image_file(self, repo, image):
        return os.path.join(repo, "images", image)

    def fsverity(self, path, alg):
        out = t.run(["fsverity", "digest", f"--hash-alg={alg}", path]).stdout.decode()
        return out.split()[0].split(":", 1)[1]

    def test_seal_then_verified_pull(self):
        r.require_tools("fsverity", "openssl")
        ref = self.push_copy("v1", "cfs/sealed:v1")
        src = self.new_repo("seal-src")
        image = self.pull(src, ref, "app")["image"]
        out = json.loads(cfs("oci", "seal", "--repo", src, NOTLS, "--json", "app", ref).stdout)
        self.assertFalse(out["signed"])
        [art] = self.seals(ref)
        self.assertEqual(art["artifactType"], "application/vnd.composefs.metadata.v1")
        key = "composefs.merged.erofs.v1.fsverity-sha512-12"
        self.assertEqual(art["layers"][0]["annotations"][key],
                         self.fsverity(self.image_file(src, image), "sha512"))
        cfs("oci", "verify-seal", "--repo", src, NOTLS, "app", ref)
        dst = self.new_repo("seal-dst")
        got = self.pull(dst, ref, "app", "--verify-seal")
        self.assertEqual((got["image"], got["tag"]), (self.oracle["v1"], "app"))
        # Unsigned: a certificate cannot be satisfied; nothing is tagged.
        _, cert = self.keypair("a")
        dst2 = self.new_repo("seal-dst2")
        t.expect_cli_error(self, ["oci", "pull", "--repo", dst2, NOTLS, f"--verify-seal={cert}",
                                  ref, "app"], 1, "no signed composefs seal")
        self.assertEqual(self.tags(dst2), [])
        self.assert_clean(dst2)

    def test_signed_seal_and_wrong_certificate(self):
        r.require_tools("fsverity", "openssl")
        ref = self.push_copy("v1", "cfs/signed:v1")
        src = self.new_repo("signed-src")
        image = self.pull(src, ref, "app")["image"]
        key, cert = self.keypair("a")
        _, other = self.keypair("b")
        cfs("oci", "seal", "--repo", src, NOTLS, "--key", key, "--cert", cert, "app", ref)
        [art] = self.seals(ref)
        layer = art["layers"][0]
        self.assertEqual(layer["mediaType"], "application/vnd.composefs.signature.v1+pkcs7")
        # The signature bytes are what `fsverity sign` makes for the merged image.
        oracle = os.path.join(self.tmp, "signed.sig")
        t.run(["fsverity", "sign", self.image_file(src, image), oracle, "--hash-alg=sha512",
               "--key=" + key, "--cert=" + cert])
        sig = self.registry_blob(ref, layer["digest"])
        with open(oracle, "rb") as f:
            self.assertEqual(sig, f.read())
        ok = self.new_repo("signed-ok")
        self.assertEqual(self.pull(ok, ref, "app", f"--verify-seal={cert}")["tag"], "app")
        bad = self.new_repo("signed-bad")
        t.expect_cli_error(self, ["oci", "pull", "--repo", bad, NOTLS, f"--verify-seal={other}",
                                  ref, "app"], 1, "does not verify")
        self.assertEqual(self.tags(bad), [])
        self.assert_clean(bad)

    def test_tampered_image_fails_verified_pull(self):
        r.require_tools("fsverity")
        # The registry's image is v2 (one layer more), but its seal names v1's merged image,
        # as if a layer had been swapped after sealing.
        ref = self.push_copy("v2", "cfs/tampered:v1")
        src = self.new_repo("tampered-src")
        v1 = self.pull(src, f"oci:{self.layout}:v1", "v1")["image"]
        cfs("oci", "seal", "--repo", src, NOTLS, "--file", self.image_file(src, v1), ref)
        # cfs refuses to seal a repository image onto a manifest with another config.
        t.expect_cli_error(self, ["oci", "seal", "--repo", src, NOTLS, "v1", ref], 1,
                           "its config is")
        dst = self.new_repo("tampered-dst")
        t.expect_cli_error(self, ["oci", "pull", "--repo", dst, NOTLS, ref, "app",
                                  "--verify-seal"], 1, "is not the computed", v1)
        # An optional value must be attached: the image is not taken for a certificate.
        t.expect_cli_error(self, ["oci", "pull", "--repo", dst, NOTLS, "--verify-seal", ref,
                                  "app"], 2, "--verify-seal=CERT")
        self.assertEqual(self.tags(dst), [])
        self.assert_clean(dst)

    def test_sha256_seal_of_a_sha512_repository(self):
        r.require_tools("fsverity")
        ref = self.push_copy("v1", "cfs/seal256:v1")
        src = self.new_repo("seal256")
        image = self.pull(src, ref, "app")["image"]
        cfs("oci", "seal", "--repo", src, NOTLS, "--hash", "sha256", "app", ref)
        [art] = self.seals(ref)
        self.assertEqual(art["layers"][0]["annotations"]["composefs.merged.erofs.v1.fsverity-sha256-12"],
                         self.fsverity(self.image_file(src, image), "sha256"))
        dst = self.new_repo("seal256-dst")
        self.assertEqual(self.pull(dst, ref, "app", "--verify-seal")["tag"], "app")


    # Pushing repository images.

    def interrupt_held(self, args, method, path, what):
        """Runs cfs `args` with every `method` request to `path` held back 60 s by the proxy
        and sends SIGINT once the first such request arrived (the command is mid-request).
        Asserts exit 130 (within a hang detector's 30 s), one line on stderr starting
        "cfs: interrupted by SIGINT: " + `what`; returns (stdout, stderr)."""
        rc, out, err = self.proxy.interrupt_held([t.tool("cfs"), *args], method, path)
        self.assertEqual(rc, 130, (args, err))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith("cfs: interrupted by SIGINT: " + what), err)
        return out, err

    def test_sigint_stops_the_registry_commands(self):
        # Issue 14 for every other command that talks to a registry: each one, held by the
        # registry mid-request, stops at SIGINT with exit 130 and one line naming what stopped,
        # printing and writing nothing. (Before, the default action killed it silently.)
        ref = self.proxy.ref("cfs/app:v1")
        digest = self.big["digest"]
        out_file = os.path.join(self.tmp, "sigint-blob")
        out, _ = self.interrupt_held(["registry", "get-manifest", NOTLS, ref], "GET",
                                     "/manifests/", "the fetch of the manifest of " + ref)
        self.assertEqual(out, b"")
        self.interrupt_held(["registry", "get-blob", NOTLS, "-o", out_file, ref, digest], "GET",
                            "/blobs/" + digest, f"the fetch of blob {digest} stopped: "
                            f"{out_file} was not created")
        self.assertFalse(os.path.exists(out_file))
        out, _ = self.interrupt_held(["registry", "tags", NOTLS, ref], "GET", "/tags/list",
                                     "listing the tags of " + ref)
        self.assertEqual(out, b"")
        out, _ = self.interrupt_held(["registry", "referrers", NOTLS, ref], "GET",
                                     "/manifests/", "listing the referrers of " + ref)
        self.assertEqual(out, b"")
        out, _ = self.interrupt_held(["oci", "lazy-metadata", NOTLS, "--erofs", out_file, ref],
                                     "GET", "/manifests/",
                                     "the fetch of the lazy metadata of " + ref)
        self.assertEqual(out, b"")
        self.assertFalse(os.path.exists(out_file))
        authfile = os.path.join(self.tmp, "sigint-auth.json")
        self.interrupt_held(["login", NOTLS, "--authfile", authfile, "-u", "u", "-p", "p",
                             self.proxy.host], "GET", "/v2/",
                            f"the login to {self.proxy.host} stopped before the registry "
                            "answered: no credentials were stored")
        self.assertFalse(os.path.exists(authfile))

    def test_sigint_stops_a_registry_fetch_then_resume(self):
        # `cfs registry fetch` held on the big layer: no index.json names the image; the same
        # command then completes the copy (skopeo's copy of the layout is the oracle's digest).
        layout = os.path.join(self.tmp, "sigint-layout")
        shutil.rmtree(layout, ignore_errors=True)
        ref = self.proxy.ref("cfs/app:v1")
        self.interrupt_held(["registry", "fetch", NOTLS, ref, layout], "GET",
                            "/blobs/" + self.big["digest"],
                            f"the copy of {ref} into {layout} stopped before its index.json "
                            "named it")
        self.assertFalse(os.path.exists(os.path.join(layout, "index.json")))
        out = cfs("registry", "fetch", NOTLS, "--json", ref, layout).stdout.decode()
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["manifest"],
                         r.sha256_bytes(r.inspect_raw(self.reg.ref("cfs/app:v1"), NOTLS)))
        with open(os.path.join(layout, "index.json")) as f:
            self.assertEqual(json.load(f)["manifests"][0]["digest"], result["manifest"])

    def test_sigint_stops_put_blob_before_the_registry_has_it(self):
        data = random.Random(1416).randbytes(1 << 20)
        path = os.path.join(self.tmp, "sigint-put")
        with open(path, "wb") as f:
            f.write(data)
        digest = r.sha256_bytes(data)
        ref = self.proxy.ref("cfs/put-sigint:v1")
        self.interrupt_held(["registry", "put-blob", NOTLS, ref, path], "PUT",
                            "/blobs/uploads/", f"the upload of {path} to {ref} stopped")
        url = f"http://{self.reg.host}/v2/cfs/put-sigint/blobs/{digest}"
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"))
        self.assertEqual(cm.exception.code, 404)

    def test_sigint_stops_a_seal_before_its_manifest(self):
        # The seal's manifest PUT held: no seal names the image afterwards (the referrers
        # fallback tag of docker-registry 2.8 does not exist); the same command then seals it.
        r.require_tools("fsverity")
        self.push_copy("v1", "cfs/seal-sigint:v1")
        ref = self.proxy.ref("cfs/seal-sigint:v1")
        src = self.new_repo("seal-sigint")
        self.pull(src, ref, "app")
        args = ["oci", "seal", "--repo", src, NOTLS, "app", ref]
        self.interrupt_held(args, "PUT", "/manifests/", f"the seal of app on {ref} stopped")
        subject = r.sha256_bytes(r.inspect_raw(self.reg.ref("cfs/seal-sigint:v1"), NOTLS))
        fallback = (f"http://{self.reg.host}/v2/cfs/seal-sigint/manifests/"
                    + subject.replace(":", "-"))
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(fallback)
        self.assertEqual(cm.exception.code, 404)
        cfs(*args)
        self.assertEqual(len(self.seals(self.reg.ref("cfs/seal-sigint:v1"))), 1)

    def test_sigint_stops_a_push_before_its_manifest(self):
        # Issue 14: a push waiting for the registry (every blob upload's PUT held back 60 s)
        # stops at SIGINT: exit 130 at once, one line, no manifest in the registry; the same
        # command then completes it. (Before, the default action killed it silently.)
        repo = self.new_repo("push-sigint")
        self.pull(repo, f"oci:{self.layout}:v1", "app")
        self.proxy.clear()
        self.proxy.add_fault(method="PUT", path="/blobs/uploads/", times=None, delay=60)
        ref = self.proxy.ref("cfs/pushed-sigint:v1")
        # zstd layers are new blobs: uploaded (POST, then the held PUT), not mounted.
        args = [t.tool("cfs"), "oci", "push", "--repo", repo, NOTLS, "--compression", "zstd",
                "app", ref]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while not self.proxy.requests("POST", "/blobs/uploads/") and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # its PUT is on the way, held by the proxy
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=30)  # a hang detector: the held PUT alone takes 60 s
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("the push did not stop after SIGINT")
        err = p.stderr.read().decode()
        p.stderr.close()
        self.assertEqual(p.returncode, 130, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("cfs: interrupted by SIGINT: the push of app to " + ref, err)
        self.assertIn("run the same command again to resume", err)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(f"http://{self.reg.host}/v2/cfs/pushed-sigint/manifests/v1")
        self.assertEqual(cm.exception.code, 404)
        self.proxy.clear()
        out = t.run(args[:-2] + ["--json", "app", ref]).stdout.decode()
        result = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(result["manifest"],
                         r.sha256_bytes(r.inspect_raw(self.reg.ref("cfs/pushed-sigint:v1"),
                                                      NOTLS)))

    def test_push_from_repository(self):
        r.require_tools("zstd")
        repo = self.new_repo("push")
        self.pull(repo, f"oci:{self.layout}:v2", "app")
        config = json.loads(cfs("oci", "inspect", "--repo", repo, "app").stdout)["config"]
        for comp in ("none", "gzip", "zstd"):
            with self.subTest(compression=comp):
                ref = self.reg.ref(f"cfs/pushed-{comp}:v2")
                out = cfs("oci", "push", "--repo", repo, NOTLS, "--json", "--compression", comp,
                          "app", ref).stdout.decode()
                result = json.loads(out.strip().splitlines()[-1])
                self.assertEqual(result["manifest"], r.sha256_bytes(r.inspect_raw(ref, NOTLS)))
                # The registry holds the config unchanged and layers that decompress (Python's
                # gzip, the zstd CLI) to the diff_ids.
                manifest = json.loads(r.inspect_raw(ref, NOTLS))
                self.assertEqual(self.registry_blob(ref, manifest["config"]["digest"]),
                                 r.layout_blob(self.layout, manifest["config"]["digest"]))
                diff_ids = []
                for layer in manifest["layers"]:
                    blob = self.registry_blob(ref, layer["digest"])
                    self.assertEqual(r.sha256_bytes(blob), layer["digest"])
                    if comp == "gzip":
                        self.assertTrue(layer["mediaType"].endswith("+gzip"))
                        blob = gzip.decompress(blob)
                    elif comp == "zstd":
                        self.assertTrue(layer["mediaType"].endswith("+zstd"))
                        blob = t.run(["zstd", "-dc"], input=blob).stdout
                    else:
                        self.assertTrue(layer["mediaType"].endswith(".tar"), layer)
                    diff_ids.append(r.sha256_bytes(blob))
                self.assertEqual(diff_ids, config["rootfs"]["diff_ids"])
                # skopeo copies it back, and the image pulled from that copy is the same
                # composefs image.
                back = os.path.join(self.tmp, "pushed-" + comp)
                r.skopeo("copy", "--quiet", "--src-tls-verify=false", ref, f"oci:{back}:x")
                check = self.new_repo("push-check-" + comp)
                got = json.loads(cfs("oci", "pull", "--repo", check, "--json",
                                     f"oci:{back}:x").stdout)
                self.assertEqual(got["image"], self.oracle["v2"])
        # The repository image can then be sealed against what was pushed (same config).
        cfs("oci", "seal", "--repo", repo, NOTLS, "app", self.reg.ref("cfs/pushed-gzip:v2"))
        dst = self.new_repo("push-sealed")
        self.assertEqual(self.pull(dst, self.reg.ref("cfs/pushed-gzip:v2"), "app",
                                   "--verify-seal")["image"], self.oracle["v2"])


if __name__ == "__main__":
    t.main()
