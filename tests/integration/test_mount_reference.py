#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root
# ctest-timeout: 300
# ctest-cost: 19
"""Images written by upstream composefs 1.0.8 (../shared/compat/composefs-assets/
reference-outputs/*.cfs) mounted with mount.composefs: what the kernel shows must equal the
upstream `composefs-info dump` of the same image (an independent golden source). Metadata and
xattrs of every entry, inline contents and symlink targets are compared; files whose data lives
in the object store are not opened (their objects are not part of the assets)."""
import errno
import gzip
import os
import stat
import tempfile
import unittest

import cfs_testlib as t

REF = os.path.join(t.ASSETS_DIR, "reference-outputs")


def unescape(s):
    out = bytearray()
    i = 0
    b = s.encode("utf-8", "surrogateescape")
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = chr(b[i + 1])
            if n == "x":
                out.append(int(b[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t"}[n]
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def parse_dump(text):
    entries = {}
    for line in text.splitlines():
        if not line:
            continue
        f = line.split(" ")
        f += [""] * (11 - len(f))
        path = unescape(f[0]).decode("utf-8", "surrogateescape")
        xattrs = {}
        for x in f[11:]:
            k, _, v = x.partition("=")
            xattrs[unescape(k).decode("utf-8", "surrogateescape")] = unescape(v)
        entries[path] = {
            "size": int(f[1]), "mode": f[2], "nlink": int(f[3]), "uid": int(f[4]),
            "gid": int(f[5]), "rdev": int(f[6]), "mtime": f[7], "payload": f[8],
            "content": None if f[9] == "-" else unescape(f[9]), "xattrs": xattrs,
        }
    return entries


def read_dump(name):
    for suffix in (".info-dump.txt", ".info-dump.txt.gz"):
        p = os.path.join(REF, name + suffix)
        if os.path.exists(p):
            with open(p, "rb") as f:
                data = f.read()
            if suffix.endswith(".gz"):
                data = gzip.decompress(data)
            return data.decode("utf-8", "surrogateescape")
    return None


class ReferenceImages(unittest.TestCase):
    def setUp(self):
        t.require_root()
        t.require_assets()
        with open("/proc/filesystems") as f:
            if "erofs" not in f.read():
                t.skip("kernel has no erofs")

    def check_image(self, name, mnt, store):
        dump = parse_dump(read_dump(name))
        # The images come without their objects, and a mount whose basedir holds none of them
        # is refused: plant every object as an empty file (object-backed files are never read
        # here, only their metadata).
        for e in dump.values():
            if not e["mode"].startswith("@") and e["payload"] not in ("-", "") and \
                    stat.S_ISREG(int(e["mode"], 8)):
                obj = os.path.join(store, e["payload"].lstrip("/"))
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                open(obj, "wb").close()
        t.run([t.tool("mount.composefs"), os.path.join(REF, name + ".cfs"), mnt, "-o",
               "basedir=" + store])
        try:
            whiteout_parents = set()
            for path, e in dump.items():
                if e["mode"].lstrip("@") and int(e["mode"].lstrip("@"), 8) & 0o170000 == \
                        stat.S_IFCHR and e["rdev"] == 0:
                    whiteout_parents.add(os.path.dirname(path))
            checked = 0
            for path, e in dump.items():
                p = os.path.join(mnt, path.lstrip("/"))
                with self.subTest(image=name, path=path):
                    if e["mode"].startswith("@"):
                        # Hardlink: same inode as its target.
                        self.assertEqual(os.lstat(p).st_ino,
                                         os.lstat(os.path.join(mnt, e["payload"].lstrip("/"))).st_ino)
                        continue
                    mode = int(e["mode"], 8) & 0xFFFF
                    if stat.S_ISREG(mode) and e["size"] > 0 and e["payload"] == "-" and \
                            e["content"] is None:
                        # Data neither inline nor in an object: upstream writes a metacopy
                        # file without redirect, which overlayfs refuses at lookup
                        # ("metacopy with no lower data found").
                        with self.assertRaises(OSError) as cm:
                            os.lstat(p)
                        self.assertEqual(cm.exception.errno, errno.EIO)
                        continue
                    st = os.lstat(p)
                    xattrs = dict(e["xattrs"])
                    if stat.S_ISCHR(mode) and e["rdev"] == 0:
                        # A whiteout in the image is an xwhiteout through the mount.
                        mode = stat.S_IFREG | stat.S_IMODE(mode)
                        xattrs["trusted.overlay.whiteout"] = b""
                        xattrs["user.overlay.whiteout"] = b""
                    if path in whiteout_parents:
                        xattrs["trusted.overlay.whiteouts"] = b""
                        xattrs["user.overlay.whiteouts"] = b""
                    self.assertEqual(oct(st.st_mode), oct(mode))
                    self.assertEqual((st.st_uid, st.st_gid), (e["uid"], e["gid"]))
                    sec, ns = e["mtime"].split(".")
                    self.assertEqual(st.st_mtime_ns, int(sec) * 10**9 + int(ns))
                    if stat.S_ISREG(mode) and not (stat.S_ISCHR(int(e["mode"], 8))):
                        self.assertEqual(st.st_size, e["size"])
                    if stat.S_ISLNK(mode):
                        self.assertEqual(os.readlink(p).encode("utf-8", "surrogateescape"),
                                         unescape(e["payload"]))
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                        self.assertEqual(st.st_rdev, e["rdev"])
                    if stat.S_ISREG(mode) and e["content"] is not None:
                        with open(p, "rb") as f:
                            self.assertEqual(f.read(), e["content"])
                    names = os.listxattr(p, follow_symlinks=False)
                    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                        # The VFS refuses to read user.* xattrs of anything but regular
                        # files and directories (ENODATA); listing shows them.
                        for n in [n for n in names if n.startswith("user.")]:
                            with self.assertRaises(OSError) as cm:
                                os.getxattr(p, n, follow_symlinks=False)
                            self.assertEqual(cm.exception.errno, errno.ENODATA)
                        self.assertEqual(sorted(names), sorted(xattrs))
                        names = [n for n in names if not n.startswith("user.")]
                        xattrs = {k: v for k, v in xattrs.items() if not k.startswith("user.")}
                    got = {n: os.getxattr(p, n, follow_symlinks=False) for n in names}
                    self.assertEqual(got, xattrs)
                    checked += 1
            self.assertGreater(checked, 0)
            print(f"{name}: {checked} entries match the upstream dump", flush=True)
        finally:
            t.run([t.tool("cfs"), "umount", mnt])

    def test_reference_images(self):
        names = sorted(n[:-4] for n in os.listdir(REF) if n.endswith(".cfs"))
        names = [n for n in names if read_dump(n) is not None]
        self.assertTrue(names)
        with tempfile.TemporaryDirectory(prefix="cfs-mount-ref-") as d:
            mnt = os.path.join(d, "mnt")
            store = os.path.join(d, "objects")
            os.makedirs(mnt)
            os.makedirs(store)
            for name in names:
                self.check_image(name, mnt, store)


if __name__ == "__main__":
    t.main()
