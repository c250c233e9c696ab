#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""mkcomposefs / cfs create end to end: every option, usage and input errors (exit status,
message naming the file), no half-written output, reproducibility, and the digest store.

Oracles are independent of cfs: Debian's `fsverity digest` (image digest, object names),
`dump.erofs` and `fsck.erofs` from erofs-utils (inode fields, image validity), the composefs
header bytes as specified, and the source tree itself."""
import json
import os
import pty
import random
import re
import shutil
import stat
import struct
import subprocess
import unittest

import cfs_testlib as t

MK = None


def fsverity_digest(path):
    out = subprocess.run(["fsverity", "digest", "--compact", "--hash-alg=sha256",
                          "--block-size=4096", path], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def mk(*args, check=True, env=None, input=None):
    return t.run([MK] + [str(a) for a in args], check=check, env=env, input=input)


def header_version(image):
    with open(image, "rb") as f:
        magic, hdr_version, _flags, version = struct.unpack("<IIII", f.read(16))
    assert magic == 0xD078629A, hex(magic)
    assert hdr_version == 1
    return version


def erofs_inode(image, path):
    """Fields dump.erofs prints for one path: size, nid, links, uid, gid, mode, timestamp."""
    p = subprocess.run(["dump.erofs", "--path=" + path, image], capture_output=True, text=True)
    if p.returncode != 0 or "NID:" not in p.stdout:
        return None
    out = {}
    m = re.search(r"Size: (\d+)", p.stdout)
    out["size"] = int(m.group(1))
    m = re.search(r"NID: (\d+)\s+Links: (\d+)", p.stdout)
    out["nid"], out["links"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"Xattr size: (\d+)", p.stdout)
    out["xattr_size"] = int(m.group(1))
    m = re.search(r"Uid: (\d+)\s+Gid: (\d+)\s+Access: (\d+)", p.stdout)
    out["uid"], out["gid"], out["perm"] = int(m.group(1)), int(m.group(2)), int(m.group(3), 8)
    m = re.search(r"Timestamp: (\S+ \S+)", p.stdout)
    out["timestamp"] = m.group(1)
    return out


def fsck_ok(test, image):
    p = subprocess.run(["fsck.erofs", image], capture_output=True, text=True)
    test.assertEqual(p.returncode, 0, p.stdout + p.stderr)


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_tree(root, order_seed=None):
    """A deterministic tree (content, modes, mtimes) whose entries are created in an order
    that depends on order_seed, so readdir order differs between two copies."""
    files = {}
    for d in range(6):
        for f in range(12):
            size = [0, 1, 17, 64, 65, 100, 4096, 5000, 70000][(d * 12 + f) % 9]
            files[f"d{d}/sub{f % 3}/f{f}"] = bytes([(d * 31 + f) % 251]) * size
    files["dup-a"] = b"same content in two files " * 10
    files["dup-b"] = b"same content in two files " * 10
    files["top"] = b"top level"
    items = sorted(files.items())
    if order_seed is not None:
        random.Random(order_seed).shuffle(items)
    os.makedirs(root)
    for rel, data in items:
        write(os.path.join(root, rel), data, 0o600 if len(data) % 2 else 0o644)
    links = [("link-rel", "d0/sub0/f0"), ("link-abs", "/nowhere/at/all")]
    if order_seed is not None:
        random.Random(order_seed + 1).shuffle(links)
    for name, target in links:
        os.symlink(target, os.path.join(root, name))
    os.mkfifo(os.path.join(root, "fifo"))
    # Fixed mtimes, children before parents (creating entries changed directory mtimes).
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames + [""]:
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            ns = 1_650_000_000_000_000_000 + (sum(rel.encode()) % 1000) * 1_000_000_007
            os.utime(p, ns=(ns, ns), follow_symlinks=False)
    return files


class Mkcomposefs(unittest.TestCase):
    def setUp(self):
        self._dir = t.tempdir("cfs-mk-")
        self.d = self._dir.__enter__()
        self.src = os.path.join(self.d, "src")
        self.files = make_tree(self.src)

    def tearDown(self):
        self._dir.__exit__(None, None, None)

    def path(self, *parts):
        return os.path.join(self.d, *parts)

    # --- digests and output modes -------------------------------------------------------

    def test_print_digest_is_fsverity_of_image(self):
        img = self.path("img")
        p = mk("--print-digest", self.src, img)
        self.assertEqual(p.stdout.decode(), fsverity_digest(img) + "\n")
        fsck_ok(self, img)
        self.assertEqual(header_version(img), 0)
        self.assertEqual(os.stat(img).st_size % 4096, 0)
        # --print-digest-only: the same digest, no image, and giving an image is an error.
        only = mk("--print-digest-only", self.src)
        self.assertEqual(only.stdout, p.stdout)
        bad = mk("--print-digest-only", self.src, self.path("x"), check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn(b"Cannot specify destination path", bad.stderr)
        self.assertFalse(os.path.exists(self.path("x")))

    def test_stdout_output_equals_file_output(self):
        img = self.path("img")
        mk(self.src, img)
        p = mk(self.src, "-")
        with open(img, "rb") as f:
            self.assertEqual(p.stdout, f.read())

    def test_stdout_refused_when_tty(self):
        master, slave = pty.openpty()
        try:
            p = subprocess.run([MK, self.src, "-"], stdout=slave, stderr=subprocess.PIPE)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"stdout is a tty", p.stderr)

    def test_threads_store_and_order_do_not_change_bytes(self):
        ref = self.path("ref")
        mk("--threads=1", self.src, ref)
        for args in (["--threads=2"], ["--threads", "4"], ["--threads=3"],
                     ["--digest-store=" + self.path("store"), "--threads=2"]):
            out = self.path("out")
            mk(*args, self.src, out)
            self.assertEqual(t.sha256_file(out), t.sha256_file(ref), args)
        # The same tree created in two other orders (different readdir order, inode numbers).
        for seed in (1, 2):
            other = self.path(f"src{seed}")
            make_tree(other, order_seed=seed)
            os.utime(other, ns=(os.stat(self.src).st_mtime_ns,) * 2)
            out = self.path("out")
            mk(other, out)
            self.assertEqual(t.sha256_file(out), t.sha256_file(ref), f"order seed {seed}")

    def test_cfs_create_same_bytes_and_json(self):
        ref = self.path("ref")
        mk(self.src, ref)
        out = self.path("out")
        p = t.run([t.tool("cfs"), "create", "--json", "--digest-store", self.path("store"),
                   self.src, out])
        self.assertEqual(t.sha256_file(out), t.sha256_file(ref))
        rep = json.loads(p.stdout)
        self.assertEqual(rep["digest"], fsverity_digest(out))
        self.assertEqual(rep["size"], os.stat(out).st_size)
        self.assertEqual(rep["version"], 0)
        external = {d for d in self.files.values() if len(d) > 64}
        self.assertEqual(rep["objects_added"], len(external))
        self.assertEqual(rep["objects_existed"], 0)  # dup-a and dup-b are one object, added once
        self.assertEqual(rep["external_files"], sum(1 for d in self.files.values() if len(d) > 64))
        # Usage errors: exit 2 for the cfs front end.
        for bad in (["create"], ["create", "--threads=0", self.src, out],
                    ["create", "--min-version=2", self.src, out],
                    ["create", "--skip-xattrs", "--user-xattrs", self.src, out],
                    ["create", "--print-digest-only", self.src, out]):
            p = t.run([t.tool("cfs")] + bad, check=False)
            self.assertEqual(p.returncode, 2, bad)

    # --- versions --------------------------------------------------------------------------

    def test_versions(self):
        img = self.path("img")
        mk(self.src, img)
        self.assertEqual(header_version(img), 0)
        mk("--min-version=1", self.src, img)            # max defaults to 0, raised to 1
        self.assertEqual(header_version(img), 1)
        mk("--max-version=1", self.src, img)            # min defaults to 0; no whiteout
        self.assertEqual(header_version(img), 0)
        for args, msg in ((["--min-version=2"], b"Invalid argument"),
                          (["--max-version=2"], b"Invalid argument"),
                          (["--min-version=x"], b"Invalid min version x"),
                          (["--max-version="], b"Invalid max version"),
                          (["--threads=0"], b"Invalid threads count 0"),
                          (["--threads=two"], b"Invalid threads count two"),
                          (["--bogus"], b"Usage:"),
                          (["-C"], b"Usage:")):
            before = os.stat(img).st_mtime_ns
            p = mk(*args, self.src, img, check=False)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn(msg, p.stderr, args)
            self.assertEqual(os.stat(img).st_mtime_ns, before, f"{args} touched the output")
        p = mk("--threads", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"option needs a value", p.stderr)
        for args, msg in (([], b"No source path specified"),
                          ([self.src], b"No destination path specified"),
                          ([self.src, img, "extra"], b"Too many arguments"),
                          (["", img], b"Empty source path specified")):
            p = mk(*args, check=False)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn(msg, p.stderr, args)
        p = mk("--help")
        self.assertIn(b"--digest-store=PATH", p.stdout)
        self.assertIn(b"--hardlinks", p.stdout)

    # --- scan options -----------------------------------------------------------------------

    def test_use_epoch(self):
        img = self.path("img")
        mk(self.src, img)
        top = erofs_inode(img, "/top")
        self.assertNotEqual(top["timestamp"], "1970-01-01 00:00:00.000000000")
        st = os.lstat(os.path.join(self.src, "top"))
        self.assertTrue(top["timestamp"].endswith("%09d" % (st.st_mtime_ns % 10**9)), top)
        mk("--use-epoch", self.src, img)
        for p in ("/", "/top", "/d0", "/d0/sub1/f1", "/link-rel"):
            self.assertEqual(erofs_inode(img, p)["timestamp"], "1970-01-01 00:00:00.000000000", p)
        fsck_ok(self, img)

    def test_xattr_options(self):
        f = os.path.join(self.src, "top")
        try:
            os.setxattr(f, "user.one", b"1")
        except OSError:
            self.skipTest("no user xattrs on this filesystem")
        trusted = True
        try:
            os.setxattr(f, "trusted.two", b"2")
        except OSError:
            trusted = False
        img = self.path("img")
        mk(self.src, img)
        full = erofs_inode(img, "/top")["xattr_size"]
        self.assertGreater(full, 0)
        mk("--user-xattrs", self.src, img)
        user = erofs_inode(img, "/top")["xattr_size"]
        self.assertGreater(user, 0)
        if trusted:
            self.assertLess(user, full)
        mk("--skip-xattrs", self.src, img)
        self.assertEqual(erofs_inode(img, "/top")["xattr_size"], 0)
        p = mk("--skip-xattrs", "--user-xattrs", self.src, img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"error accessing", p.stderr)

    def test_skip_devices(self):
        if os.geteuid() != 0:
            self.skipTest("mknod needs root")
        os.mknod(os.path.join(self.src, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(self.src, "wh"), 0o644 | stat.S_IFCHR, os.makedev(0, 0))
        img = self.path("img")
        mk(self.src, img)
        self.assertEqual(header_version(img), 1)  # auto-bump on the whiteout
        self.assertIsNotNone(erofs_inode(img, "/null"))
        mk("--skip-devices", self.src, img)
        self.assertIsNone(erofs_inode(img, "/null"))
        self.assertIsNone(erofs_inode(img, "/wh"))
        self.assertEqual(header_version(img), 0)
        mk("--max-version=0", self.src, img)  # whiteout present, bump not allowed
        self.assertEqual(header_version(img), 0)

    def test_hardlinks(self):
        a = os.path.join(self.src, "d1", "sub0", "f0")
        os.link(a, os.path.join(self.src, "hl-top"))
        os.link(a, os.path.join(self.src, "d5", "hl-deep"))
        img = self.path("img")
        mk(self.src, img)
        plain = [erofs_inode(img, p) for p in ("/d1/sub0/f0", "/hl-top", "/d5/hl-deep")]
        self.assertEqual(len({x["nid"] for x in plain}), 3)
        self.assertEqual({x["links"] for x in plain}, {1})
        mk("--hardlinks", self.src, img)
        linked = [erofs_inode(img, p) for p in ("/d1/sub0/f0", "/hl-top", "/d5/hl-deep")]
        self.assertEqual(len({x["nid"] for x in linked}), 1)
        self.assertEqual({x["links"] for x in linked}, {3})
        fsck_ok(self, img)

    # --- errors and atomic output ------------------------------------------------------------

    def assert_untouched(self, img, content):
        with open(img, "rb") as f:
            self.assertEqual(f.read(), content)
        leftovers = [n for n in os.listdir(os.path.dirname(img)) if n.startswith(".img")]
        self.assertEqual(leftovers, [])

    def test_missing_source_names_it_and_keeps_output(self):
        img = self.path("img")
        with open(img, "wb") as f:
            f.write(b"previous image")
        p = mk(self.path("nope"), img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(self.path("nope").encode(), p.stderr)
        self.assertIn(b"No such file or directory", p.stderr)
        self.assert_untouched(img, b"previous image")

    def test_unreadable_file_names_it_and_keeps_output(self):
        for dirpath, dirnames, filenames in os.walk(self.src):
            os.chmod(dirpath, 0o755)
            for n in filenames:
                if not os.path.islink(os.path.join(dirpath, n)):
                    os.chmod(os.path.join(dirpath, n), 0o644)
        victim = os.path.join(self.src, "d3", "sub1", "f4")
        os.chmod(victim, 0)
        img = self.path("img")
        with open(img, "wb") as f:
            f.write(b"previous image")
        argv = [MK, self.src, img]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                self.skipTest("needs setpriv to drop root")
            os.chmod(self.d, 0o777)
            os.chmod(img, 0o666)
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        p = subprocess.run(argv, capture_output=True)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(victim.encode(), p.stderr)
        self.assertIn(b"Permission denied", p.stderr)
        self.assert_untouched(img, b"previous image")

    def test_unwritable_output_fails_before_work(self):
        p = mk(self.src, self.path("no", "such", "dir", "img"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"failed to open output file", p.stderr)
        self.assertIn(self.path("no", "such", "dir", "img").encode(), p.stderr)

    def test_bad_digest_store(self):
        blocker = self.path("file-not-dir")
        with open(blocker, "wb") as f:
            f.write(b"x")
        img = self.path("img")
        p = mk("--digest-store=" + blocker, self.src, img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(blocker.encode(), p.stderr)
        self.assertFalse(os.path.exists(img))

    def test_store_failure_during_the_scan(self):
        # Objects are added while the tree is scanned: a store that fails half way (here a
        # fan-out "directory" that is a file) stops the build with the store's error, and no
        # image appears.
        store = self.path("store")
        os.makedirs(store)
        victim = fsverity_digest(os.path.join(self.src, "dup-a"))
        with open(os.path.join(store, victim[:2]), "wb") as f:
            f.write(b"in the way")
        img = self.path("img")
        p = mk("--digest-store=" + store, self.src, img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot fill store", p.stderr)
        self.assertIn(store.encode(), p.stderr)
        self.assertFalse(os.path.exists(img))
        # The same for a file of 1 MiB or more, which a separate thread copies.
        os.unlink(os.path.join(store, victim[:2]))
        big = os.path.join(self.src, "big")
        write(big, bytes(range(256)) * 6000, 0o644)
        victim = fsverity_digest(big)
        with open(os.path.join(store, victim[:2]), "wb") as f:
            f.write(b"in the way")
        p = mk("--digest-store=" + store, self.src, img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot fill store", p.stderr)
        self.assertFalse(os.path.exists(img))

    # --- the digest store ------------------------------------------------------------------

    def store_listing(self, store):
        objs, others = {}, []
        for dirpath, dirnames, filenames in os.walk(store):
            for n in filenames:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, store)
                if re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{62}", rel):
                    objs[rel] = p
                else:
                    others.append(rel)
        return objs, others

    def test_a_large_object_is_copied_without_mapping_all_of_it(self):
        """The store copies a large file from mappings of one piece at a time (CFS_READ_MODE=map
        forces the mapped copy on any CPU): one mapping of the whole file would count every page
        the copy touched in the process's RSS (830 MB for the largest file of /usr)."""
        src = self.path("big")
        os.mkdir(src)
        piece = random.Random(7).randbytes(1 << 20)
        with open(os.path.join(src, "f"), "wb") as f:
            for i in range(256):
                f.write(piece[i:] + piece[:i])
        store, img = self.path("store"), self.path("img")
        p = subprocess.Popen([MK, "--digest-store=" + store, src, img],
                             env=dict(os.environ, CFS_READ_MODE="map"))
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.assertEqual(p.returncode, 0)
        objs, others = self.store_listing(store)
        self.assertEqual(others, [])
        self.assertEqual(len(objs), 1)
        (rel, obj), = objs.items()
        self.assertEqual(fsverity_digest(obj), rel.replace("/", ""))
        self.assertEqual(fsverity_digest(obj), fsverity_digest(os.path.join(src, "f")))
        self.assertLess(usage.ru_maxrss * 1024, 128 << 20, "peak RSS of the store fill")

    def test_store_contents_named_by_fsverity_digest(self):
        store = self.path("store")
        img = self.path("img")
        mk("--digest-store=" + store, self.src, img)
        objs, others = self.store_listing(store)
        self.assertEqual(others, [], "stray files (temp files?) in the store")
        external = {}
        for rel, data in self.files.items():
            if len(data) > 64:
                external.setdefault(data, rel)
        self.assertEqual(len(objs), len(external))
        contents = set(external)
        for rel, p in objs.items():
            self.assertEqual(fsverity_digest(p), rel.replace("/", ""))
            st = os.stat(p)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o644)
            with open(p, "rb") as f:
                self.assertIn(f.read(), contents)
        for d in os.listdir(store):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(store, d)).st_mode), 0o755)

        # A second build never rewrites a good object (same inodes); a squatter of the wrong
        # size is replaced by a rename (a new inode holding the content).
        victim = sorted(objs)[0]
        os.unlink(objs[victim])
        with open(objs[victim], "wb") as f:
            f.write(b"not the content")
        before = {rel: os.stat(p).st_ino for rel, p in objs.items()}
        p = t.run([t.tool("cfs"), "create", "--json", "--digest-store", store, self.src, img])
        rep = json.loads(p.stdout)
        self.assertEqual(rep["objects_added"], 0)
        self.assertEqual(rep["objects_replaced"], 1)
        self.assertEqual(rep["objects_existed"], len(objs) - 1)
        after_objs, others = self.store_listing(store)
        self.assertEqual(others, [])
        after = {rel: os.stat(p).st_ino for rel, p in after_objs.items()}
        self.assertNotEqual(after.pop(victim), before.pop(victim))
        self.assertEqual(after, before)
        self.assertEqual(fsverity_digest(objs[victim]), victim.replace("/", ""))

    def test_new_objects_are_not_looked_up_first(self):
        # Filling an empty store needs no failed existence check per object: every fan-out
        # directory is new, so no name in it can exist (a concurrent writer would make linkat
        # fail with EEXIST, handled as "already there"). strace, not cfs, tells which calls
        # were made.
        if not shutil.which("strace"):
            self.skipTest("needs strace")
        store = self.path("store")
        img = self.path("img")
        log = self.path("strace.log")
        # -ff: one file per thread, so no call is split by another thread's.
        t.run(["strace", "-ff", "-qq", "-o", log, "-e",
               "trace=newfstatat,statx,faccessat,faccessat2,openat,linkat", MK,
               "--digest-store=" + store, self.src, img])
        objs, _ = self.store_listing(store)
        self.assertGreater(len(objs), 1)
        names = {rel.split("/")[1] for rel in objs}
        looked_up, linked = [], set()
        lines = []
        for n in os.listdir(self.d):
            if n.startswith("strace.log."):
                with open(os.path.join(self.d, n)) as f:
                    lines += f.readlines()
        for line in lines:
            m = re.search(r'(\w+)\((.*)\) += ', line)
            if not m:
                continue
            call, args = m.groups()
            quoted = re.findall(r'"([^"]*)"', args)
            hit = [q for q in quoted if q.split("/")[-1] in names]
            if not hit:
                continue
            if call == "linkat":
                linked.add(hit[-1].split("/")[-1])
            elif "= -1 ENOENT" in line:
                looked_up.append(line.strip())
        # (A file whose content an earlier file already added is looked up, and found.)
        self.assertEqual(looked_up, [])
        self.assertEqual(linked, names)  # the trace saw every object being named
        fsck_ok(self, img)

    def test_rebuild_stops_measuring_where_the_filesystem_has_no_fs_verity(self):
        # A rebuild into a filled store checks every object it would add. Once the kernel said
        # the filesystem has no fs-verity (ENOTTY or EOPNOTSUPP: no file there has a
        # measurement), the existing objects are not opened and measured any more. strace,
        # not cfs, counts the FS_IOC_MEASURE_VERITY calls and what they returned.
        if not shutil.which("strace"):
            self.skipTest("needs strace")
        store = self.path("store")
        mk("--digest-store=" + store, self.src, self.path("img1"))
        objs, _ = self.store_listing(store)
        self.assertGreater(len(objs), 8)
        log = self.path("measure.log")
        # -ff: one file per thread, so no call is split by another thread's.
        t.run(["strace", "-ff", "-qq", "-o", log, "-e", "trace=ioctl", MK,
               "--digest-store=" + store, self.src, self.path("img2")])
        calls = []
        for n in os.listdir(self.d):
            if n.startswith("measure.log."):
                with open(os.path.join(self.d, n)) as f:
                    calls += [line for line in f if "FS_IOC_MEASURE_VERITY" in line]
        self.assertTrue(calls, "the first existing object is measured")
        if any("ENOTTY" not in c and "EOPNOTSUPP" not in c for c in calls):
            self.skipTest("this filesystem has fs-verity")
        # At most one per worker thread that raced to the first answer.
        self.assertLessEqual(len(calls), os.cpu_count() + 1, calls)
        with open(self.path("img1"), "rb") as a, open(self.path("img2"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_store_ignored_with_from_file(self):
        dump = b"/ 4096 40755 2 0 0 0 0.0 - - -\n/f 100 100644 1 0 0 0 0.0 ab/" + \
            b"c" * 62 + b" - -\n"
        img = self.path("img")
        p = mk("--from-file", "--digest-store=" + self.path("store"), "-", img, check=False,
               input=dump)
        if b"not implemented" in p.stderr:
            self.skipTest("dump parser not landed")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(self.path("store")))
        fsck_ok(self, img)

    def test_from_file_strict_and_errors(self):
        good = b"/ 4096 40755 2 0 0 0 0.0 - - -\n/f 5 100644 1 0 0 0 0.0 - hello -"
        img = self.path("img")
        p = mk("--from-file", "-", img, input=good, check=False)
        if b"not implemented" in p.stderr:
            self.skipTest("dump parser not landed")
        self.assertEqual(p.returncode, 0, p.stderr)
        # Strict mode (CFS_PARSE_STRICT set) requires the final newline.
        with open(img, "rb") as f:
            previous = f.read()
        p = mk("--from-file", "-", img, input=good, check=False, env={"CFS_PARSE_STRICT": "1"})
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"newline", p.stderr.lower())
        self.assert_untouched(img, previous)
        dump = self.path("bad.dump")
        with open(dump, "wb") as f:
            f.write(b"/ 4096 40755 2 0 0 0 0.0 - - -\n/x 0 999999 1 0 0 0 0.0 - - -\n")
        p = mk("--from-file", dump, img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(dump.encode(), p.stderr)
        self.assert_untouched(img, previous)


class HealsDamagedObjects(unittest.TestCase):
    """Re-running a build heals an object left damaged under its final name (issue 16 item 4):
    a wrong size or a non-file is always replaced, wrong content of the right size with
    --verify-existing (the kernel's measurement would catch it where objects have fs-verity;
    tmpfs here has none). Replacement is a rename (a new inode), never a rewrite in place.
    Expected object names come from `fsverity digest`."""

    def test_rerun_replaces_bad_objects(self):
        with t.tempdir() as d:
            src, store = os.path.join(d, "src"), os.path.join(d, "store")
            data = {"short": os.urandom(10000), "same-size": os.urandom(5000),
                    "fifo": os.urandom(7000)}
            for name, content in data.items():
                write(os.path.join(src, name), content)
            obj = {n: os.path.join(store, dg[:2], dg[2:]) for n, dg in
                   ((n, fsverity_digest(os.path.join(src, n))) for n in data)}
            img = os.path.join(d, "img.cfs")
            mk("--digest-store=" + store, src, img)
            with open(obj["short"], "r+b") as f:
                f.truncate(4096)  # what a crash can leave under the final name
            with open(obj["same-size"], "r+b") as f:
                f.write(b"\0" * 100)
            os.unlink(obj["fifo"])
            os.mkfifo(obj["fifo"])
            ino_same = os.stat(obj["same-size"]).st_ino
            mk("--digest-store=" + store, src, img)
            self.assertEqual(fsverity_digest(obj["short"]),
                             os.path.relpath(obj["short"], store).replace("/", ""))
            self.assertTrue(stat.S_ISREG(os.lstat(obj["fifo"]).st_mode))
            with open(obj["fifo"], "rb") as f:
                self.assertEqual(f.read(), data["fifo"])
            # Right size, wrong bytes, no fs-verity: only a full digest can tell.
            self.assertEqual(os.stat(obj["same-size"]).st_ino, ino_same)
            mk("--digest-store=" + store, "--verify-existing", src, img)
            self.assertNotEqual(os.stat(obj["same-size"]).st_ino, ino_same)
            with open(obj["same-size"], "rb") as f:
                self.assertEqual(f.read(), data["same-size"])
            p = t.run([t.tool("cfs"), "fsck", "--store", store, img], check=False)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual([n for _, _, files in os.walk(store) for n in files
                              if n.startswith(".tmp")], [])


def setUpModule():
    global MK
    for tool in ("fsverity", "dump.erofs", "fsck.erofs"):
        if not shutil.which(tool):
            t.skip(f"{tool} not installed")
    MK = t.tool("mkcomposefs")
    with t.tempdir() as d:
        os.makedirs(os.path.join(d, "s"))
        p = subprocess.run([MK, "--print-digest-only", os.path.join(d, "s")],
                           capture_output=True)
        if b"not implemented" in p.stderr:
            t.skip("image writer not landed yet")


if __name__ == "__main__":
    t.main()
