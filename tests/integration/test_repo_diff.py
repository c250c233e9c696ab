#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""`cfs diff`: images built by composefs 1.0.8's mkcomposefs (not by cfs) from two trees that
differ in known ways; the expected differences are the changes this test made, content digests
come from `fsverity digest`, dumps from 1.0.8's composefs-info. Then the same through a
repository (names), and the exit statuses of diff(1)."""
import json
import os
import shutil
import subprocess
import unittest

import cfs_testlib as t

REF = os.environ.get("CFS_REF_TOOLS", "/work/ref/composefs/build/tools")
MTIME = 1700000000


def cfs(*args, check=True):
    return t.run([t.tool("cfs"), *args], check=check)


def verity_hex(path):
    return subprocess.run(["fsverity", "digest", "--compact", path], capture_output=True,
                          text=True, check=True).stdout.strip()


def settle(root):
    """Every mtime fixed, so that only the changes made on purpose differ."""
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for n in dirs + files:
            os.utime(os.path.join(dirpath, n), (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


class Diff(unittest.TestCase):
    def setUp(self):
        self.d = self.enterContext(t.tempdir("cfs-diff-"))
        a, b = self.p("a"), self.p("b")
        os.makedirs(f"{a}/usr/bin")
        os.makedirs(f"{a}/etc")
        os.makedirs(f"{a}/old/sub")
        with open(f"{a}/etc/motd", "w") as f:
            f.write("hello\n")
        with open(f"{a}/usr/bin/tool", "w") as f:
            f.write("x" * 5000)
        with open(f"{a}/usr/bin/same", "w") as f:
            f.write("unchanged " * 100)
        with open(f"{a}/old/sub/file", "w") as f:
            f.write("gone")
        with open(f"{a}/etc/time", "w") as f:
            f.write("t")
        os.symlink("tool", f"{a}/usr/bin/ln")
        shutil.copytree(a, b, symlinks=True)
        # The changes, one field each.
        with open(f"{b}/etc/motd", "w") as f:
            f.write("bye\n")                                        # content (and size)
        os.chmod(f"{b}/usr/bin/same", 0o600)                        # mode
        os.setxattr(f"{b}/etc/time", "user.note", b"v")             # xattr
        os.unlink(f"{b}/usr/bin/ln")
        os.symlink("same", f"{b}/usr/bin/ln")                       # target
        shutil.rmtree(f"{b}/old")                                   # removed directory
        with open(f"{b}/etc/new", "w") as f:                        # added file
            f.write("new")
        settle(a)
        settle(b)
        os.utime(f"{b}/etc/time", (MTIME + 1, MTIME + 1))           # mtime
        self.a, self.b = a, b
        self.mk = os.path.join(REF, "mkcomposefs")
        if not os.access(self.mk, os.X_OK):
            self.skipTest("composefs 1.0.8 not built at " + REF)

    def p(self, name):
        return os.path.join(self.d, name)

    def build(self, src, out, *opts):
        subprocess.run([self.mk, *opts, src, out], check=True)
        return out

    def diff(self, *args, rc):
        p = cfs("diff", "--json", *args, check=False)
        self.assertEqual(p.returncode, rc, p.stderr)
        return json.loads(p.stdout)

    def expected_paths(self):
        motd_a, motd_b = verity_hex(f"{self.a}/etc/motd"), verity_hex(f"{self.b}/etc/motd")
        return {
            "/etc/motd": ("changed", {"content": (motd_a, motd_b), "size": ("6", "4")}),
            "/etc/new": ("added", None),
            "/etc/time": ("changed", {"xattr user.note": ("", "v"),
                                      "mtime": (f"{MTIME}.000000000", f"{MTIME + 1}.000000000")}),
            "/old": ("removed", None),
            "/usr/bin/ln": ("changed", {"target": ("tool", "same")}),
            "/usr/bin/same": ("changed", {"mode": ("0644", "0600")}),
        }

    def check_paths(self, report):
        got = {}
        for e in report["paths"]:
            fields = {f["field"]: (f["a"], f["b"]) for f in e.get("fields", [])} or None
            got[e["path"]] = (e["status"], fields)
        want = self.expected_paths()
        self.assertEqual(set(got), set(want))
        for path, (status, fields) in want.items():
            self.assertEqual(got[path][0], status, path)
            if fields is None:
                continue
            for name, (va, vb) in fields.items():
                self.assertIn(name, got[path][1], path)
                ga, gb = got[path][1][name]
                if name in ("mode", "mtime"):  # allow richer spellings of the same value
                    self.assertTrue(ga.endswith(va) or va in ga, (path, name, ga))
                    self.assertTrue(gb.endswith(vb) or vb in gb, (path, name, gb))
                else:
                    self.assertEqual((ga, gb), (va, vb), (path, name))
            # Nothing but the changed fields (size goes with content).
            self.assertEqual(set(got[path][1]), set(fields), path)

    def test_images_of_two_trees(self):
        ia, ib = self.build(self.a, self.p("a.cfs")), self.build(self.b, self.p("b.cfs"))
        rep = self.diff(ia, ib, rc=1)
        self.assertFalse(rep["equal"])
        self.check_paths(rep)
        image = {f["field"]: (f["a"], f["b"]) for f in rep["image"]}
        self.assertEqual(image["digest"], ("sha256:" + verity_hex(ia), "sha256:" + verity_hex(ib)))
        self.assertNotIn("format-version", image)
        # Symmetric: B against A swaps added and removed.
        back = {e["path"]: e["status"] for e in self.diff(ib, ia, rc=1)["paths"]}
        self.assertEqual(back["/old"], "added")
        self.assertEqual(back["/etc/new"], "removed")
        # The text form names every changed path.
        text = cfs("diff", ia, ib, check=False)
        self.assertEqual(text.returncode, 1)
        for path in self.expected_paths():
            self.assertIn(path.encode(), text.stdout)

    def test_same_tree_other_format_version(self):
        # Two builds of one tree whose digests differ only because of --min-version: the
        # question a dump comparison cannot answer.
        i0 = self.build(self.a, self.p("a0.cfs"))
        i1 = self.build(self.a, self.p("a1.cfs"), "--min-version=1")
        rep = self.diff(i0, i1, rc=1)
        self.assertEqual(rep["paths"], [])
        image = {f["field"]: (f["a"], f["b"]) for f in rep["image"]}
        self.assertEqual(image["format-version"], ("0", "1"))
        self.assertIn(b"only the images differ", cfs("diff", i0, i1, check=False).stdout)
        # Equal: the same tree built twice; an image and 1.0.8's dump of it.
        again = self.build(self.a, self.p("again.cfs"))
        self.assertTrue(self.diff(i0, again, rc=0)["equal"])
        dump = self.p("a.dump")
        with open(dump, "wb") as f:
            subprocess.run([os.path.join(REF, "composefs-info"), "dump", i0], stdout=f,
                           check=True)
        self.assertTrue(self.diff(dump, i0, rc=0)["equal"])
        self.assertEqual(cfs("diff", dump, i0).stdout, b"")

    def test_hardlinks(self):
        # Directory scans do not make hardlinks (composefs-format.md §2.3): dumps do.
        common = ["/ 4096 40755 2 0 0 0 1700000000.0 - - -",
                  "/t 6 100644 1 0 0 0 1700000000.0 - xxxxx\\n -"]
        linked = common + ["/l 0 @100644 - - - - - /t - -"]
        copied = common + ["/l 6 100644 1 0 0 0 1700000000.0 - xxxxx\\n -"]
        inputs = []
        for name, lines in (("linked", linked), ("copied", copied)):
            dump = self.p(name + ".dump")
            with open(dump, "w") as f:
                f.write("\n".join(lines) + "\n")
            inputs.append((dump, self.build(dump, self.p(name + ".cfs"), "--from-file")))
        for a, b in ((inputs[0][0], inputs[1][0]), (inputs[0][1], inputs[1][1])):
            rep = self.diff(a, b, rc=1)
            got = {e["path"]: {f["field"]: (f["a"], f["b"]) for f in e["fields"]}
                   for e in rep["paths"]}
            self.assertEqual(set(got), {"/l", "/t"}, rep)
            self.assertEqual(got["/t"]["hardlinks"], ("/l", ""))
            self.assertEqual(got["/l"]["hardlinks"], ("/t", ""))

    def test_repository_names_and_errors(self):
        repo = self.p("repo")
        cfs("repo", "init", "--repo", repo, "--insecure", "--algorithm", "fsverity-sha256-12")
        cfs("create", "--repo", repo, self.a, "--name", "os/a")
        cfs("create", "--repo", repo, self.b, "--name", "os/b")
        self.check_paths(self.diff("--repo", repo, "os/a", "os/b", rc=1))
        self.assertTrue(self.diff("--repo", repo, "os/a", "refs/os/a", rc=0)["equal"])
        # A repository image against 1.0.8's build of the same tree with the same format: the
        # repository's format 1 images are mkcomposefs --min-version=1's bytes.
        i1 = self.build(self.a, self.p("a1.cfs"), "--min-version=1")
        self.assertTrue(self.diff("--repo", repo, "os/a", i1, rc=0)["equal"])
        # Trouble is 2, naming the argument.
        t.expect_cli_error(self, ["diff", "--repo", repo, "os/a", "os/none"], 2, "os/none")
        t.expect_cli_error(self, ["diff", self.p("missing"), i1], 2, "missing")
        junk = self.p("junk")
        with open(junk, "wb") as f:
            f.write(b"\x00" * 3000)
        p = cfs("diff", junk, i1, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"junk", p.stderr)


if __name__ == "__main__":
    if not shutil.which("fsverity"):
        t.skip("fsverity (fsverity-utils) not installed")
    t.main()
