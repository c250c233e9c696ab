#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 300
"""Every fault the proxy injects between cfs and docker-registry ends in a resumed success or a
clear error, never in wrong bytes: dropped connections, 5xx/429, a flipped byte, wrong
Content-Length, swallowed upload answers, and kill -9 in the middle of a large blob (the next
run continues with a Range request and does not fetch completed blobs again). The proxy's
request log is the evidence of what was asked; skopeo/umoci and hashlib check the results."""
import json
import os
import random
import signal
import shutil
import subprocess
import tempfile
import time
import unittest

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"
FAST = ["--retry-delay", "0.02"]


def cfs(*args, check=True):
    return t.run([t.tool("cfs"), *args], check=check)


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-faults-")
        cls.reg = r.Registry()
        cls.reg.start()
        rng = random.Random(15)
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [
            {"a/one": rng.randbytes(40000)},
            {"b/two": rng.randbytes(60000)},
            {"c/big": rng.randbytes(6 << 20)},
        ])
        r.push(cls.layout, "v1", cls.reg.ref("cfs/faults:v1"), "--dest-tls-verify=false")
        cls.proxy = r.FaultProxy(cls.reg.host)
        cls.ref = cls.proxy.ref("cfs/faults:v1")
        cls.manifest = json.loads(r.inspect_raw(cls.reg.ref("cfs/faults:v1"), NOTLS))
        cls.big = max(cls.manifest["layers"], key=lambda d: d["size"])
        cls.small = [d for d in cls.manifest["layers"] if d is not cls.big] + [cls.manifest["config"]]

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.proxy.clear()
        self.proxy.set_throttle(None)

    def blob_gets(self, digest):
        return [(e["status"], e["range"], e["fault"]) for e in self.proxy.requests("GET", digest)]

    def get_blob(self, digest, *opts, out=None, check=True):
        args = ["registry", "get-blob", NOTLS, *FAST, *opts, self.ref, digest]
        if out:
            args[2:2] = ["-o", out]
        return cfs(*args, check=check)

    def want(self, desc):
        return r.layout_blob(self.layout, desc["digest"])

    # ---- downloads ----

    def test_dropped_connection_resumes_with_range(self):
        self.proxy.add_fault(method="GET", path=self.big["digest"], drop_after=1_000_000)
        got = self.get_blob(self.big["digest"]).stdout
        self.assertEqual(got, self.want(self.big))
        self.assertEqual(self.blob_gets(self.big["digest"]),
                         [(200, None, "drop_after"), (206, "bytes=1000000-", None)])

    def test_server_errors_are_retried(self):
        for status in (500, 502, 503, (429, 0)):
            with self.subTest(status=status):
                self.proxy.clear()
                self.proxy.add_fault(method="GET", path=self.small[0]["digest"], status=status)
                self.assertEqual(self.get_blob(self.small[0]["digest"]).stdout, self.want(self.small[0]))
                code = status[0] if isinstance(status, tuple) else status
                self.assertEqual([s for s, _, _ in self.blob_gets(self.small[0]["digest"])], [code, 200])
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path="/manifests/", status=500)
        got = cfs("registry", "get-manifest", NOTLS, *FAST, self.ref).stdout
        self.assertEqual(r.sha256_bytes(got), r.sha256_bytes(r.inspect_raw(self.reg.ref("cfs/faults:v1"), NOTLS)))

    def test_retry_after_is_honoured(self):
        self.proxy.add_fault(method="GET", path=self.small[0]["digest"], status=(429, 1))
        with tempfile.TemporaryDirectory() as d:
            out = cfs("registry", "fetch", NOTLS, "--retry-delay", "0.01", "--json", self.ref,
                      d).stdout.decode().splitlines()
        retries = [json.loads(ln) for ln in out if '"retry"' in ln]
        self.assertEqual([(e["digest"], e["retry_delay"]) for e in retries],
                         [(self.small[0]["digest"], 1.0)])
        self.assertIn("429", retries[0]["message"])

    def test_retries_run_out_with_a_clear_error(self):
        self.proxy.add_fault(method="GET", path=self.small[0]["digest"], status=503, times=None)
        p = t.expect_cli_error(self, ["registry", "get-blob", NOTLS, "--retry-times", "2",
                                      "--retry-delay", "0.01", self.ref, self.small[0]["digest"]],
                               1, "HTTP 503", "gave up after 2 retries")
        self.assertEqual(len(self.blob_gets(self.small[0]["digest"])), 3)
        self.assertEqual(p.stdout, b"")

    def test_retries_run_out_with_a_clear_error_for_every_request(self):
        # Not only blob downloads: a manifest's error and a registry that refuses connections
        # (nothing listens on the port) say that the retries ran out, after the time they took.
        self.proxy.add_fault(method="GET", path="/manifests/", status=503, times=None)
        p = t.expect_cli_error(self, ["registry", "get-manifest", NOTLS, "--retry-times", "2",
                                      "--retry-delay", "0.01", self.ref],
                               1, "HTTP 503", "gave up after 2 retries")
        self.assertEqual(len(self.proxy.requests("GET", "/manifests/")), 3)
        self.assertEqual(p.stdout, b"")
        port = r.free_port()
        t.expect_cli_error(self, ["registry", "tags", NOTLS, "--retry-times", "1", "--retry-delay",
                                  "0.01", f"docker://127.0.0.1:{port}/cfs/faults"],
                           1, f"127.0.0.1:{port}", "gave up after 1 retries")
        # No retries asked for: nothing to say about them.
        p = t.expect_cli_error(self, ["registry", "tags", NOTLS, "--retry-times", "0",
                                      f"docker://127.0.0.1:{port}/cfs/faults"], 1)
        self.assertNotIn(b"gave up", p.stderr)

    def test_flipped_byte(self):
        d = self.small[0]["digest"]
        # To a pipe: the bytes went out already, so the mismatch is reported, naming both digests.
        self.proxy.add_fault(method="GET", path=d, flip=1000)
        p = t.expect_cli_error(self, ["registry", "get-blob", NOTLS, *FAST, self.ref, d], 1,
                               "digest mismatch", d)
        bad = bytearray(self.want(self.small[0]))
        bad[1000] ^= 0xFF
        self.assertIn(r.sha256_bytes(bytes(bad)), p.stderr.decode())
        # To a file: it starts over once, and the second copy is right.
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "blob")
            self.proxy.clear()
            self.proxy.add_fault(method="GET", path=d, flip=1000)
            self.get_blob(d, out=out)
            with open(out, "rb") as f:
                self.assertEqual(f.read(), self.want(self.small[0]))
            self.assertEqual(self.blob_gets(d), [(200, None, "flip"), (200, None, None)])
            # A registry that always sends the wrong bytes: an error and no output file.
            os.unlink(out)
            self.proxy.add_fault(method="GET", path=d, flip=5, times=None)
            p = self.get_blob(d, out=out, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("digest mismatch", p.stderr.decode())
            self.assertEqual(os.listdir(tmp), [])

    def test_wrong_content_length(self):
        d = self.big["digest"]
        size = str(self.big["size"])
        for delta, want_gets in ((10, [(200, None, "length_delta")]),
                                 (-10, [(200, None, "length_delta"),
                                        (206, f"bytes={self.big['size'] - 10}-", None)])):
            with self.subTest(delta=delta):
                self.proxy.clear()
                self.proxy.add_fault(method="GET", path=d, length_delta=delta)
                self.assertEqual(self.get_blob(d, "--size", size).stdout, self.want(self.big))
                self.assertEqual(self.blob_gets(d), want_gets)
        # Too long without a known size: the client sees the connection end early and asks for
        # the rest, which does not exist; the digest decides.
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=d, length_delta=10)
        self.assertEqual(self.get_blob(d).stdout, self.want(self.big))
        # Too short without a known size cannot be told from the end of the blob: the digest
        # check catches it.
        self.proxy.clear()
        self.proxy.add_fault(method="GET", path=d, length_delta=-10)
        t.expect_cli_error(self, ["registry", "get-blob", NOTLS, *FAST, self.ref, d], 1,
                           "digest mismatch", f"received {self.big['size'] - 10} bytes")

    def test_range_fetch_resumes_inside_the_range(self):
        d = self.big["digest"]
        self.proxy.add_fault(method="GET", path=d, drop_after=5000)
        got = self.get_blob(d, "--range", "100000-199999").stdout
        self.assertEqual(got, self.want(self.big)[100000:200000])
        self.assertEqual(self.blob_gets(d), [(206, "bytes=100000-199999", "drop_after"),
                                             (206, "bytes=105000-199999", None)])

    def test_fetch_with_bad_blob_registers_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            self.proxy.add_fault(method="GET", path=self.small[0]["digest"], flip=7, times=None)
            p = t.expect_cli_error(self, ["registry", "fetch", NOTLS, *FAST, self.ref, d], 1,
                                   "digest mismatch")
            self.assertEqual(p.stdout, b"")
            self.assertFalse(os.path.exists(os.path.join(d, "index.json")))
            hexd = self.small[0]["digest"].split(":")[1]
            names = os.listdir(os.path.join(d, "blobs", "sha256"))
            self.assertNotIn(hexd, names)
            self.assertNotIn(hexd + ".partial", names)

    # ---- kill -9 and resume ----

    def test_kill_during_fetch_then_resume(self):
        big_hex = self.big["digest"].split(":")[1]
        with tempfile.TemporaryDirectory() as d:
            partial = os.path.join(d, "blobs", "sha256", big_hex + ".partial")
            self.proxy.set_throttle(16_000_000)  # 2 MB/s: the big layer takes ~3 s
            proc = subprocess.Popen([t.tool("cfs"), "registry", "fetch", NOTLS, "--jobs", "2",
                                     self.ref, d], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                deadline = time.monotonic() + 60
                small_done = [os.path.join(d, "blobs", "sha256", s["digest"].split(":")[1])
                              for s in self.small]
                while time.monotonic() < deadline:
                    if (os.path.exists(partial) and os.path.getsize(partial) > 500_000
                            and all(os.path.exists(p) for p in small_done)):
                        break
                    self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
                    time.sleep(0.02)
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.wait()
            kept = os.path.getsize(partial)
            self.assertLess(kept, self.big["size"])
            self.assertFalse(os.path.exists(os.path.join(d, "index.json")))
            self.proxy.set_throttle(None)
            since = time.time()
            out = cfs("registry", "fetch", NOTLS, "--json", self.ref, d).stdout.decode().splitlines()
            # Only the rest of the big blob was asked for; completed blobs came from disk.
            gets = [(e["path"].rsplit("/", 1)[1], e["range"])
                    for e in self.proxy.requests("GET", "/blobs/", since=since)]
            self.assertEqual(gets, [(self.big["digest"], f"bytes={kept}-")])
            events = [json.loads(ln) for ln in out]
            start = [e for e in events if e["event"] == "start" and e["digest"] == self.big["digest"]]
            self.assertEqual(start[0]["resumed_from"], kept)
            skipped = {e["digest"] for e in events if e["event"] == "skipped"}
            self.assertEqual(skipped, {s["digest"] for s in self.small})
            self.assertEqual(r.inspect_raw(f"oci:{d}:v1"), r.inspect_raw(self.reg.ref("cfs/faults:v1"), NOTLS))
            self.assertEqual(r.layout_blob(d, self.big["digest"]), self.want(self.big))
            t.run(["umoci", "unpack", "--image", f"{d}:v1", os.path.join(d, "bundle")])
            with open(os.path.join(d, "bundle", "rootfs", "c", "big"), "rb") as f:
                self.assertEqual(len(f.read()), 6 << 20)

    def test_damaged_partial_starts_over(self):
        # A partial file whose bytes are wrong (a crash that lost writes): the resumed download
        # fails its digest check, and the blob is fetched once more from byte 0.
        d = self.small[1]
        hexd = d["digest"].split(":")[1]
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "sha256"))
            with open(os.path.join(tmp, "sha256", hexd + ".partial"), "wb") as f:
                f.write(b"\0" * 100)
            out = os.path.join(tmp, "out")
            self.get_blob(d["digest"], "--download-dir", tmp, out=out)
            with open(out, "rb") as f:
                self.assertEqual(f.read(), self.want(d))
            self.assertEqual(self.blob_gets(d["digest"]), [(206, "bytes=100-", None), (200, None, None)])
            self.assertEqual(os.listdir(os.path.join(tmp, "sha256")), [])

    # ---- uploads ----

    def upload_source(self, size, seed):
        path = os.path.join(self.tmp, f"up{seed}")
        data = random.Random(seed).randbytes(size)
        with open(path, "wb") as f:
            f.write(data)
        return path, data

    def check_uploaded(self, repo, data):
        digest = r.sha256_bytes(data)
        got = cfs("registry", "get-blob", NOTLS, self.reg.ref(repo), digest).stdout
        self.assertEqual(got, data)
        return digest

    def test_monolithic_upload_retried(self):
        path, data = self.upload_source(300_000, 1)
        ref = self.proxy.ref("cfs/up1:x")
        self.proxy.add_fault(method="PUT", path="/blobs/uploads/", status=500)
        out = cfs("registry", "put-blob", NOTLS, *FAST, ref, path).stdout.decode().split()
        self.assertEqual(out, [r.sha256_bytes(data), "uploaded"])
        self.assertEqual([e["status"] for e in self.proxy.requests("PUT")], [500, 201])
        self.assertEqual(len(self.proxy.requests("POST")), 2)  # a fresh session for the retry
        self.check_uploaded("cfs/up1", data)

    def test_chunked_upload_recovers_from_lost_answers(self):
        path, data = self.upload_source(2_500_000, 2)
        ref = self.proxy.ref("cfs/up2:x")
        # The registry takes the first chunk but its answer is lost.
        self.proxy.add_fault(method="PATCH", path="/blobs/uploads/", swallow=True, times=1)
        chunk = 1_000_000
        out = cfs("registry", "put-blob", NOTLS, *FAST, "--chunked-threshold", str(chunk),
                  "--chunk-size", str(chunk), ref, path).stdout.decode().split()
        self.assertEqual(out, [r.sha256_bytes(data), "uploaded"])
        patches = self.proxy.requests("PATCH")
        self.assertEqual(patches[0]["fault"], "swallow")
        # The client asks the session where it stands. distribution 2.8 keeps the upload offset
        # in the HMAC-signed _state of each Location, so the previous Location is refused
        # (404 BLOB_UPLOAD_INVALID) and the upload starts over in a new session.
        self.assertEqual([e["status"] for e in self.proxy.requests("GET", "/blobs/uploads/")], [404])
        self.assertEqual(len(self.proxy.requests("POST")), 2)
        self.assertEqual([e["status"] for e in patches[1:]], [202, 202, 202])
        self.check_uploaded("cfs/up2", data)
        # A failing chunk (500, not applied) is sent again.
        path, data = self.upload_source(2_500_000, 3)
        self.proxy.clear()
        self.proxy.add_fault(method="PATCH", path="/blobs/uploads/", status=500)
        cfs("registry", "put-blob", NOTLS, *FAST, "--chunked-threshold", str(chunk),
            "--chunk-size", str(chunk), self.proxy.ref("cfs/up3:x"), path)
        self.assertEqual([e["status"] for e in self.proxy.requests("PATCH")], [500, 202, 202, 202])
        self.check_uploaded("cfs/up3", data)


if __name__ == "__main__":
    t.main()
