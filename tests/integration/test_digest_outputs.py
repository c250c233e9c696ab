#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""`cfs digest --out-merkle-tree / --out-descriptor / --for-builtin-sig` byte for byte against
Debian's `fsverity digest` (fsverity-utils 1.5) over sizes around block and level boundaries,
block sizes, salts and SHA-512; the stored tree order checked independently with hashlib; and
the error contract: usage errors exit 2, failures exit 1 leaving no output or temp file."""
import hashlib
import os
import random
import shutil
import struct
import unittest

import cfs_testlib as t

SIZES = [0, 1, 4096, 4097, 524289, (3 << 20) + 123, 5 << 20]
PARAMS = [("sha256", 4096, ""), ("sha256", 1024, "5a"), ("sha256", 65536, "00" * 32),
          ("sha512", 4096, "0123456789abcdef"), ("sha512", 1024, "")]


def cfs(*args, check=False):
    return t.run([t.tool("cfs"), *args], check=check)


def fsverity(*args):
    return t.run(["fsverity", "digest", *args], check=True).stdout.decode()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def param_args(alg, bs, salt):
    args = [f"--hash-alg={alg}", f"--block-size={bs}"]
    return args + [f"--salt={salt}"] if salt else args


class Differential(unittest.TestCase):
    def setUp(self):
        if not shutil.which("fsverity"):
            self.skipTest("fsverity not installed (Debian package fsverity)")
        self.dir_cm = t.tempdir()
        self.dir = self.dir_cm.__enter__()
        rng = random.Random(0x7EE)
        self.files = {}
        for size in SIZES:
            path = os.path.join(self.dir, f"data{size}")
            with open(path, "wb") as f:
                f.write(rng.randbytes(size))
            self.files[size] = path

    def tearDown(self):
        self.dir_cm.__exit__(None, None, None)

    def outputs(self, tag, tool, args, path):
        tree = os.path.join(self.dir, f"{tag}.tree")
        desc = os.path.join(self.dir, f"{tag}.desc")
        stdout = tool(*args, f"--out-merkle-tree={tree}", f"--out-descriptor={desc}", path)
        return stdout, read(tree), read(desc)

    def test_tree_and_descriptor_match_fsverity(self):
        for size, path in self.files.items():
            for alg, bs, salt in PARAMS:
                args = param_args(alg, bs, salt)
                with self.subTest(size=size, alg=alg, bs=bs, salt=salt):
                    want = self.outputs("want", fsverity, args, path)
                    got = self.outputs("got", lambda *a: cfs("digest", *a, check=True)
                                       .stdout.decode(), args, path)
                    self.assertEqual(got[0], want[0])
                    self.assertEqual(len(got[1]), len(want[1]))
                    self.assertTrue(got[1] == want[1], "Merkle tree bytes differ")
                    self.assertEqual(got[2].hex(), want[2].hex())

    def test_stored_order_top_level_first(self):
        # Independent of fsverity: hash each level with hashlib and check the layout that
        # fsverity.md section 3 gives for 524289 bytes at SHA-256/4K: [L1][L0 b0][L0 b1].
        path = self.files[524289]
        tree_path = os.path.join(self.dir, "t")
        desc_path = os.path.join(self.dir, "d")
        out = cfs("digest", f"--out-merkle-tree={tree_path}", f"--out-descriptor={desc_path}",
                  path, check=True).stdout.decode()
        tree, desc = read(tree_path), read(desc_path)
        self.assertEqual(len(tree), 3 * 4096)
        data = read(path)
        blocks = [data[i:i + 4096].ljust(4096, b"\0") for i in range(0, len(data), 4096)]
        level0 = b"".join(hashlib.sha256(b).digest() for b in blocks).ljust(2 * 4096, b"\0")
        self.assertEqual(tree[4096:], level0)
        level1 = b"".join(hashlib.sha256(level0[i:i + 4096]).digest() for i in (0, 4096))
        self.assertEqual(tree[:4096], level1.ljust(4096, b"\0"))
        root = hashlib.sha256(tree[:4096]).digest()
        self.assertEqual(len(desc), 256)
        self.assertEqual(desc[:16], struct.pack("<BBBBIQ", 1, 1, 12, 0, 0, len(data)))
        self.assertEqual(desc[16:48], root)
        self.assertEqual(desc[48:], bytes(208))
        self.assertEqual(out, f"sha256:{hashlib.sha256(desc).hexdigest()} {path}\n")

    def test_several_files_concatenate_descriptors(self):
        paths = [self.files[s] for s in (4097, 0, 1, 524289)]
        want_desc = os.path.join(self.dir, "want.desc")
        got_desc = os.path.join(self.dir, "got.desc")
        want = fsverity("--block-size=1024", f"--out-descriptor={want_desc}", *paths)
        got = cfs("digest", "--block-size=1024", f"--out-descriptor={got_desc}", *paths,
                  check=True).stdout.decode()
        self.assertEqual(got, want)
        self.assertEqual(len(read(got_desc)), 4 * 256)
        self.assertEqual(read(got_desc), read(want_desc))

    def test_for_builtin_sig(self):
        paths = [self.files[s] for s in (0, 4097, 524289)]
        for alg in ("sha256", "sha512"):
            for extra in ([], ["--compact"]):
                args = [f"--hash-alg={alg}", "--for-builtin-sig", *extra]
                with self.subTest(alg=alg, extra=extra):
                    self.assertEqual(cfs("digest", *args, *paths, check=True).stdout.decode(),
                                     fsverity(*args, *paths))
        # Same flag with the output files.
        tree = os.path.join(self.dir, "t")
        self.assertEqual(
            cfs("digest", "--for-builtin-sig", f"--out-merkle-tree={tree}", paths[1],
                check=True).stdout.decode(),
            fsverity("--for-builtin-sig", paths[1]))

    def test_existing_output_replaced(self):
        tree = os.path.join(self.dir, "tree")
        with open(tree, "wb") as f:
            f.write(b"x" * 100000)  # longer than the new tree: must not survive as a tail
        cfs("digest", f"--out-merkle-tree={tree}", self.files[4097], check=True)
        want = os.path.join(self.dir, "want")
        fsverity(f"--out-merkle-tree={want}", self.files[4097])
        self.assertEqual(read(tree), read(want))

    def test_non_regular_output_written_in_place(self):
        # /dev/stderr here is the pipe subprocess reads: renaming over it must not happen.
        p = cfs("digest", "--out-descriptor=/dev/stderr", self.files[1], check=True)
        want = os.path.join(self.dir, "want")
        fsverity(f"--out-descriptor={want}", self.files[1])
        self.assertEqual(p.stderr, read(want))


class Errors(unittest.TestCase):
    def setUp(self):
        self.dir_cm = t.tempdir()
        self.dir = self.dir_cm.__enter__()
        self.file = os.path.join(self.dir, "in")
        with open(self.file, "wb") as f:
            f.write(os.urandom(10000))
        self.out = os.path.join(self.dir, "out")

    def tearDown(self):
        self.dir_cm.__exit__(None, None, None)

    def expect_error(self, args, rc, *needles):
        return t.expect_cli_error(self, ["digest", *args], rc, *needles)

    def assert_nothing_written(self):
        self.assertEqual(sorted(os.listdir(self.dir)), ["in"], "output or temp file left")

    def test_tree_with_several_files_is_a_usage_error(self):
        # fsverity-utils writes each tree over the previous one (a mix remains): refuse.
        self.expect_error([f"--out-merkle-tree={self.out}", self.file, self.file], 2,
                          "--out-merkle-tree", "single FILE")
        self.assert_nothing_written()

    def test_usage_errors(self):
        self.expect_error([self.file, "--out-merkle-tree="], 2, "--out-merkle-tree")
        self.expect_error(["--out-merkle-tree", "", self.file], 2, "--out-merkle-tree",
                          "file name")
        self.expect_error(["--out-descriptor", "", self.file], 2, "--out-descriptor",
                          "file name")
        self.expect_error([f"--out-merkle-tree={self.out}", f"--out-merkle-tree={self.out}2",
                           self.file], 2, "--out-merkle-tree")
        self.expect_error(["--out-descriptor"], 2)
        self.assert_nothing_written()

    def test_measure_has_no_output_options(self):
        self.expect_error([], 2)
        p = cfs("measure", f"--out-descriptor={self.out}", self.file)
        self.assertEqual(p.returncode, 2)
        self.assert_nothing_written()

    def test_failed_input_leaves_no_output(self):
        missing = os.path.join(self.dir, "missing")
        p = self.expect_error([f"--out-descriptor={self.out}", self.file, missing], 1, missing)
        self.assertIn(self.file, p.stdout.decode())  # the good file is still reported
        self.assert_nothing_written()
        self.expect_error([f"--out-merkle-tree={self.out}", self.dir], 1, "Is a directory")
        self.assert_nothing_written()

    def test_failed_input_keeps_old_output(self):
        with open(self.out, "wb") as f:
            f.write(b"old")
        self.expect_error([f"--out-merkle-tree={self.out}", os.path.join(self.dir, "x")], 1)
        self.assertEqual(read(self.out), b"old")
        self.assertEqual(sorted(os.listdir(self.dir)), ["in", "out"])

    def test_unwritable_destination(self):
        bad = os.path.join(self.dir, "no", "such", "dir", "tree")
        self.expect_error([f"--out-merkle-tree={bad}", self.file], 1, "--out-merkle-tree", bad,
                          "No such file or directory")
        self.expect_error([f"--out-descriptor={bad}", self.file], 1, "--out-descriptor", bad)
        self.assert_nothing_written()


if __name__ == "__main__":
    t.main()
