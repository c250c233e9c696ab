#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root
# ctest-timeout: 300
# ctest-cost: 10
"""Merging OCI layers into one tree (oci::Merger), against `umoci unpack` of the same image
modulo the documented composefs-rs rules (root metadata from /usr, /run emptied, the xattr
allowlist), and against the rules of ../shared/reference/oci-repository.md §2.4-2.5 written out
by hand for layers made with Python's tarfile; hostile layers get errors naming the layer, the
entry and the reason."""
import io
import os
import stat
import subprocess
import tarfile

import cfs_testlib as t
import oci_testlib as o

CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep, v2


def merged(streams, *opts, check=True):
    """{path: row} of the merged tree and {path: owner path} of extra names."""
    p = o.driver("apply", *opts, *streams, check=check)
    if not check and p.returncode != 0:
        return None, None, p.stderr.decode()
    rows, links = {}, {}
    import json
    for line in p.stdout.decode().splitlines():
        r = json.loads(line)
        path = bytes.fromhex(r.pop("path_hex")).decode("utf-8", "surrogateescape")
        if "hardlink_hex" in r:
            links[path] = bytes.fromhex(r["hardlink_hex"]).decode("utf-8", "surrogateescape")
            continue
        r["xattrs"] = {k: bytes.fromhex(v) for k, v in r["xattrs"].items()}
        if "content_hex" in r:
            r["content"] = bytes.fromhex(r.pop("content_hex"))
        if "payload_hex" in r:
            r["payload"] = bytes.fromhex(r.pop("payload_hex")).decode("utf-8", "surrogateescape")
        rows[path] = r
    return rows, links, p.stderr.decode()


def kind(mode):
    return {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink",
            stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}[stat.S_IFMT(mode)]


def snapshot(root):
    """{path: (lstat, xattrs, symlink target)} of an unpacked rootfs, "/" for the root."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [""] + dirs + files if dirpath == root else dirs + files:
            full = os.path.join(dirpath, name) if name else dirpath
            rel = "/" + os.path.relpath(full, root) if full != root else "/"
            st = os.lstat(full)
            xs = {k: os.getxattr(full, k, follow_symlinks=False)
                  for k in os.listxattr(full, follow_symlinks=False)}
            target = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
            out[rel] = (st, xs, target)
    return out


class Umoci(t.unittest.TestCase):
    """A four-layer image built with umoci: merged tree vs `umoci unpack`."""

    def setUp(self):
        t.require_root()
        if not o.have("umoci", "setcap", "setfattr", "fsverity"):
            self.skipTest("needs umoci, setcap (libcap2-bin), setfattr and fsverity")
        self.d = self.enterContext(t.tempdir("cfs-oci-merge-"))

    def p(self, *parts):
        return os.path.join(self.d, *parts)

    def write(self, path, data, mode=0o644, ns=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        if ns:
            os.utime(path, ns=(ns, ns))

    def build(self):
        img = o.UmociImage(self.d)
        r1 = self.p("r1")
        self.write(self.p("r1/usr/bin/tool"), os.urandom(200000), 0o755)
        os.link(self.p("r1/usr/bin/tool"), self.p("r1/usr/bin/tool2"))
        self.write(self.p("r1/usr/bin/ping"), os.urandom(300), 0o4755)
        t.run(["setcap", "cap_net_raw+ep", self.p("r1/usr/bin/ping")])
        self.write(self.p("r1/usr/share/doc/small"), b"tiny", ns=1600000000123456789)
        t.run(["setfattr", "-n", "user.note", "-v", "kept?", self.p("r1/usr/share/doc/small")])
        self.write(self.p("r1/usr/share/doc/sixtyfour"), b"6" * 64)
        self.write(self.p("r1/usr/share/doc/sixtyfive"), b"5" * 65, 0o600)
        self.write(self.p("r1/usr/share/" + "n" * 200), b"long name")
        os.mkfifo(self.p("r1/usr/share/fifo"))
        os.symlink("bin", self.p("r1/usr/sbin"))
        self.write(self.p("r1/etc/hostname"), b"box\n")
        self.write(self.p("r1/etc/gone"), b"to be whited out")
        self.write(self.p("r1/etc/dir/a"), b"a" * 100)
        self.write(self.p("r1/etc/dir/b"), b"b")
        self.write(self.p("r1/run/lock/x"), b"x")
        self.write(self.p("r1/var/log/old"), b"old log")
        os.makedirs(self.p("r1/dev"))
        os.mknod(self.p("r1/dev/null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.utime(self.p("r1/usr"), ns=(1500000000000000001, 1500000000000000001))
        img.insert(r1)

        r2 = self.p("r2")
        self.write(self.p("r2/usr/bin/tool"), os.urandom(150000), 0o755)  # tool2 keeps the old
        os.makedirs(self.p("r2/etc"))
        os.chmod(self.p("r2/etc"), 0o750)
        self.write(self.p("r2/etc/new"), b"new file in a merged directory")
        img.insert(r2)

        # Layer 3 by hand: a hardlink to a file of layer 1, whiteouts, an opaque directory,
        # pax nanoseconds and xattrs.
        members = [
            o.info("usr/bin/tool3", tarfile.LNKTYPE, link="usr/bin/tool2"),
            o.info("etc/.wh.gone"),
            o.info("etc/dir/", tarfile.DIRTYPE, mode=0o700),
            o.info("etc/dir/.wh..wh..opq"),
            o.info("etc/dir/c", data=b"c" * 70, pax={"mtime": "1700000000.5"}),
            o.info("usr/share/doc/capped", data=b"x" * 80, pax={
                "SCHILY.xattr.security.capability": CAP.decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.user.other": "u",
                "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0"}),
        ]
        with open(self.p("layer3.tar"), "wb") as f:
            f.write(o.tar_bytes(members))
        t.run(["umoci", "raw", "add-layer", "--image", f"{img.layout}:{img.tag}",
               self.p("layer3.tar")])
        img.whiteout("/var/log/old")
        streams = []
        for i, (blob, _, diff_id) in enumerate(img.layers()):
            ss = self.p(f"layer{i}.ss")
            rep = o.split(blob, self.p("objects"), ss)
            self.assertEqual(rep["diff_id"], diff_id)
            streams.append(ss)
        t.run(["umoci", "unpack", "--image", f"{img.layout}:{img.tag}", self.p("bundle")])
        return streams, snapshot(self.p("bundle", "rootfs"))

    def test_merged_tree_matches_umoci_unpack(self):
        streams, fs = self.build()
        for mode, keep in (([], False), (["--keep-user-xattrs"], True)):
            with self.subTest(xattrs=mode):
                rows, links, err = merged(streams, "--compat", *mode)

                def allowed(xs):
                    return {k: v for k, v in xs.items()
                            if k == "security.capability" or (keep and k.startswith("user."))}

                # The composefs-rs rules: root takes /usr's metadata, /run is emptied.
                usr = fs["/usr"][0]
                root = rows["/"]
                self.assertEqual(root["mode"], usr.st_mode)
                self.assertEqual((root["uid"], root["gid"]), (usr.st_uid, usr.st_gid))
                self.assertEqual(root["mtime"] * 10**9 + root["mtime_nsec"], usr.st_mtime_ns)
                self.assertEqual(root["xattrs"], allowed(fs["/usr"][1]))
                self.assertEqual(rows["/run"]["mtime"] * 10**9 + rows["/run"]["mtime_nsec"],
                                 usr.st_mtime_ns)
                expected = {p: v for p, v in fs.items()
                            if p != "/" and not p.startswith("/run/")}
                self.assertEqual(sorted(set(rows) | set(links)) , sorted(set(expected) | {"/"}))

                contents = {}
                for path, (st, xs, target) in expected.items():
                    r = rows.get(path)
                    if r is None:  # an extra name of a node: same inode in the rootfs
                        owner = links[path]
                        self.assertEqual(fs[owner][0].st_ino, st.st_ino, path)
                        continue
                    self.assertEqual(r["type"], kind(st.st_mode), path)
                    self.assertEqual(r["mode"], st.st_mode, path)
                    self.assertEqual((r["uid"], r["gid"]), (st.st_uid, st.st_gid), path)
                    if path != "/run":
                        self.assertEqual(r["mtime"] * 10**9 + r["mtime_nsec"], st.st_mtime_ns,
                                         path)
                    self.assertEqual(r["xattrs"], allowed(xs), path)
                    if r["type"] == "file":
                        self.assertEqual(r["size"], st.st_size, path)
                        self.assertEqual(r["nlink"], st.st_nlink, path)
                        full = self.p("bundle", "rootfs") + path
                        if st.st_size <= 64:
                            self.assertEqual(r.get("content", b""), o.read(full), path)
                            self.assertNotIn("digest", r)
                        else:
                            contents[full] = r["digest"]
                            self.assertEqual(r["payload"], r["digest"][:2] + "/" + r["digest"][2:])
                    if r["type"] == "symlink":
                        self.assertEqual(r["payload"], target, path)
                    if r["type"] in ("char", "block"):
                        self.assertEqual(r["rdev"], st.st_rdev, path)
                names = sorted(contents)
                out = subprocess.run(["fsverity", "digest", "--compact", *names], check=True,
                                     stdout=subprocess.PIPE).stdout.decode().split()
                self.assertEqual(dict(zip(names, out)), contents)
                # The rules the rootfs shows too: tool3 shares tool2's (old) inode, the new tool
                # is another; the opaque directory kept only c; whiteouts removed gone and old.
                self.assertEqual(links["/usr/bin/tool3"], "/usr/bin/tool2")
                self.assertNotIn("/etc/dir/a", rows)
                self.assertEqual(rows["/etc/dir"]["mode"], stat.S_IFDIR | 0o700)
                self.assertEqual(rows["/etc"]["mode"], stat.S_IFDIR | 0o750)
                self.assertIn("/etc/hostname", rows)
                self.assertNotIn("/etc/gone", rows)
                self.assertNotIn("/var/log/old", rows)
                self.assertEqual(rows["/etc/dir/c"]["mtime_nsec"], 500000000)
                self.check_image(streams, mode)

    def check_image(self, streams, opts):
        """The format-1 image of the merged tree is what composefs 1.0.8 writes for it: its
        dump (by 1.0.8's composefs-info) made into an image by 1.0.8's mkcomposefs."""
        ref = os.environ.get("CFS_REF_MKCOMPOSEFS", "/work/ref/composefs/build/tools/mkcomposefs")
        info = os.path.join(os.path.dirname(ref), "composefs-info")
        if not (os.access(ref, os.X_OK) and os.access(info, os.X_OK)):
            return
        img, again = self.p("merged.cfs"), self.p("again.cfs")
        merged([*streams], "--compat", *opts, "--image", img)
        dump = t.run([info, "dump", img]).stdout
        line = [ln for ln in dump.split(b"\n") if ln.startswith(b"/usr/bin/tool3 ")][0].split()
        self.assertEqual((line[2][:1], line[8]), (b"@", b"/usr/bin/tool2"), line)
        t.run([ref, "--min-version=1", "--from-file", "-", again], input=dump)
        self.assertEqual(t.sha256_file(img), t.sha256_file(again))

    def test_strict_mode_refuses_the_device_node(self):
        streams, _ = self.build()
        _, _, err = merged(streams, check=False)
        self.assertIn(f"layer {streams[0]}: entry 'dev/null'", err)
        self.assertIn("character device 1:3 refused", err)


class Rules(t.unittest.TestCase):
    """Layers written with tarfile; expectations from the composefs-rs rules."""

    def setUp(self):
        self.d = self.enterContext(t.tempdir("cfs-oci-rules-"))
        self.n = 0

    def layers(self, *layers):
        streams = []
        for members in layers:
            self.n += 1
            path = os.path.join(self.d, f"l{self.n}.tar")
            with open(path, "wb") as f:
                f.write(o.tar_bytes(members))
            ss = path + ".ss"
            o.split(path, os.path.join(self.d, "objects"), ss)
            streams.append(ss)
        return streams

    BASE = [o.info("usr/", tarfile.DIRTYPE, mode=0o755, mtime=1111, uid=5),
            o.info("usr/f", data=b"f" * 100),
            o.info("etc/", tarfile.DIRTYPE, mode=0o755),
            o.info("etc/a", data=b"a"),
            o.info("etc/sub/", tarfile.DIRTYPE),
            o.info("etc/sub/deep", data=b"d")]

    def error(self, layers, *needles, opts=()):
        rows, _, err = merged(self.layers(*layers), *opts, check=False)
        self.assertIsNone(rows, "expected an error")
        for n in needles:
            self.assertIn(n, err)
        return err

    def test_whiteouts_opaque_and_replacement(self):
        rows, links, _ = merged(self.layers(self.BASE, [
            o.info("etc/.wh.a"),
            o.info("etc/sub/.wh..wh..opq"),
            o.info("etc/sub/new", data=b"n"),
            o.info("usr/f/", tarfile.DIRTYPE),           # a directory replaces a file
            o.info("etc/", tarfile.DIRTYPE, mode=0o700, mtime=2222),  # dir over dir
            o.info("root-file", data=b"r"),
        ]))
        self.assertNotIn("/etc/a", rows)
        self.assertNotIn("/etc/sub/deep", rows)
        self.assertIn("/etc/sub/new", rows)
        self.assertEqual(rows["/usr/f"]["type"], "dir")
        self.assertEqual((rows["/etc"]["mode"], rows["/etc"]["mtime"]), (0o40700, 2222))
        self.assertEqual(rows["/"]["mode"], 0o40755)
        self.assertEqual((rows["/"]["uid"], rows["/"]["mtime"]), (5, 1111))  # from /usr
        self.assertNotIn(".wh.a", str(rows))

    def test_file_over_directory_replaces_the_subtree(self):
        rows, _, _ = merged(self.layers(self.BASE, [o.info("etc/sub", data=b"now a file")]))
        self.assertEqual(rows["/etc/sub"]["type"], "file")
        self.assertNotIn("/etc/sub/deep", rows)

    def test_hardlinks_across_layers(self):
        rows, links, _ = merged(self.layers(self.BASE, [
            o.info("etc/link", tarfile.LNKTYPE, link="usr/f"),
            o.info("usr/f", data=b"g" * 100),             # replaces usr/f: the link keeps the old
            o.info("etc/b", tarfile.LNKTYPE, link="./etc/a"),
        ]))
        old = os.path.join(self.d, "old")
        with open(old, "wb") as f:
            f.write(b"f" * 100)
        self.assertEqual(rows["/etc/link"]["digest"], o.fsverity_digest(old))
        self.assertNotEqual(rows["/etc/link"]["digest"], rows["/usr/f"]["digest"])
        self.assertEqual(rows["/etc/link"]["nlink"], 1)
        self.assertEqual(links, {"/etc/b": "/etc/a"})     # owner: first in sorted DFS order
        self.assertEqual(rows["/etc/a"]["nlink"], 2)

    def test_run_is_emptied_and_xattrs_filtered(self):
        rows, _, _ = merged(self.layers(self.BASE + [
            o.info("run/", tarfile.DIRTYPE, mtime=5),
            o.info("run/x", data=b"x"),
            o.info("usr/cap", data=b"c" * 90, pax={
                "SCHILY.xattr.security.capability": CAP.decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.user.a": "1", "SCHILY.xattr.trusted.b": "2"}),
        ]))
        self.assertNotIn("/run/x", rows)
        self.assertEqual(rows["/run"]["mtime"], 1111)
        self.assertEqual(rows["/usr/cap"]["xattrs"], {"security.capability": CAP})

    def test_hostile_layers(self):
        base = self.BASE
        cases = [
            ("dotdot", [o.info("etc/../../x", data=b"x")], ["'..' component"]),
            ("absolute", [o.info("/etc/x", data=b"x")], ["is absolute"]),
            ("implicit parent", [o.info("nodir/x", data=b"x")],
             ["directory '/nodir' does not exist"]),
            ("symlinked parent", [o.info("lnk", tarfile.SYMTYPE, link="etc"),
                                  o.info("lnk/x", data=b"x")], ["'/lnk' is a symlink"]),
            ("hardlink missing", [o.info("h", tarfile.LNKTYPE, link="etc/nope")],
             ["hardlink target '/etc/nope' does not exist"]),
            ("hardlink dir", [o.info("h", tarfile.LNKTYPE, link="etc/sub")],
             ["hardlink target '/etc/sub' is a directory"]),
            ("duplicate", [o.info("etc/z", data=b"1"), o.info("etc/z", data=b"2")],
             ["the same path twice in one layer"]),
            ("same-layer whiteout", [o.info("etc/z", data=b"1"), o.info("etc/.wh.z")],
             ["whiteout of an entry of the same layer"]),
            ("opaque after entries", [o.info("etc/z", data=b"1"), o.info("etc/.wh..wh..opq")],
             ["opaque whiteout of '/etc' after 1 entries"]),
            ("device", [o.info("etc/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)],
             ["block device 8:0 refused"]),
            ("root not a dir", [o.info("./", data=b"x")], ["the root must be a directory"]),
            ("empty symlink", [o.info("etc/s", tarfile.SYMTYPE, link="")],
             ["symlink with an empty target"]),
        ]
        for name, layer, needles in cases:
            with self.subTest(name):
                err = self.error([base, layer], *needles)
                self.assertIn(f"l{self.n}.tar.ss", err)  # the layer
                self.assertIn("entry '", err)
        # composefs-rs' behaviour where strict mode refuses.
        compat = ["--compat"]
        rows, _, _ = merged(self.layers(base, [o.info("/etc/x", data=b"x"),
                                               o.info("etc/z", data=b"1"),
                                               o.info("etc/z", data=b"2"),
                                               o.info("etc/.wh.x")]), *compat)
        self.assertNotIn("/etc/x", rows)
        self.assertEqual(rows["/etc/z"]["content"], b"2")
        self.error([[o.info("etc/", tarfile.DIRTYPE)]], "no /usr")


if __name__ == "__main__":
    t.main()
