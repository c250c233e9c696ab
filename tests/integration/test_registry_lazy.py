#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 600
"""Lazy metadata published by `cfs oci push` (docs/registry.md "Lazy metadata") and
zstd:chunked layers, against Debian's docker-registry 2.8 on loopback. Everything is read back
with urllib from 127.0.0.1 and checked by oracles that are not cfs: Debian's `fsverity digest`
names every object range of the index, the `zstd` CLI decompresses frames and whole layers
(the layer's sha256 is the diff_id of the config umoci wrote), Python's tarfile lists the
layer the zstd:chunked TOC must describe, and the TOC, tar-split and footer are parsed here
from containers/storage's format description. `skopeo copy` copies the pushed images.
(Debian 12's skopeo 1.9.3 hangs writing zstd:chunked itself, so it cannot serve as a second
writer to check this parser against.)"""
import base64
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import tarfile
import tempfile
import unittest
import urllib.request
from datetime import datetime, timezone
from io import BytesIO

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"
SKIPPABLE = 0x184D2A50
TOC_CHECKSUM = "io.github.containers.zstd-chunked.manifest-checksum"
TOC_POSITION = "io.github.containers.zstd-chunked.manifest-position"
TARSPLIT_POSITION = "io.github.containers.zstd-chunked.tarsplit-position"
LAZY_TYPE = "application/vnd.cfs.lazy-metadata.v1"
EROFS_TYPE = "application/vnd.cfs.composefs.erofs.v1+zstd"
INDEX_TYPE = "application/vnd.cfs.object-index.v1+json+zstd"


def cfs(*args, check=True):
    return t.run([t.tool("cfs"), *args], check=check)


def zstd_d(data):
    return t.run(["zstd", "-dc"], input=data).stdout


def _crc64_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xD800000000000000 if c & 1 else c >> 1
        table.append(c)
    return table


CRC64 = _crc64_table()


def crc64_iso(data):
    """Go's crc64.Checksum(data, crc64.MakeTable(crc64.ISO))."""
    c = 0xFFFFFFFFFFFFFFFF
    for b in data:
        c = CRC64[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFFFFFFFFFF


def skippable(blob, offset, length):
    """The data of the skippable frame whose data starts at offset."""
    magic, size = struct.unpack("<II", blob[offset - 8:offset])
    assert magic == SKIPPABLE and size == length, (hex(magic), size, length)
    return blob[offset:offset + length]


def parse_zstd_chunked(blob, annotations):
    """containers/storage's zstd:chunked layout: returns (toc, tar-split lines)."""
    magic, size = struct.unpack("<II", blob[-72:-64])
    assert magic == SKIPPABLE and size == 64, "no zstd:chunked footer frame"
    *f, footer_magic = struct.unpack("<7Q8s", blob[-64:])
    assert footer_magic == b"GNUlInUx", footer_magic
    toc_off, toc_len, toc_ulen, toc_type, ts_off, ts_len, ts_ulen = f
    assert toc_type == 1
    assert annotations[TOC_POSITION] == f"{toc_off}:{toc_len}:{toc_ulen}:1"
    assert annotations[TARSPLIT_POSITION] == f"{ts_off}:{ts_len}:{ts_ulen}"
    toc_z = skippable(blob, toc_off, toc_len)
    assert annotations[TOC_CHECKSUM] == r.sha256_bytes(toc_z)
    # The keys of containers/storage before 1.44 carry the same values (test_registry_podman.py
    # has podman 4.3.1 read them).
    assert annotations["io.containers.zstd-chunked.manifest-checksum"] == annotations[TOC_CHECKSUM]
    assert annotations["io.containers.zstd-chunked.manifest-position"] == annotations[TOC_POSITION]
    toc_raw = zstd_d(toc_z)
    assert len(toc_raw) == toc_ulen
    toc = json.loads(toc_raw)
    ts_z = skippable(blob, ts_off, ts_len)
    assert toc.get("tarSplitDigest") == r.sha256_bytes(ts_z), "tarSplitDigest"
    ts_raw = zstd_d(ts_z)
    assert len(ts_raw) == ts_ulen
    return toc, [json.loads(line) for line in ts_raw.splitlines()]


TAR_TYPES = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir",
             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
             tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def check_zstd_chunked(case, blob, annotations, tar):
    """The layer `blob` is zstd:chunked and describes `tar` exactly."""
    toc, split = parse_zstd_chunked(blob, annotations)
    case.assertEqual(toc["version"], 1)
    entries = [e for e in toc["entries"] if e["type"] != "chunk"]
    # umoci 0.4.7's layers stop inside the last entry's padding: complete them for tarfile.
    whole = BytesIO(tar + b"\0" * (-len(tar) % 512 + 1024))
    archive = tarfile.open(fileobj=whole)
    members = archive.getmembers()
    case.assertEqual(len(entries), len(members))
    contents = {}
    for e, m in zip(entries, members):
        case.assertEqual(e["name"].rstrip("/"), m.name.rstrip("/"))
        case.assertEqual(e["type"], TAR_TYPES[m.type], m.name)
        case.assertEqual(e.get("mode", 0), m.mode, m.name)
        case.assertEqual(e.get("uid", 0), m.uid, m.name)
        case.assertEqual(e.get("gid", 0), m.gid, m.name)
        case.assertEqual(e.get("linkName", ""), m.linkname, m.name)
        mtime = datetime.fromisoformat(e["modtime"].replace("Z", "+00:00"))
        case.assertEqual(int(mtime.timestamp()), int(m.mtime), m.name)
        if m.isreg():
            case.assertEqual(e.get("size", 0), m.size, m.name)
            data = archive.extractfile(m).read()
            contents[m.name] = data
            if m.size:
                case.assertEqual(e["digest"], r.sha256_bytes(data), m.name)
                # The file's range is zstd frames holding exactly its bytes.
                case.assertEqual(zstd_d(blob[e["offset"]:e["endOffset"]]), data, m.name)
    # The tar-split rebuilds the tar byte for byte from the raw segments and the file contents.
    rebuilt = b""
    for n, line in enumerate(split):
        case.assertEqual(line["position"], n)
        if line["type"] == 2:
            rebuilt += base64.b64decode(line["payload"])
        else:
            case.assertEqual(line["type"], 1)
            if line.get("size"):
                data = contents[line["name"]] if line["name"] in contents else \
                    contents[line["name"].rstrip("/")]
                case.assertEqual(base64.b64decode(line["payload"]),
                                 struct.pack(">Q", crc64_iso(data)), line["name"])
                rebuilt += data
    case.assertEqual(rebuilt, tar)


class LazyPublish(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci", "zstd", "fsverity")
        cls.tmp = tempfile.mkdtemp(prefix="cfs-lazypub-")
        cls.reg = r.Registry()
        cls.reg.start()
        rng = random.Random(1515)
        cls.layout = os.path.join(cls.tmp, "img")
        cls.big = rng.randbytes(3 << 20)
        r.build_image(cls.layout, "v1", [
            {"usr/bin/tool": b"#!/bin/sh\necho tool\n" * 10, "etc/hostname": b"cfs\n",
             "usr/lib/big": cls.big, "usr/lib/same": b"same content " * 100},
            {"usr/share/doc/a": rng.randbytes(5000), "usr/share/doc/empty": b"",
             "usr/lib/copy": b"same content " * 100, "usr/share/b": rng.randbytes(70000)},
        ])
        cls.repo = os.path.join(cls.tmp, "repo")
        cfs("repo", "init", "--repo", cls.repo, "--insecure")
        cls.image = json.loads(cfs("oci", "pull", "--repo", cls.repo, "--json",
                                   f"oci:{cls.layout}:v1", "app").stdout)["image"]
        cls.config = json.loads(cfs("oci", "inspect", "--repo", cls.repo, "app").stdout)["config"]

    @classmethod
    def tearDownClass(cls):
        cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def get(self, name, what, accept=None):
        req = urllib.request.Request(f"http://{self.reg.host}/v2/{name}/{what}")
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req) as resp:
            return resp.read()

    def raw_manifest(self, name, ref):
        return self.get(name, f"manifests/{ref}", "application/vnd.oci.image.manifest.v1+json, "
                        "application/vnd.oci.image.index.v1+json")

    def manifest(self, name, ref):
        return json.loads(self.raw_manifest(name, ref))

    def push(self, name, *opts, check=True):
        p = cfs("oci", "push", "--repo", self.repo, NOTLS, "--json", *opts, "app",
                self.reg.ref(f"{name}:v1"), check=check)
        return json.loads(p.stdout.decode().strip().splitlines()[-1]) if check else p

    def put(self, name, what, data, method="PUT", content_type=None):
        req = urllib.request.Request(f"http://{self.reg.host}/v2/{name}/{what}", data=data,
                                     method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req) as resp:
            return resp.headers

    def put_blob(self, name, data):
        """A monolithic upload (distribution spec: POST, then PUT with the digest)."""
        location = self.put(name, "blobs/uploads/", b"", method="POST")["Location"]
        digest = r.sha256_bytes(data)
        sep = "&" if "?" in location else "?"
        url = location if location.startswith("http") else f"http://{self.reg.host}{location}"
        req = urllib.request.Request(f"{url}{sep}digest={digest}", data=data, method="PUT")
        req.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(req).close()
        return digest

    def fsverity(self, paths, alg="sha512"):
        out = t.run(["fsverity", "digest", f"--hash-alg={alg}", "--compact", *paths]).stdout
        return out.decode().split()

    def lazy_artifact(self, name, digest):
        """The lazy-metadata artifact found under the referrers fallback tag."""
        index = self.manifest(name, digest.replace(":", "-"))
        lazy = [m for m in index["manifests"] if m.get("artifactType") == LAZY_TYPE]
        self.assertEqual(len(lazy), 1, index)
        return self.manifest(name, lazy[0]["digest"])

    def check_pushed(self, name, result, compression):
        """Layers, lazy metadata and every object range of the index, against the oracles."""
        manifest = self.manifest(name, "v1")
        self.assertEqual(result["manifest"], r.sha256_bytes(self.raw_manifest(name, "v1")))
        tars = []
        for layer in manifest["layers"]:
            blob = self.get(name, f"blobs/{layer['digest']}")
            tar = zstd_d(blob) if compression == "zstd-chunked" else blob
            tars.append(tar)
            if compression == "zstd-chunked":
                self.assertTrue(layer["mediaType"].endswith("+zstd"))
                check_zstd_chunked(self, blob, layer["annotations"], tar)
        self.assertEqual([r.sha256_bytes(x) for x in tars], self.config["rootfs"]["diff_ids"])

        artifact = self.lazy_artifact(name, result["manifest"])
        self.assertEqual(result["lazy_metadata"],
                         r.sha256_bytes(self.raw_manifest(name, result["lazy_metadata"])))
        self.assertEqual(artifact["subject"]["digest"], result["manifest"])
        layers = {l["mediaType"]: l for l in artifact["layers"]}
        erofs_blob = self.get(name, f"blobs/{layers[EROFS_TYPE]['digest']}")
        erofs = zstd_d(erofs_blob)  # the zstd CLI skips the compact index's skippable frame
        index = json.loads(zstd_d(self.get(name, f"blobs/{layers[INDEX_TYPE]['digest']}")))
        work = tempfile.mkdtemp(dir=self.tmp)
        with open(os.path.join(work, "image.erofs"), "wb") as f:
            f.write(erofs)
        # The EROFS is the repository's merged image, and the index and annotation name it.
        erofs_digest = self.fsverity([os.path.join(work, "image.erofs")])[0]
        self.assertEqual(erofs_digest, self.image)
        self.assertEqual(index["image"], erofs_digest)
        head, compact_z = r.compact_index_frame(erofs_blob, layers[EROFS_TYPE]["annotations"])
        self.assertEqual(zstd_d(head), erofs)
        self.assertEqual(layers[EROFS_TYPE]["annotations"],
                         {"composefs.merged.erofs.v1.fsverity-sha512-12": erofs_digest,
                          r.COMPACT_INDEX_ANNOTATION: str(len(compact_z))})
        self.assertEqual([(l["digest"], l["size"], l["mediaType"]) for l in index["layers"]],
                         [(l["digest"], l["size"], l["mediaType"]) for l in manifest["layers"]])
        self.assertEqual([l["diffId"] for l in index["layers"]], self.config["rootfs"]["diff_ids"])
        # Every object range holds bytes whose fs-verity digest is the one named.
        paths = []
        for n, o in enumerate(index["objects"]):
            blob_digest = index["layers"][o["layer"]]["digest"]
            data = self.get(name, f"blobs/{blob_digest}")[o["offset"]:o["offset"] + o["length"]]
            self.assertEqual(o["compression"], "none" if compression == "none" else "zstd")
            if o["compression"] == "zstd":
                data = zstd_d(data)
            self.assertEqual(len(data), o["size"])
            paths.append(os.path.join(work, f"o{n}"))
            with open(paths[-1], "wb") as f:
                f.write(data)
        self.assertEqual(self.fsverity(paths), [o["digest"] for o in index["objects"]])
        # The compact index the EROFS blob ends with (read by the format's description,
        # cfs_registry.compact_index_decode) places the same objects as the JSON index, for the
        # same image and layers; the config in the artifact's manifest is the config blob's.
        compact = r.compact_index_decode(zstd_d(compact_z))
        self.assertEqual(compact["image"], erofs_digest)
        self.assertEqual(compact["layers"], index["layers"])
        placed = lambda objs: sorted((o["layer"], o["offset"], o["length"], o["size"],
                                      o["compression"]) for o in objs)
        self.assertEqual(placed(compact["objects"]), placed(index["objects"]))
        self.assertEqual(len({o["nid"] for o in compact["objects"]}), len(compact["objects"]))
        self.assertEqual(base64.b64decode(artifact["annotations"][r.IMAGE_CONFIG_ANNOTATION]),
                         self.get(name, f"blobs/{manifest['config']['digest']}"))
        # Every object of the merged image is placed: the files above 64 bytes, once each
        # (usr/lib/same and usr/lib/copy are one object).
        self.assertEqual(len(index["objects"]), 5)
        self.assertEqual(result["indexed_objects"], 5)
        # skopeo copies the pushed image (and, through it, any registry tool would).
        r.skopeo("copy", "--quiet", "--src-tls-verify=false", self.reg.ref(f"{name}:v1"),
                 f"oci:{os.path.join(work, 'copy')}:x")
        # The fetch side checks the same metadata and hands it back.
        got = json.loads(cfs("oci", "lazy-metadata", NOTLS, "--json", "--erofs",
                             os.path.join(work, "fetched.erofs"), self.reg.ref(f"{name}:v1")).stdout)
        self.assertEqual(got["image"], "sha512:" + erofs_digest)
        self.assertEqual(got["objects"], 5)
        self.assertIsNone(got["seal"])
        with open(os.path.join(work, "fetched.erofs"), "rb") as f:
            self.assertEqual(f.read(), erofs)
        return erofs

    def test_push_uncompressed(self):
        result = self.push("cfs/lazy-none", "--compression", "none")
        self.check_pushed("cfs/lazy-none", result, "none")

    def test_push_zstd_chunked(self):
        result = self.push("cfs/lazy-chunked", "--compression", "zstd-chunked")
        self.check_pushed("cfs/lazy-chunked", result, "zstd-chunked")
        # Pushing again changes nothing: same manifest, same artifact.
        again = self.push("cfs/lazy-chunked", "--compression", "zstd-chunked")
        self.assertEqual((again["manifest"], again["lazy_metadata"]),
                         (result["manifest"], result["lazy_metadata"]))

    def test_reads_uncompressed_metadata(self):
        """Lazy metadata as cfs pushed it before its blobs were compressed (the EROFS and the
        index as they are, media types without +zstd) is still read."""
        name = "cfs/lazy-plain"
        result = self.push(name, "--compression", "none")
        artifact = self.lazy_artifact(name, result["manifest"])
        plain = {}
        artifact.pop("annotations")  # as cfs pushed it then: no config, no compact index
        for layer in artifact["layers"]:
            self.assertTrue(layer["mediaType"].endswith("+zstd"), layer)
            layer.get("annotations", {}).pop(r.COMPACT_INDEX_ANNOTATION, None)
            data = zstd_d(self.get(name, f"blobs/{layer['digest']}"))
            layer["mediaType"] = layer["mediaType"].removesuffix("+zstd")
            layer["digest"], layer["size"] = self.put_blob(name, data), len(data)
            plain[layer["mediaType"]] = data
        raw = json.dumps(artifact).encode()
        digest = r.sha256_bytes(raw)
        self.put(name, f"manifests/{digest}", raw, content_type=artifact["mediaType"])
        # Listed last under the referrers fallback tag: the newest, the one a reader takes.
        tag = result["manifest"].replace(":", "-")
        index = self.manifest(name, tag)
        index["manifests"].append({"mediaType": artifact["mediaType"], "digest": digest,
                                   "size": len(raw), "artifactType": LAZY_TYPE})
        self.put(name, f"manifests/{tag}", json.dumps(index).encode(),
                 content_type=index["mediaType"])
        fetched = os.path.join(self.tmp, "plain.erofs")
        got = json.loads(cfs("oci", "lazy-metadata", NOTLS, "--json", "--erofs", fetched,
                             self.reg.ref(f"{name}:v1")).stdout)
        self.assertEqual(got["artifact"], digest)
        self.assertEqual(got["image"], "sha512:" + self.image)
        self.assertEqual(got["objects"], 5)
        with open(fetched, "rb") as f:
            self.assertEqual(f.read(), plain["application/vnd.cfs.composefs.erofs.v1"])

    def test_gzip_has_no_lazy_metadata(self):
        result = self.push("cfs/lazy-gzip", "--compression", "gzip")
        self.assertIsNone(result["lazy_metadata"])
        t.expect_cli_error(self, ["oci", "lazy-metadata", NOTLS,
                                  self.reg.ref("cfs/lazy-gzip:v1")], 1,
                           "has no lazy metadata: use cfs oci pull")
        t.expect_cli_error(self, ["oci", "push", "--repo", self.repo, NOTLS,
                                  "--compression", "zstd", "--lazy-metadata", "app",
                                  self.reg.ref("cfs/lazy-zstd:v1")], 1,
                           "lazy metadata needs layers a file can be fetched from")
        # An explicit --no-lazy-metadata publishes none even for uncompressed layers.
        self.assertIsNone(self.push("cfs/lazy-off", "--compression", "none",
                                    "--no-lazy-metadata")["lazy_metadata"])

    def test_seal_must_name_the_published_erofs(self):
        ref = self.reg.ref("cfs/lazy-sealed:v1")
        self.push("cfs/lazy-sealed", "--compression", "zstd-chunked")
        # Not sealed: the metadata is served, and --require-seal refuses it.
        t.expect_cli_error(self, ["oci", "lazy-metadata", NOTLS, "--require-seal",
                                  ref], 1, "no composefs seal")
        # Sealed with the image's digest: served, and the seal is reported.
        cfs("oci", "seal", "--repo", self.repo, NOTLS, "app", ref)
        got = json.loads(cfs("oci", "lazy-metadata", NOTLS, "--json", "--require-seal",
                             ref).stdout)
        self.assertIsNotNone(got["seal"])
        # A second image, sealed with another EROFS's digest: its lazy metadata is refused.
        other = os.path.join(self.tmp, "other.erofs")
        ref2 = self.reg.ref("cfs/lazy-missealed:v1")
        self.push("cfs/lazy-missealed", "--compression", "none")
        src = os.path.join(self.tmp, "other-src")
        os.makedirs(src, exist_ok=True)
        with open(os.path.join(src, "f"), "wb") as f:
            f.write(b"not the image")
        t.run([t.tool("mkcomposefs"), src, other])
        cfs("oci", "seal", NOTLS, "--file", other, ref2)
        t.expect_cli_error(self, ["oci", "lazy-metadata", NOTLS, ref2], 1,
                           "is not the computed")


if __name__ == "__main__":
    t.main()
