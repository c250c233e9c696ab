# SPDX-License-Identifier: Apache-2.0
"""Test trees, composefs images built from them, and tree snapshots for comparison (stdlib only).

Images come from cfs's own `mkcomposefs --digest-store` when that works. Until it does (and as
an independent cross-check), `emulate_mkcomposefs` builds an image the way composefs does by
hand: a metadata tree whose regular files are sparse metacopy files carrying
`trusted.overlay.metacopy` (00 24 00 01 + fs-verity digest from Debian's `fsverity digest`) and
`trusted.overlay.redirect`, escaped `trusted.overlay.*` xattrs, xwhiteouts for 0/0 char
devices, the root's opaque marker and 00..ff whiteouts, packed by `mkfs.erofs`, with the
32-byte composefs header written over the unused first bytes of the EROFS image.
"""
import os
import shutil
import stat
import struct
import subprocess

import cfs_testlib as t

COMPOSEFS_MAGIC = 0xD078629A
INLINE_MAX = 64  # composefs inlines regular files of 1..64 bytes


def fsverity_digest(path):
    out = subprocess.run(["fsverity", "digest", "--compact", "--hash-alg=sha256",
                          "--block-size=4096", path], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def make_tree(root):
    """The standard source tree: every file type, odd modes/owners, xattrs incl. escaped
    trusted.overlay.*, a whiteout, inline and external files, shared content."""
    os.makedirs(root)
    os.makedirs(os.path.join(root, "dir/sub"))
    os.makedirs(os.path.join(root, "nest"))
    os.makedirs(os.path.join(root, "empty-dir"))

    def write(rel, data, mode=0o644):
        p = os.path.join(root, rel)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        return p

    write("small", b"hello composefs\n")
    write("empty", b"")
    write("exactly64", b"x" * 64)
    write("big", os.urandom(200_000))
    write("dir/sub/deep", b"deep file content, longer than sixty-four bytes " * 10, 0o600)
    write("dir/dup1", b"duplicate content shared by two files " * 5)
    write("dir/dup2", b"duplicate content shared by two files " * 5, 0o755)
    write("nest/keep", b"kept\n")
    p = write("owned", b"owned by someone else, also long enough to be external " * 3, 0o640)
    os.chown(p, 1234, 5678)
    p = write("xattrs", b"file with xattrs and more than sixty-four bytes of content..." * 2)
    os.setxattr(p, "user.foo", b"bar")
    os.setxattr(p, "user.empty", b"")
    os.setxattr(p, "trusted.other", b"\x00\x01binary")
    os.setxattr(p, "trusted.overlay.foo", b"escaped")  # must come back unchanged
    os.symlink("dir/sub/deep", os.path.join(root, "link"))
    os.symlink("/absolute/dangling", os.path.join(root, "dangling"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "chardev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "blockdev"), 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    os.mknod(os.path.join(root, "nest/gone"), 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(os.path.join(root, "dir"), "user.dirattr", b"d")
    for i, rel in enumerate(["small", "big", "dir/sub/deep", "owned", "link", "dir"]):
        os.utime(os.path.join(root, rel), ns=(1_600_000_000_123_456_789 + i,
                                              1_600_000_000_123_456_789 + i * 1000),
                 follow_symlinks=False)


def cfs_mkcomposefs_works():
    """True when cfs's mkcomposefs builds images (it lands separately)."""
    try:
        mk = t.tool("mkcomposefs")
    except FileNotFoundError:
        return False
    with t.tempdir("cfs-mkprobe-") as d:
        os.makedirs(os.path.join(d, "src"))
        with open(os.path.join(d, "src", "f"), "wb") as f:
            f.write(b"probe " * 20)
        img = os.path.join(d, "img")
        p = subprocess.run([mk, "--digest-store=" + os.path.join(d, "store"),
                            os.path.join(d, "src"), img], capture_output=True)
        if p.returncode != 0 or not os.path.exists(img):
            return False
        with open(img, "rb") as f:
            return struct.unpack("<I", f.read(4))[0] == COMPOSEFS_MAGIC


def _escape_xattrs(path):
    for name in os.listxattr(path, follow_symlinks=False):
        if name.startswith("trusted.overlay."):
            v = os.getxattr(path, name, follow_symlinks=False)
            os.removexattr(path, name, follow_symlinks=False)
            os.setxattr(path, "trusted.overlay.overlay." + name[len("trusted.overlay."):], v,
                        follow_symlinks=False)


def emulate_mkcomposefs(src, image, store, work, metacopy_override=None):
    """Builds a composefs-style image of `src` into `image` and its objects into `store`.

    metacopy_override maps a relative path to the raw trusted.overlay.metacopy value to store
    instead of the correct one (b"" = no digest), for tamper tests. Returns {relpath: digest}.
    """
    metacopy_override = metacopy_override or {}
    meta = os.path.join(work, "meta")
    os.makedirs(work, exist_ok=True)
    subprocess.run(["cp", "-a", src, meta], check=True)
    digests = {}
    for dirpath, dirnames, filenames in os.walk(meta):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, meta)
            st = os.lstat(p)
            _escape_xattrs(p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                # composefs turns 0/0 whiteouts into escaped xwhiteouts (overlayfs.md §7.1).
                os.unlink(p)
                open(p, "wb").close()
                os.chmod(p, stat.S_IMODE(st.st_mode))
                os.chown(p, st.st_uid, st.st_gid)
                for ns in ("trusted.overlay.overlay.", "user.overlay."):
                    os.setxattr(p, ns + "whiteout", b"")
                    os.setxattr(dirpath, ns + "whiteouts", b"")
                    os.setxattr(dirpath, ns + "opaque", b"x")
            elif stat.S_ISREG(st.st_mode) and st.st_size > INLINE_MAX:
                dig = fsverity_digest(p)
                digests[rel] = dig
                obj = os.path.join(store, dig[:2], dig[2:])
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                if not os.path.exists(obj):
                    shutil.copyfile(p, obj)
                    os.chmod(obj, 0o644)
                size = st.st_size
                with open(p, "r+b") as f:
                    f.truncate(0)
                    f.truncate(size)
                value = metacopy_override.get(rel, bytes.fromhex("00240001" + dig))
                os.setxattr(p, "trusted.overlay.metacopy", value)
                os.setxattr(p, "trusted.overlay.redirect", ("/" + dig[:2] + "/" + dig[2:]).encode())
    # Root: opaque plus 00..ff whiteouts, so object directories stay hidden when the kernel
    # lacks data-only layers and the store is mounted as an ordinary lower layer.
    for i in range(256):
        os.mknod(os.path.join(meta, "%02x" % i), 0o644 | stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(meta, "trusted.overlay.opaque", b"y")
    os.makedirs(store, exist_ok=True)
    # Editing entries changed directory mtimes: restore every mtime from the source, children
    # before parents.
    for dirpath, dirnames, filenames in os.walk(meta, topdown=False):
        for name in filenames + dirnames + [""]:
            p = os.path.join(dirpath, name) if name else dirpath
            try:
                st = os.lstat(os.path.join(src, os.path.relpath(p, meta)))
            except FileNotFoundError:
                continue  # the root whiteouts
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    os.makedirs(os.path.dirname(os.path.abspath(image)), exist_ok=True)
    subprocess.run(["mkfs.erofs", "--quiet", "--preserve-mtime", image, meta], check=True,
                   capture_output=True)
    header = struct.pack("<IIII16x", COMPOSEFS_MAGIC, 1, 0, 1)
    with open(image, "r+b") as f:
        f.write(header)
    return digests


def build_image(src, image, store, work, prefer_cfs=True):
    """Builds with cfs mkcomposefs when it works, else emulates. Returns the builder's name."""
    if prefer_cfs and cfs_mkcomposefs_works():
        t.run([t.tool("mkcomposefs"), "--digest-store=" + store, src, image])
        return "cfs"
    emulate_mkcomposefs(src, image, store, work)
    return "emulated"


def snapshot(root, with_mtime=True):
    """{relpath: record} of everything under root: type, mode, owner, size, rdev, mtime,
    symlink target, xattrs and content hash. Reading every regular file forces overlayfs to
    resolve each redirect into the data-only layer."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [""] + sorted(dirnames + filenames):
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            if name == "" and rel != ".":
                continue
            st = os.lstat(p)
            rec = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            if with_mtime:
                rec["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                rec["size"] = st.st_size
                with open(p, "rb") as f:
                    rec["sha256"] = __import__("hashlib").sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                rec["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                rec["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            rec["xattrs"] = {n: os.getxattr(p, n, follow_symlinks=False)
                             for n in sorted(os.listxattr(p, follow_symlinks=False))}
            out[rel] = rec
    return out


WHITEOUT_MARKERS = {"trusted.overlay.whiteout", "trusted.overlay.whiteouts",
                    "trusted.overlay.opaque", "user.overlay.whiteout", "user.overlay.whiteouts",
                    "user.overlay.opaque"}


def expected_through_mount(source_snapshot):
    """What the composefs mount shows for a source snapshot: a 0/0 char device becomes an
    xwhiteout (empty regular file marked trusted.overlay.whiteout), its directory gains the
    opaque=x marker; everything else is identical."""
    exp = {}
    for rel, rec in source_snapshot.items():
        rec = dict(rec, xattrs=dict(rec["xattrs"]))
        if rec.get("rdev") == (0, 0) and stat.S_ISCHR(int(rec["mode"], 8)):
            rec = {k: v for k, v in rec.items() if k != "rdev"}
            rec["mode"] = oct(stat.S_IFREG | stat.S_IMODE(int(rec["mode"], 8)))
            rec["size"] = 0
            rec["sha256"] = __import__("hashlib").sha256(b"").hexdigest()
            rec["xattrs"]["trusted.overlay.whiteout"] = b""
            rec["xattrs"]["user.overlay.whiteout"] = b""
            parent = os.path.dirname(rel) or "."
            exp.setdefault("__parents__", set()).add(parent)
        exp[rel] = rec
    for parent in exp.pop("__parents__", set()):
        x = exp[parent]["xattrs"]
        x["trusted.overlay.whiteouts"] = b""
        x["user.overlay.whiteouts"] = b""
        x["trusted.overlay.opaque"] = b"x"
        x["user.overlay.opaque"] = b"x"
    return exp


def craft_image(image, store, work, files):
    """An image whose recorded digests may be wrong or missing, for tamper tests.

    files: [(name, object_bytes, recorded_digest_hex or None)]; each becomes a top-level
    regular file whose data is object_bytes (stored in `store` under its true digest) and whose
    image entry records recorded_digest_hex (None = no digest). Built from a dump with
    `mkcomposefs --from-file` when cfs's mkcomposefs works, else by emulate_mkcomposefs.
    Returns the builder's name."""
    os.makedirs(work, exist_ok=True)
    objects = {}
    for name, data, _ in files:
        p = os.path.join(work, "obj-" + name)
        with open(p, "wb") as f:
            f.write(data)
        dig = fsverity_digest(p)
        objects[name] = dig
        obj = os.path.join(store, dig[:2], dig[2:])
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        if not os.path.exists(obj):
            shutil.copyfile(p, obj)
    if cfs_mkcomposefs_works():
        lines = ["/ 4096 40755 2 0 0 0 0.0 - - -"]
        for name, data, recorded in sorted(files):
            dig = objects[name]
            lines.append(f"/{name} {len(data)} 100644 1 0 0 0 0.0 {dig[:2]}/{dig[2:]} - "
                         f"{recorded or '-'}")
        dump = os.path.join(work, "crafted.dump")
        with open(dump, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.makedirs(os.path.dirname(os.path.abspath(image)), exist_ok=True)
        t.run([t.tool("mkcomposefs"), "--from-file", dump, image])
        return "cfs"
    src = os.path.join(work, "src")
    os.makedirs(src)
    overrides = {}
    for name, data, recorded in files:
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
        if recorded != objects[name]:
            overrides[name] = bytes.fromhex("00240001" + recorded) if recorded else b""
    emulate_mkcomposefs(src, image, store, os.path.join(work, "emulate"), overrides)
    return "emulated"
