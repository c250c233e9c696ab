#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;fuse;root
# ctest-timeout: 600
# ctest-cost: 18
# ctest-lock: page_cache
"""The FUSE mount against the kernel mount of the same image.

Differential: for every upstream reference image and for generated trees, `cfs fuse-mount` and
the kernel's `mount -t erofs` + overlay (metacopy=on,redirect_dir=on,lowerdir=E::STORE) must
show identical listings: types, modes, owners, sizes, blocks, mtimes, inode numbers, symlink
targets, xattrs, contents (or the errno reading them gives).

Tamper suite: byte flips and truncations of objects before and after open give EIO under
verity=on/require while untouched files still read correctly, except that an object put into
the page cache at its first open (prefill_max=) keeps reading as the content it was verified
as; require refuses files without a digest. Object names come from the image (its redirects), contents from the source tree."""
import errno
import hashlib
import os
import random
import shutil
import stat
import subprocess
import time

import cfs_testlib as t
from cfs_testlib import is_mounted

REF = os.path.join(t.ASSETS_DIR, "reference-outputs")


def require_fuse():
    t.require_root()
    if not os.path.exists("/dev/fuse"):
        t.skip("/dev/fuse missing")
    if shutil.which("fusermount3") is None:
        t.skip("fusermount3 (fuse3) not installed")


def fuse_mount(image, store, mnt, verity="on", extra=(), options="", env=None):
    opts = f"basedir={store},verity={verity}" + (f",{options}" if options else "")
    t.run([t.tool("cfs"), "fuse-mount", image, mnt, "-o", opts, *extra], env=env)
    if not is_mounted(mnt):
        raise AssertionError(f"{mnt} not mounted after fuse-mount returned")


def fuse_umount(mnt):
    t.run(["fusermount3", "-u", mnt])
    for _ in range(400):
        if not is_mounted(mnt):
            return
        time.sleep(0.05)
    raise AssertionError(f"{mnt} still mounted")


class KernelMount:
    def __init__(self, image, store, root):
        self.erofs = os.path.join(root, "k-erofs")
        self.mnt = os.path.join(root, "k-mnt")
        os.makedirs(self.erofs)
        os.makedirs(self.mnt)
        t.run(["mount", "-t", "erofs", "-o", "ro,loop", image, self.erofs])
        try:
            t.run(["mount", "-t", "overlay", "overlay", "-o",
                   f"ro,metacopy=on,redirect_dir=on,lowerdir={self.erofs}::{store}", self.mnt])
        except AssertionError:
            t.run(["umount", self.erofs])
            raise

    def close(self):
        t.run(["umount", self.mnt], check=False)
        t.run(["umount", self.erofs], check=False)


def xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return ("listxattr", e.errno)
    for n in sorted(names):
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = ("error", e.errno)
    return out


def snapshot(root, contents=True):
    """{relative path: metadata tuple}, then contents in a second pass (reading a metacopy
    file makes the kernel look its data up, which changes what stat reports for st_blocks)."""
    meta = {}
    files = []

    def walk(rel):
        path = os.path.join(root, rel) if rel else root
        try:
            st = os.lstat(path)
        except OSError as e:
            meta[rel] = ("lstat", e.errno)
            return
        rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
               st.st_nlink, st.st_ino, st.st_mtime_ns, st.st_blocks]
        if not stat.S_ISDIR(st.st_mode):
            rec.append(st.st_size)
        else:
            rec.append(st.st_size)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            rec.append((os.major(st.st_rdev), os.minor(st.st_rdev)))
        if stat.S_ISLNK(st.st_mode):
            rec.append(os.readlink(path))
        rec.append(xattrs(path))
        meta[rel] = tuple(rec)
        if stat.S_ISREG(st.st_mode):
            files.append(rel)
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(path))
            except OSError as e:
                meta[rel + "/*"] = ("listdir", e.errno)
                return
            for n in names:
                walk(os.path.join(rel, n) if rel else n)

    walk("")
    data = {}
    if contents:
        for rel in files:
            try:
                with open(os.path.join(root, rel), "rb") as f:
                    data[rel] = hashlib.sha256(f.read()).hexdigest()
            except OSError as e:
                data[rel] = ("read", errno.errorcode.get(e.errno, e.errno))
    return meta, data


def diff(a, b, limit=10):
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"{k!r}: fuse={a.get(k)!r} kernel={b.get(k)!r}")
            if len(out) >= limit:
                break
    return "\n".join(out)


def mkcomposefs_or_skip(testcase, src, image, store):
    p = t.run([t.tool("mkcomposefs"), f"--digest-store={store}", src, image], check=False)
    if p.returncode != 0:
        testcase.skipTest("mkcomposefs cannot build images yet: " +
                          p.stderr.decode(errors="replace").strip())


def make_tree(root, seed=1):
    """A tree with every file type, odd names, xattrs, hardlinks and a whiteout."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "d1/d2/d3"))
    os.makedirs(os.path.join(root, "empty-dir"))
    sizes = [0, 1, 63, 64, 65, 4095, 4096, 4097, 100000, (1 << 20) + 17, 3 * (1 << 20)]
    for i, n in enumerate(sizes):
        with open(os.path.join(root, f"f{n}"), "wb") as f:
            f.write(rng.randbytes(n))
    with open(os.path.join(root, "d1/d2/d3/deep"), "wb") as f:
        f.write(rng.randbytes(30000))
    with open(os.path.join(root, "d1/dup-a"), "wb") as f:
        f.write(b"x" * 5000)
    with open(os.path.join(root, "d1/dup-b"), "wb") as f:
        f.write(b"x" * 5000)
    for name in ["sp ace", "new\nline", "uni\u00e9", "eq=ual", "-dash", "x" * 255]:
        with open(os.path.join(root, "d1", name), "wb") as f:
            f.write(name.encode() * 30)
    os.symlink("f4096", os.path.join(root, "link"))
    os.symlink("/" + "t" * 1000, os.path.join(root, "longlink"))
    os.symlink("dangling/target", os.path.join(root, "d1/dangling"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "chr"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(os.path.join(root, "blk"), stat.S_IFBLK | 0o640, os.makedev(8, 1))
    os.mknod(os.path.join(root, "d1/whiteout"), stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.link(os.path.join(root, "f100000"), os.path.join(root, "d1/hardlink"))
    p = os.path.join(root, "f4097")
    os.setxattr(p, "user.a", b"1")
    os.setxattr(p, "user.empty", b"")
    os.setxattr(p, "trusted.overlay.foo", b"escaped")
    os.setxattr(p, "trusted.plain", b"t" * 300)
    os.setxattr(os.path.join(root, "d1"), "user.dir", b"yes")
    os.chown(os.path.join(root, "f65"), 1234, 5678)
    os.chmod(os.path.join(root, "f64"), 0o4755)
    os.chmod(os.path.join(root, "d1/d2"), 0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), ns=(0, rng.randrange(1, 2**40) * 1000 + 7),
                     follow_symlinks=False)


def plant_first_object(erofs_root, store):
    """Both mounts refuse a basedir holding none of the image's first objects (depth-first,
    name order). The reference images come without theirs: plant the first one, empty, so the
    rest still shows how each mount treats a missing object."""
    for dirpath, dirnames, filenames in os.walk(erofs_root):
        dirnames.sort()
        for n in sorted(filenames):
            try:
                r = os.getxattr(os.path.join(dirpath, n), "trusted.overlay.redirect",
                                follow_symlinks=False)
            except OSError:
                continue
            obj = os.path.join(store, os.fsdecode(r).lstrip("/"))
            if not os.path.exists(obj):
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                open(obj, "wb").close()
            return


class FuseMount(t.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_fuse()
        t.tool("cfs")

    def compare(self, image, store, verity="off"):
        with t.tempdir() as d:
            k = KernelMount(image, store, d)
            try:
                plant_first_object(k.erofs, store)
                kmeta, kdata = snapshot(k.mnt)
            finally:
                k.close()
            mnt = os.path.join(d, "f")
            os.makedirs(mnt)
            fuse_mount(image, store, mnt, verity=verity)
            try:
                fmeta, fdata = snapshot(mnt)
            finally:
                fuse_umount(mnt)
        self.assertGreater(len(kmeta), 1)
        self.assertEqual(fmeta, kmeta, diff(fmeta, kmeta))
        self.assertEqual(fdata, kdata, diff(fdata, kdata))
        return fmeta, fdata

    def test_reference_images(self):
        t.require_assets()
        images = sorted(f for f in os.listdir(REF) if f.endswith(".cfs"))
        self.assertTrue(images)
        with t.tempdir() as store:
            for img in images:
                with self.subTest(image=img):
                    self.compare(os.path.join(REF, img), store)

    def test_generated_tree(self):
        with t.tempdir() as d:
            src, store, image = (os.path.join(d, x) for x in ("src", "store", "img.cfs"))
            os.makedirs(src)
            make_tree(src)
            mkcomposefs_or_skip(self, src, image, store)
            _, data = self.compare(image, store, verity="on")
            with open(os.path.join(src, "f100000"), "rb") as f:
                self.assertEqual(data["f100000"], hashlib.sha256(f.read()).hexdigest())

    def test_unmount_on_sigterm(self):
        with t.tempdir() as d:
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            img = os.path.join(REF, "special_v1.cfs")
            if not os.path.exists(img):
                self.skipTest("reference images missing")
            proc = subprocess.Popen([t.tool("cfs"), "fuse-mount", "-f", img, mnt, "-o",
                                     f"basedir={d}"], stderr=subprocess.DEVNULL)
            try:
                for _ in range(400):
                    if is_mounted(mnt):
                        break
                    time.sleep(0.05)
                self.assertTrue(is_mounted(mnt))
                self.assertIn("inline", os.listdir(mnt))
                proc.terminate()
                self.assertEqual(proc.wait(timeout=10), 0)
                self.assertFalse(is_mounted(mnt))
            finally:
                if proc.poll() is None:
                    proc.kill()
                if is_mounted(mnt):
                    fuse_umount(mnt)

    def test_cfs_mount_fuse(self):
        img = os.path.join(REF, "special_v1.cfs")
        if not os.path.exists(img):
            self.skipTest("reference images missing")
        with t.tempdir() as d:
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            t.run([t.tool("cfs"), "mount", "--fuse", img, mnt, "-o", f"basedir={d},verity=require"])
            try:
                with open(os.path.join(mnt, "inline"), "rb") as f:
                    self.assertEqual(f.read(), b"FOOBAR\nINAFILE\n")
                line = next(x for x in t.mountinfo().splitlines()
                            if x.split()[4] == os.path.realpath(mnt))
                self.assertIn("fuse.composefs", line)
            finally:
                fuse_umount(mnt)

    def test_relative_tree_cache_is_the_callers(self):
        # The server runs in / (libfuse's daemonize): tree_cache= relative to the command's
        # directory is where the Merkle trees of objects of 1 MiB and more go (they went to a
        # directory of that name in /, and nowhere when there was none).
        with t.tempdir() as d:
            src = os.path.join(d, "src")
            os.makedirs(src)
            data = os.urandom(3 << 20)
            with open(os.path.join(src, "big"), "wb") as f:
                f.write(data)
            mkcomposefs_or_skip(self, src, os.path.join(d, "img.cfs"), os.path.join(d, "store"))
            mnt, trees = os.path.join(d, "m"), os.path.join(d, "trees")
            os.makedirs(mnt)
            os.makedirs(trees)
            t.run([t.tool("cfs"), "mount", "--fuse", "img.cfs", "m", "-o",
                   "basedir=store,tree_cache=trees"], cwd=d)
            try:
                with open(os.path.join(mnt, "big"), "rb") as f:
                    self.assertEqual(f.read(), data)
            finally:
                fuse_umount(mnt)
            self.assertEqual([n.endswith(".tree") for n in os.listdir(trees)], [True])

    def test_missing_dev_fuse(self):
        img = os.path.join(REF, "special_v1.cfs")
        if not os.path.exists(img) or shutil.which("unshare") is None:
            self.skipTest("reference images or unshare missing")
        with t.tempdir() as d:
            # A private mount namespace whose /dev has no fuse node.
            script = (f"mount -t tmpfs none /dev && exec {t.tool('cfs')} mount --fuse {img} {d} "
                      f"-o basedir={d}")
            p = t.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                      check=False)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"/dev/fuse", p.stderr)
            self.assertFalse(is_mounted(d))

    def test_sigterm_to_daemon_unmounts(self):
        img = os.path.join(REF, "special_v1.cfs")
        if not os.path.exists(img):
            self.skipTest("reference images missing")
        with t.tempdir() as d:
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            fuse_mount(img, d, mnt)
            pid = int(t.run(["pgrep", "-n", "-f", f"fuse-mount {img} {mnt}"]).stdout)
            os.kill(pid, 15)
            for _ in range(400):
                if not is_mounted(mnt):
                    break
                time.sleep(0.05)
            self.assertFalse(is_mounted(mnt))

    def test_daemon_reserves_its_descriptor_table(self):
        """The daemonized server grows its descriptor table before its threads start (a threaded
        process grows it only after an RCU grace period, every opening thread waiting): the
        kernel's FDSize of the serving process is 4096, or its soft RLIMIT_NOFILE if lower."""
        img = os.path.join(REF, "special_v1.cfs")
        if not os.path.exists(img):
            self.skipTest("reference images missing")
        with t.tempdir() as d:
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            fuse_mount(img, d, mnt)
            try:
                pid = int(t.run(["pgrep", "-n", "-f", f"fuse-mount {img} {mnt}"]).stdout)
                with open(f"/proc/{pid}/limits") as f:
                    soft = next(x.split()[3] for x in f if x.startswith("Max open files"))
                want = 4096 if soft == "unlimited" else min(4096, int(soft))
                with open(f"/proc/{pid}/status") as f:
                    size = next(int(x.split()[1]) for x in f if x.startswith("FDSize:"))
                self.assertGreaterEqual(size, want)
                # Nothing is left open at the top of the table.
                self.assertLess(max(int(x) for x in os.listdir(f"/proc/{pid}/fd")), 256)
            finally:
                fuse_umount(mnt)

    def test_unprivileged_callers_do_not_see_trusted_xattrs(self):
        img = os.path.join(REF, "special_v1.cfs")
        if not os.path.exists(img) or shutil.which("setpriv") is None:
            self.skipTest("reference images or setpriv missing")
        with t.tempdir() as d:
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            os.chmod(d, 0o755)
            fuse_mount(img, d, mnt)
            try:
                code = ("import os,sys; print(sorted(os.listxattr(sys.argv[1])))")
                out = t.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "python3", "-c", code, mnt]).stdout.decode()
                self.assertIn("user.foo2", out)
                self.assertNotIn("trusted.", out)
            finally:
                fuse_umount(mnt)

    def test_usage_errors(self):
        p = t.run([t.tool("cfs"), "fuse-mount", "img"], check=False)
        self.assertEqual(p.returncode, 2)
        p = t.run([t.tool("cfs"), "fuse-mount", "img", "/mnt", "-o", "basedir=/x,verity=maybe"],
                  check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"verity", p.stderr)
        p = t.run([t.tool("composefs-fuse"), "/nonexistent.cfs", "/mnt", "-o", "basedir=/"],
                  check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"/nonexistent.cfs", p.stderr)
        # One option model with the kernel mount: its kernel-only options are refused by name.
        p = t.run([t.tool("cfs"), "fuse-mount", "img", "/mnt", "-o", "basedir=/x,metacopy=on"],
                  check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"metacopy= is not supported by the FUSE mount", p.stderr)

    def test_store_check_and_problem_log(self):
        """A basedir holding none of the image's objects is refused at mount time; a file whose
        object is missing or tampered is logged on stderr (path, object, reason) while the
        server runs in the foreground."""
        with t.tempdir() as d:
            src, store, image = (os.path.join(d, x) for x in ("src", "store", "img.cfs"))
            os.makedirs(src)
            for name in ("a", "b"):
                with open(os.path.join(src, name), "wb") as f:
                    f.write(name.encode() * 5000)
            mkcomposefs_or_skip(self, src, image, store)
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            empty = os.path.join(d, "empty")
            os.makedirs(empty)
            p = t.run([t.tool("cfs"), "fuse-mount", image, mnt, "-o", f"basedir={empty}"],
                      check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn(f"basedir={empty} holds none of the image's".encode(), p.stderr)
            self.assertFalse(is_mounted(mnt))

            objs = {}
            for dirpath, _, files in os.walk(store):
                for n in files:
                    with open(os.path.join(dirpath, n), "rb") as f:
                        objs[f.read(1)] = os.path.join(dirpath, n)
            os.unlink(objs[b"a"])
            with open(objs[b"b"], "r+b") as f:
                f.write(b"X")
            err = os.path.join(d, "stderr")
            with open(err, "wb") as ef:
                server = subprocess.Popen([t.tool("cfs"), "fuse-mount", "-f", image, mnt, "-o",
                                           f"basedir={store},verity=on"], stderr=ef)
            try:
                for _ in range(200):
                    if is_mounted(mnt):
                        break
                    time.sleep(0.05)
                self.assertTrue(is_mounted(mnt))
                for name, code in (("a", errno.ENOENT), ("b", errno.EIO)):
                    with self.assertRaises(OSError) as cm:
                        with open(os.path.join(mnt, name), "rb") as f:
                            f.read()
                    self.assertEqual(cm.exception.errno, code, name)
            finally:
                if is_mounted(mnt):
                    fuse_umount(mnt)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            with open(err, "rb") as f:
                log = f.read().decode()
            rel_a = os.path.relpath(objs[b"a"], store)
            rel_b = os.path.relpath(objs[b"b"], store)
            self.assertRegex(log, f"/a: .*{rel_a}")
            self.assertRegex(log, f"/b: .*fs-verity.*{rel_b}|/b: .*{rel_b}.*fs-verity")


def redirects(image_mnt_erofs):
    """{path: object path} from the bare EROFS mount's trusted.overlay.redirect xattrs."""
    out = {}
    for dirpath, _, filenames in os.walk(image_mnt_erofs):
        for n in filenames:
            p = os.path.join(dirpath, n)
            try:
                r = os.getxattr(p, "trusted.overlay.redirect", follow_symlinks=False)
            except OSError:
                continue
            out[os.path.relpath(p, image_mnt_erofs)] = r.decode().lstrip("/")
    return out


class Tamper(t.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_fuse()

    def setUp(self):
        self.dir = t.tempfile.mkdtemp(prefix="cfs-tamper-")
        self.src, self.store, self.image = (os.path.join(self.dir, x)
                                            for x in ("src", "store", "img.cfs"))
        self.mnt = os.path.join(self.dir, "mnt")
        os.makedirs(self.mnt)
        os.makedirs(self.src)
        rng = random.Random(7)
        self.content = {}
        for i in range(8):
            data = rng.randbytes(rng.choice([5000, 70000, 300000, 1 << 20]) + rng.randrange(4096))
            name = f"file{i}"
            with open(os.path.join(self.src, name), "wb") as f:
                f.write(data)
            self.content[name] = data
        mkcomposefs_or_skip(self, self.src, self.image, self.store)
        e = os.path.join(self.dir, "e")
        os.makedirs(e)
        t.run(["mount", "-t", "erofs", "-o", "ro,loop", self.image, e])
        try:
            self.objects = {k: os.path.join(self.store, v) for k, v in redirects(e).items()}
        finally:
            t.run(["umount", e])
        self.assertEqual(set(self.objects), set(self.content))

    def tearDown(self):
        if is_mounted(self.mnt):
            fuse_umount(self.mnt)
        shutil.rmtree(self.dir, ignore_errors=True)

    def read(self, name):
        with open(os.path.join(self.mnt, name), "rb") as f:
            return f.read()

    def assert_eio(self, fn):
        with self.assertRaises(OSError) as cm:
            fn()
        self.assertEqual(cm.exception.errno, errno.EIO)

    def flip(self, path, off):
        with open(path, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x40]))

    def test_flips_and_truncations(self):
        rng = random.Random(11)
        names = sorted(self.content)
        victims = names[:4]
        # prefill_max=0: every read is a READ request, verified by the server. Default: the
        # first open puts each (small) object into the page cache from the copy it verified, so
        # damage done after that open is never seen: the reads give the verified content.
        for mode, prefill in (("on", "prefill_max=0"), ("require", "prefill_max=0"),
                              ("on", ""), ("require", "")):
            with self.subTest(verity=mode, prefill=prefill or "default"):
                # Fresh copies of the objects for each round.
                for n in victims:
                    with open(self.objects[n], "wb") as f:
                        f.write(self.content[n])
                fuse_mount(self.image, self.store, self.mnt, verity=mode, options=prefill)
                try:
                    # Before open: a flip (EIO at open) and a truncation.
                    self.flip(self.objects[victims[0]],
                              rng.randrange(len(self.content[victims[0]])))
                    os.truncate(self.objects[victims[1]], len(self.content[victims[1]]) // 2)
                    self.assert_eio(lambda: self.read(victims[0]))
                    self.assert_eio(lambda: self.read(victims[1]))
                    # After open: the read touching the damage fails.
                    f2 = open(os.path.join(self.mnt, victims[2]), "rb")
                    f3 = open(os.path.join(self.mnt, victims[3]), "rb")
                    try:
                        off = rng.randrange(len(self.content[victims[2]]))
                        self.flip(self.objects[victims[2]], off)
                        os.truncate(self.objects[victims[3]], len(self.content[victims[3]]) - 1)
                        if prefill:
                            self.assert_eio(f2.read)
                            self.assert_eio(f3.read)
                        else:
                            self.assertEqual(f2.read(), self.content[victims[2]])
                            self.assertEqual(f3.read(), self.content[victims[3]])
                    finally:
                        f2.close()
                        f3.close()
                    for n in names[4:]:
                        self.assertEqual(self.read(n), self.content[n], n)
                finally:
                    fuse_umount(self.mnt)

    def test_prefill_serves_reads_from_the_page_cache(self):
        """CFS_FUSE_STATS counts what the server did: by default every object (all are under
        prefill_max=) goes into the page cache at its first open, whole, and no READ request
        follows; with prefill_max=0 every byte comes through READ requests. The sizes are the
        source files' (the oracle), the contents are compared with them."""
        import json
        stats = os.path.join(self.dir, "stats.json")
        total = sum(len(c) for c in self.content.values())
        for prefill in ("", "prefill_max=0"):
            with self.subTest(prefill=prefill or "default"):
                if os.path.exists(stats):
                    os.unlink(stats)
                fuse_mount(self.image, self.store, self.mnt, options=prefill,
                           env={"CFS_FUSE_STATS": stats})
                try:
                    for _ in range(2):  # the second open finds the pages cached
                        for name, data in self.content.items():
                            self.assertEqual(self.read(name), data, name)
                finally:
                    fuse_umount(self.mnt)
                for _ in range(200):  # written by the server as it exits
                    if os.path.exists(stats):
                        break
                    time.sleep(0.05)
                with open(stats) as f:
                    st = json.load(f)
                self.assertEqual(st["open"]["count"], 2 * len(self.content))
                if prefill:
                    self.assertEqual(st["stored_files"], 0)
                    self.assertEqual(st["stored_bytes"], 0)
                    self.assertGreaterEqual(st["read_bytes"], total)
                else:
                    self.assertEqual(st["stored_files"], len(self.content))
                    self.assertEqual(st["stored_bytes"], total)
                    self.assertEqual(st["read"]["count"], 0)
                    self.assertEqual(st["read_bytes"], 0)

    def test_concurrent_first_opens(self):
        """Many readers opening the same files at once on a fresh mount with two worker threads:
        each file is stored once, by its first open; the others wait for it, so none of them
        needs a READ (and none can queue one the store would wait on), and everyone reads the
        source content."""
        import json
        from concurrent.futures import ThreadPoolExecutor
        stats = os.path.join(self.dir, "stats.json")
        fuse_mount(self.image, self.store, self.mnt, options="threads=2",
                   env={"CFS_FUSE_STATS": stats})
        names = sorted(self.content)
        try:
            def reader(seed):
                order = names[:]
                random.Random(seed).shuffle(order)
                return [(n, self.read(n)) for n in order]
            with ThreadPoolExecutor(max_workers=16) as ex:
                for result in ex.map(reader, range(32)):
                    for name, data in result:
                        self.assertEqual(data, self.content[name], name)
        finally:
            fuse_umount(self.mnt)
        for _ in range(200):
            if os.path.exists(stats):
                break
            time.sleep(0.05)
        with open(stats) as f:
            st = json.load(f)
        self.assertEqual(st["open"]["count"], 32 * len(names))
        self.assertEqual(st["stored_files"], len(names))
        self.assertEqual(st["read"]["count"], 0)

    def test_off_serves_tampered_data(self):
        name = sorted(self.content)[0]
        self.flip(self.objects[name], 0)
        fuse_mount(self.image, self.store, self.mnt, verity="off")
        data = self.read(name)
        self.assertEqual(len(data), len(self.content[name]))
        self.assertNotEqual(data, self.content[name])


class Require(t.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_fuse()
        t.require_assets()

    def test_require_refuses_files_without_digest(self):
        img = os.path.join(REF, "cs9-x86_64-minimal.cfs")
        with t.tempdir() as d:
            e = os.path.join(d, "e")
            os.makedirs(e)
            t.run(["mount", "-t", "erofs", "-o", "ro,loop", img, e])
            try:
                r = os.getxattr(os.path.join(e, "usr/bin/bash"), "trusted.overlay.redirect")
            finally:
                t.run(["umount", e])
            store = os.path.join(d, "store")
            obj = os.path.join(store, r.decode().lstrip("/"))
            os.makedirs(os.path.dirname(obj))
            with open(obj, "wb") as f:
                f.write(b"#!/bin/sh\n")
            mnt = os.path.join(d, "m")
            os.makedirs(mnt)
            for mode, want in (("off", b"#!/bin/sh\n"), ("on", b"#!/bin/sh\n"), ("require", None)):
                fuse_mount(img, store, mnt, verity=mode)
                try:
                    p = os.path.join(mnt, "usr/bin/bash")
                    self.assertEqual(os.stat(p).st_size, 1390168)
                    if want is None:
                        with self.assertRaises(OSError) as cm:
                            open(p, "rb").close()
                        self.assertEqual(cm.exception.errno, errno.EIO)
                    else:
                        with open(p, "rb") as f:
                            self.assertEqual(f.read(), want)
                finally:
                    fuse_umount(mnt)


if __name__ == "__main__":
    t.main()
