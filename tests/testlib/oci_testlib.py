# SPDX-License-Identifier: Apache-2.0
"""Helpers for the OCI tests: the cfs-oci-test driver, umoci images, tar oracles (stdlib)."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import cfs_testlib as t


def read(path):
    with open(path, "rb") as f:
        return f.read()


def have(*progs):
    return all(shutil.which(p) for p in progs)


def driver(*args, check=True, input=None):
    """Runs build/bin/cfs-oci-test; returns the CompletedProcess."""
    return t.run([t.tool("cfs-oci-test"), *map(str, args)], check=check, input=input)


def split(layer, objdir, ss, *opts):
    return json.loads(driver("split", *opts, layer, objdir, ss).stdout)


def cat(ss, objdir, *opts):
    return driver("cat", *opts, ss, objdir).stdout


def entries(ss, *opts):
    out = driver("entries", *opts, ss).stdout.decode()
    rows = [json.loads(line) for line in out.splitlines() if line]
    for r in rows:
        r["path"] = bytes.fromhex(r.pop("path_hex"))
        r["link"] = bytes.fromhex(r.pop("link_hex"))
        r["xattrs"] = {k: bytes.fromhex(v) for k, v in r["xattrs"].items()}
        if "content_hex" in r:
            r["content"] = bytes.fromhex(r.pop("content_hex"))
    return rows


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fsverity_digest(path, alg="sha256"):
    out = subprocess.run(["fsverity", "digest", "--compact", f"--hash-alg={alg}", path],
                         check=True, stdout=subprocess.PIPE).stdout
    return out.decode().strip()


def tar_bytes(members, fmt=tarfile.PAX_FORMAT, **kw):
    """A tar made by Python's tarfile: members are (TarInfo, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name, type=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, mtime=1700000000,
         link="", pax=None, devmajor=0, devminor=0):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mode = mode
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = devmajor, devminor
    if pax:
        ti.pax_headers = dict(pax)
    ti.size = len(data) if type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) else 0
    return ti, (data if ti.size else None)


class UmociImage:
    """An OCI layout built with umoci from rootfs directories, one `umoci insert` per layer."""

    def __init__(self, root, tag="t"):
        self.layout = os.path.join(root, "layout")
        self.tag = tag
        t.run(["umoci", "init", "--layout", self.layout])
        t.run(["umoci", "new", "--image", f"{self.layout}:{tag}"])

    def insert(self, rootfs, dest="/"):
        t.run(["umoci", "insert", "--image", f"{self.layout}:{self.tag}", rootfs, dest])

    def whiteout(self, path):
        t.run(["umoci", "insert", "--image", f"{self.layout}:{self.tag}", "--whiteout", path])

    def blob(self, digest):
        alg, hexd = digest.split(":")
        return os.path.join(self.layout, "blobs", alg, hexd)

    def manifest(self):
        index = json.loads(read(os.path.join(self.layout, "index.json")))
        for m in index["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == self.tag:
                return json.loads(read(self.blob(m["digest"])))
        raise KeyError(self.tag)

    def config(self):
        return json.loads(read(self.blob(self.manifest()["config"]["digest"])))

    def layers(self):
        """[(blob path, media type, diff_id)] in order."""
        m, c = self.manifest(), self.config()
        return [(self.blob(l["digest"]), l["mediaType"], d)
                for l, d in zip(m["layers"], c["rootfs"]["diff_ids"])]
