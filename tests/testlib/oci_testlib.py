# SPDX-License-Identifier: Apache-2.0
"""Helpers for the OCI tests: the cfs-oci-test driver, umoci images, tar oracles (stdlib)."""
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading

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


def zstd_bomb(tar_mib, name="usr/bomb"):
    """A layer bomb: a tar of one file of `tar_mib` MiB of zeros, zstd-compressed to a few KB.
    Returns (blob, diff_id); the tar is streamed, never held."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = tar_mib << 20, 1700000000, 0o644
    z = subprocess.Popen(["zstd", "-c", "-q", "-1"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    out = []
    reader = threading.Thread(target=lambda: out.append(z.stdout.read()))
    reader.start()
    h = hashlib.sha256()
    zeros = bytes(1 << 20)
    for piece in [info.tobuf(tarfile.PAX_FORMAT)] + [zeros] * tar_mib + [bytes(1024)]:
        h.update(piece)
        z.stdin.write(piece)
    z.stdin.close()
    reader.join()
    z.stdout.close()
    if z.wait() != 0:
        raise RuntimeError("zstd failed")
    return out[0], "sha256:" + h.hexdigest()


def write_layout(layout, tag, layers):
    """A minimal OCI layout at `layout`: one linux/amd64 image tagged `tag`, its `layers`
    (blob, diff_id, media type) in order."""
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = sha256(data)
        with open(os.path.join(blobs, d.split(":")[1]), "wb") as f:
            f.write(data)
        return d

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [l[1] for l in layers]},
                         "config": {}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": mt, "digest": put(b), "size": len(b)} for b, _, mt in layers],
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


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


def escape(data, extra=b""):
    """composefs dump escaping: printable ASCII except backslash (and `extra`) as is."""
    out = ""
    for b in data:
        if b == 0x5C:
            out += "\\\\"
        elif 0x21 <= b <= 0x7E and bytes([b]) not in extra:
            out += chr(b)
        else:
            out += "\\x%02x" % b
    return out


def dump_of(root):
    """A composefs dump of a directory tree, hardlinks included (the first name in sorted
    depth-first order owns the inode), file digests by `fsverity digest`."""
    names = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        names.append("/" if rel == "." else "/" + rel)
        for f in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
            names.append(("" if rel == "." else "/" + rel) + "/" + f)
    names.sort(key=lambda p: [c.encode() for c in p.split("/") if c])
    big = [n for n in names if stat.S_ISREG(os.lstat(root + n).st_mode)
           and os.lstat(root + n).st_size > 64]
    digests = {}
    if big:
        out = subprocess.run(["fsverity", "digest", "--compact", *[root + n for n in big]],
                             check=True, stdout=subprocess.PIPE).stdout.decode().split()
        digests = dict(zip(big, out))
    owners, lines = {}, []
    for n in names:
        full = root + n
        st = os.lstat(full)
        path = escape(os.fsencode(n))
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in owners:
            lines.append(f"{path} 0 @{st.st_mode:o} 0 0 0 0 0.0 {escape(os.fsencode(owners[key]))} - -")
            continue
        owners[key] = n
        payload, content, digest, size = "-", "-", "-", st.st_size
        if stat.S_ISLNK(st.st_mode):
            payload = escape(os.fsencode(os.readlink(full)))
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > 64:
                digest = digests[n]
                payload = digest[:2] + "/" + digest[2:]
            elif st.st_size:
                content = escape(read(full))
        elif stat.S_ISDIR(st.st_mode):
            size = 0
        xs = "".join(" " + escape(os.fsencode(k), b"=") + "=" +
                     escape(os.getxattr(full, k, follow_symlinks=False), b"=")
                     for k in sorted(os.listxattr(full, follow_symlinks=False)))
        lines.append(f"{path} {size} {st.st_mode:o} {st.st_nlink} {st.st_uid} {st.st_gid} "
                     f"{st.st_rdev} {st.st_mtime_ns // 10**9}.{st.st_mtime_ns % 10**9:09d} "
                     f"{payload} {content} {digest}{xs}")
    return ("\n".join(lines) + "\n").encode()


def apply_composefs_rules(root):
    """Turns an unpacked rootfs (`umoci unpack`) into the tree composefs-rs merges (the
    reference's §2.5): only security.capability xattrs, /run emptied with /usr's mtime, the
    root's metadata copied from /usr."""
    for dirpath, dirs, files in os.walk(root):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirs + files]:
            for x in os.listxattr(name, follow_symlinks=False):
                if x != "security.capability":
                    os.removexattr(name, x, follow_symlinks=False)
    usr = os.lstat(f"{root}/usr")
    run = f"{root}/run"
    if os.path.isdir(run):
        for n in os.listdir(run):
            full = os.path.join(run, n)
            shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) \
                else os.unlink(full)
        os.utime(run, ns=(usr.st_mtime_ns, usr.st_mtime_ns))
    os.chmod(root, stat.S_IMODE(usr.st_mode))
    os.chown(root, usr.st_uid, usr.st_gid)
    os.utime(root, ns=(usr.st_mtime_ns, usr.st_mtime_ns))


def oracle_image(root, out, mkcomposefs):
    """composefs 1.0.8's `--min-version=1` image of an unpacked rootfs with the composefs rules
    applied (in place). 1.0.8's mkcomposefs drops hardlinks when it scans a directory, so the
    rootfs is written as a dump (from lstat and `fsverity digest`) and read with --from-file."""
    apply_composefs_rules(root)
    t.run([mkcomposefs, "--min-version=1", "--from-file", "-", out], input=dump_of(root))
