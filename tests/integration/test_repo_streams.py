#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""Splitstreams in a repository: `cfs repo cat`, gc and fsck over streams that cfs did not
write.

The repository content is made here, not by cfs: tar layers by Python's tarfile, split by the
rule of the reference document (§2.2: headers inline, regular-file data over 64 bytes an
external object, its padding inline), encoded by the independent splitstream encoder
(tests/testlib/splitstream_oracle.py: Python and the zstd CLI), objects named by
`fsverity digest`, and the layout (objects/XX/rest, streams/<id>, streams/refs/<name> as
relative symlinks) written as composefs-rs writes it (§1.1). Oracles: the tar bytes themselves
and hashlib for reassembly, the file system for what gc removed."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import unittest

import cfs_testlib as t
from cfs_testlib import cfs

ORACLE = os.path.join(t.SOURCE_DIR, "tests", "testlib", "splitstream_oracle.py")
ALG_NUM = {"sha256": 1, "sha512": 2}


def verity_hex(path, alg):
    out = subprocess.run(["fsverity", "digest", f"--hash-alg={alg}", "--compact", path],
                         capture_output=True, text=True, check=True).stdout
    return out.strip()


def make_layer(seed):
    """A tar layer with files above and below the 64-byte inline limit, a symlink, a
    directory, and GNU-style record padding at the end."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name, data=None, kind=tarfile.REGTYPE, target=""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime, ti.mode = kind, 1700000000, 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind == tarfile.SYMTYPE:
                ti.linkname = target
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        add("usr", kind=tarfile.DIRTYPE)
        add("usr/small", b"tiny %d\n" % seed)                      # inline (<= 64)
        add("usr/exactly64", bytes([65 + seed]) * 64)             # inline, at the limit
        add("usr/big", (b"big file %d\n" % seed) * 500)           # external
        add("usr/shared", b"same content in every layer\n" * 10)  # external, shared
        add("usr/link", kind=tarfile.SYMTYPE, target="big")
    data = buf.getvalue()
    return data + bytes(10240 - len(data) % 10240) if len(data) % 10240 else data


class RepoStreams(unittest.TestCase):
    def setUp(self):
        self.d = self.enterContext(t.tempdir("cfs-repo-streams-"))
        self.repo = os.path.join(self.d, "repo")
        self.n = 0

    def init(self, alg):
        self.alg = alg
        cfs("repo", "init", "--repo", self.repo, "--insecure", "--algorithm",
            f"fsverity-{alg}-12")

    def tmp(self, data):
        self.n += 1
        p = os.path.join(self.d, f"tmp{self.n}")
        with open(p, "wb") as f:
            f.write(data)
        return p

    def add_object(self, path):
        """Stores a file as composefs-rs does: objects/XX/<rest>; returns the hex digest."""
        h = verity_hex(path, self.alg)
        os.makedirs(f"{self.repo}/objects/{h[:2]}", exist_ok=True)
        shutil.copyfile(path, f"{self.repo}/objects/{h[:2]}/{h[2:]}")
        return h

    def encode(self, spec_lines):
        spec = self.tmp("\n".join([f"alg {ALG_NUM[self.alg]}", *spec_lines]).encode() + b"\n")
        out = spec + ".ss"
        subprocess.run([sys.executable, ORACLE, "encode", spec, out], check=True)
        return out

    def add_stream(self, content_id, spec_lines, ref=None):
        """Encodes a stream, stores it and links streams/<id> (and streams/refs/<ref>)."""
        h = self.add_object(self.encode(spec_lines))
        os.makedirs(f"{self.repo}/streams", exist_ok=True)
        os.symlink(f"../objects/{h[:2]}/{h[2:]}", f"{self.repo}/streams/{content_id}")
        if ref:
            self.link_ref(ref, content_id)
        return h

    def link_ref(self, ref, content_id):
        path = f"{self.repo}/streams/refs/{ref}"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink("../" * (ref.count("/") + 1) + content_id, path)

    def add_layer(self, tar, ref=None, old_header=False):
        """Splits `tar` by the reference rule; returns (content id, stream hex, object hexes)."""
        spec, objects = ["content_type ocilayer"], []
        if old_header:
            spec.append("old_header")
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            pos = 0
            for m in tf.getmembers():
                if m.isreg() and m.size > 64:
                    spec.append("inline " + tar[pos:m.offset_data].hex())
                    p = self.tmp(tar[m.offset_data:m.offset_data + m.size])
                    objects.append(self.add_object(p))
                    spec.append("object " + p)
                    pos = m.offset_data + m.size
        spec.append("inline " + tar[pos:].hex())
        cid = "oci-layer-sha256:" + hashlib.sha256(tar).hexdigest()
        return cid, self.add_stream(cid, spec, ref), objects

    def objects(self):
        return t.store_objects(f"{self.repo}/objects")

    def cat(self, name):
        return cfs("repo", "cat", "--repo", self.repo, name).stdout

    def gc(self, *args):
        return json.loads(cfs("repo", "gc", "--json", "--repo", self.repo, *args).stdout)

    def fsck(self, ok=True):
        p = cfs("repo", "fsck", "--json", "--repo", self.repo, check=False)
        self.assertEqual(p.returncode, 0 if ok else 1, p.stdout + p.stderr)
        return json.loads(p.stdout)

    def check_streams(self, alg):
        self.init(alg)
        l1, l2 = make_layer(1), make_layer(2)
        c1, s1, o1 = self.add_layer(l1)
        c2, s2, o2 = self.add_layer(l2, old_header=True)  # bootc <= 1.15's header layout
        self.assertEqual(len(set(o1 + o2)), 3)  # "shared" is one object
        # A config stream as composefs-rs writes it: the JSON as its one external object,
        # named references to the layer streams (by the digest of their stream objects).
        config = json.dumps({"rootfs": {"diff_ids": [c1[10:], c2[10:]]}}).encode()
        cfg_path = self.tmp(config)
        cfg_obj = self.add_object(cfg_path)
        cc = "oci-config-sha256:" + hashlib.sha256(config).hexdigest()
        sc = self.add_stream(cc, ["content_type ociconfg", "object " + cfg_path,
                                  f"named {c1[10:]} {s1}", f"named {c2[10:]} {s2}"],
                             ref="oci/app/v1")

        # cat reassembles every stream, by content id and by name, bit for bit.
        self.assertEqual(self.cat(c1), l1)
        self.assertEqual(self.cat(c2), l2)
        self.assertEqual(self.cat(cc), config)
        self.assertEqual(self.cat("refs/oci/app/v1"), config)
        self.assertEqual(hashlib.sha256(self.cat(c2)).hexdigest(), c2.split(":")[1])

        # fsck: the streams and their objects are whole.
        rep = self.fsck()
        self.assertEqual(rep["streams_checked"], 3)

        # gc: the named config stream keeps both layers (named references) and their objects;
        # an object nothing references goes; --dry-run removes nothing.
        stray = self.add_object(self.tmp(b"nobody names me\n" * 20))
        before = self.objects()
        live = {s1, s2, sc, cfg_obj, *o1, *o2}
        self.assertEqual(before, live | {stray})
        dry = self.gc("--dry-run")
        self.assertEqual(dry["objects_removed"], 1)
        self.assertEqual(self.objects(), before)
        out = self.gc()
        self.assertEqual(out["objects_removed"], 1)
        self.assertEqual(out["bytes_removed"], 16 * 20)
        self.assertEqual(self.objects(), live)
        self.assertEqual(self.cat(c1), l1)

        # --root keeps an unnamed stream; without the name everything goes, links included.
        os.unlink(f"{self.repo}/streams/refs/oci/app/v1")
        self.assertEqual(self.gc("--root", c1)["objects_removed"], len(live) - 1 - len(o1))
        self.assertEqual(self.objects(), {s1, *o1})
        out = self.gc()
        self.assertEqual(out["objects_removed"], 1 + len(o1))
        self.assertEqual(self.objects(), set())
        self.assertEqual(os.listdir(f"{self.repo}/streams"), ["refs"]
                         if os.path.isdir(f"{self.repo}/streams/refs") else [])

    def test_sha256_streams(self):
        self.check_streams("sha256")

    def test_sha512_streams(self):
        self.check_streams("sha512")

    def test_fsck_names_what_a_stream_misses_and_gc_keeps_going_safely(self):
        self.init("sha256")
        layer = make_layer(3)
        cid, s, objs = self.add_layer(layer, ref="layer")
        big = objs[0]
        os.unlink(f"{self.repo}/objects/{big[:2]}/{big[2:]}")
        rep = self.fsck(ok=False)
        kinds = {(p["kind"], p["detail"]) for p in rep["problems"]}
        self.assertTrue(any(k == "missing-object" and big[2:] in d for k, d in kinds), rep)
        # cat fails naming the object instead of writing a short stream.
        p = cfs("repo", "cat", "--repo", self.repo, cid, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(big[2:].encode(), p.stderr)
        # A stream object whose bytes were damaged: fsck names it (digest and structure).
        with open(f"{self.repo}/objects/{s[:2]}/{s[2:]}", "r+b") as f:
            f.seek(40)
            f.write(b"\xff" * 8)
        rep = self.fsck(ok=False)
        kinds = {p["kind"] for p in rep["problems"]}
        self.assertIn("object-digest-mismatch", kinds)
        self.assertIn("stream-corrupt", kinds)
        # gc cannot read that root completely: it removes nothing.
        before = self.objects()
        p = cfs("repo", "gc", "--repo", self.repo, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"layer", p.stderr)
        self.assertEqual(self.objects(), before)


if __name__ == "__main__":
    if not shutil.which("fsverity") or not shutil.which("zstd"):
        t.skip("fsverity (fsverity-utils) and zstd needed")
    t.main()
