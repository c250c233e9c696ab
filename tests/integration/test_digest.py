#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""`cfs digest` / `cfs measure` against Debian's `fsverity digest` (an independent
implementation) on random sizes, block sizes, salts and algorithms, plus the command-line
contract: output format, --compact, --json, exit codes and error messages."""
import json
import os
import random
import shutil
import subprocess
import unittest

import cfs_testlib as t


def cfs(*args, check=False):
    return t.run([t.tool("cfs"), *args], check=check)


def fsverity(*args):
    return t.run(["fsverity", "digest", *args], check=True).stdout.decode()


class Differential(unittest.TestCase):
    def setUp(self):
        if not shutil.which("fsverity"):
            self.skipTest("fsverity not installed (Debian package fsverity)")

    def test_random_files_match_fsverity(self):
        rng = random.Random(0xC0FFEE)
        with t.tempdir() as d:
            for round_ in range(40):
                alg = rng.choice(["sha256", "sha512"])
                min_log = 6 if alg == "sha256" else 7
                bs = 1 << rng.choice([min_log, 10, 12, 12, 12, 14, 16])
                size = rng.choice([0, 1, bs - 1, bs, bs + 1, rng.randrange(1, 3 << 20),
                                   (bs // (32 if alg == "sha256" else 64)) * bs + rng.randrange(-1, 2)])
                size = max(size, 0)
                if size > (8 << 20):
                    size = rng.randrange(1, 8 << 20)
                salt = "" if rng.random() < 0.3 else os.urandom(rng.randrange(1, 33)).hex()
                path = os.path.join(d, f"f{round_}")
                with open(path, "wb") as f:
                    f.write(rng.randbytes(size))
                args = [f"--hash-alg={alg}", f"--block-size={bs}"]
                if salt:
                    args.append(f"--salt={salt}")
                with self.subTest(size=size, alg=alg, bs=bs, salt=salt):
                    want = fsverity(*args, path)
                    got = cfs("digest", *args, path, check=True).stdout.decode()
                    self.assertEqual(got, want)

    def test_segment_boundary_matches_fsverity(self):
        # Large files are hashed one segment at a time (8 MiB of leaf hashes: 16 MiB of data
        # with 64-byte SHA-256 blocks); each segment's whole blocks of leaf hashes are hashed
        # on all threads, the rest waits in the streaming upper levels. Two segments, the
        # second with one whole block of leaf hashes and one byte more.
        seg = (8 << 20) // 32 * 64
        size = seg + 64 * (64 // 32) + 1
        with t.tempdir() as d:
            path = os.path.join(d, "f")
            with open(path, "wb") as f:
                f.write(random.Random(17).randbytes(size))
            want = fsverity("--block-size=64", path)
            got = cfs("digest", "--block-size=64", "--threads=2", path, check=True)
            self.assertEqual(got.stdout.decode(), want)

    def test_many_files_one_invocation_in_order(self):
        rng = random.Random(5)
        with t.tempdir() as d:
            paths = []
            for i in range(300):
                p = os.path.join(d, f"{i:03d}")
                with open(p, "wb") as f:
                    f.write(rng.randbytes(rng.choice([0, 10, 4096, 5000, 70000])))
                paths.append(p)
            big = os.path.join(d, "big")  # large enough to be hashed on all threads
            with open(big, "wb") as f:
                f.write(rng.randbytes(9 << 20))
            paths.insert(150, big)
            want = fsverity(*paths)
            for threads in ("1", "2", "3"):
                got = cfs("digest", "--threads", threads, *paths, check=True).stdout.decode()
                self.assertEqual(got, want, f"threads={threads}")
            compact = cfs("digest", "--compact", *paths, check=True).stdout.decode()
            self.assertEqual(compact, fsverity("--compact", *paths))
            # Other parameters through the batched small-file path too.
            args = ["--hash-alg=sha512", "--block-size=1024", "--salt=00112233"]
            self.assertEqual(cfs("digest", *args, *paths, check=True).stdout.decode(),
                             fsverity(*args, *paths))
            # A failing entry in the middle of a batch: the others are still reported, in order.
            sub = os.path.join(d, "subdir")
            os.mkdir(sub)
            p = cfs("digest", *paths[:7], sub, *paths[7:20])
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stdout.decode(), fsverity(*paths[:7], *paths[7:20]))
            self.assertIn(sub.encode(), p.stderr)

    def test_stdin_pipe(self):
        data = random.Random(9).randbytes(300000)
        with t.tempdir() as d:
            path = os.path.join(d, "x")
            with open(path, "wb") as f:
                f.write(data)
            want = fsverity("--compact", path)
        p = t.run([t.tool("cfs"), "digest", "--compact", "/dev/stdin"], input=data)
        self.assertEqual(p.stdout.decode(), want)

    def test_procfs_short_reads(self):
        # procfs returns short reads before EOF and reports st_size 0: read to EOF, never
        # trust the first read's length. The copy's digest comes from fsverity.
        src = "/proc/kallsyms"
        if not os.access(src, os.R_OK):
            self.skipTest(f"{src} not readable")
        with open(src, "rb") as f:
            data = f.read()
        if len(data) <= 4096:
            self.skipTest(f"{src} too small to give a short read")
        with t.tempdir() as d:
            copy = os.path.join(d, "copy")
            with open(copy, "wb") as f:
                f.write(data)
            want = fsverity("--compact", copy)
        got = cfs("digest", "--compact", src, check=True).stdout.decode()
        self.assertEqual(got, want)


class CommandLine(unittest.TestCase):
    def setUp(self):
        self.dir_cm = t.tempdir()
        self.dir = self.dir_cm.__enter__()
        self.file = os.path.join(self.dir, "hello")
        with open(self.file, "wb") as f:
            f.write(b"hello\n")

    def tearDown(self):
        self.dir_cm.__exit__(None, None, None)

    def expect_error(self, args, rc, *needles):
        return t.expect_cli_error(self, args, rc, *needles)

    def test_known_digest_and_formats(self):
        # From `fsverity digest` (fsverity-utils 1.5) of the same 6 bytes.
        want = "sha256:9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"
        p = cfs("digest", self.file, check=True)
        got = p.stdout.decode()
        if shutil.which("fsverity"):
            want = fsverity(self.file).split()[0]
        self.assertEqual(got, f"{want} {self.file}\n")
        self.assertEqual(cfs("digest", "--compact", self.file, check=True).stdout.decode(),
                         want.split(":")[1] + "\n")
        js = json.loads(cfs("digest", "--json", self.file, check=True).stdout)
        self.assertEqual(js, [{"file": self.file, "algorithm": "sha256",
                               "digest": want.split(":")[1]}])

    def test_measure_falls_back_to_userspace(self):
        digest = cfs("digest", self.file, check=True).stdout
        self.assertEqual(cfs("measure", self.file, check=True).stdout, digest)
        js = json.loads(cfs("measure", "--json", self.file, check=True).stdout)
        self.assertEqual(len(js), 1)
        # This kernel/filesystem may or may not have fs-verity; either way it is reported.
        self.assertIn(js[0]["source"], ("kernel", "userspace"))
        if js[0]["source"] == "userspace":
            self.assertEqual(js[0]["digest"], digest.decode().split()[0].split(":")[1])

    def test_missing_file(self):
        missing = os.path.join(self.dir, "nope")
        p = self.expect_error(["digest", self.file, missing], 1, missing,
                              "No such file or directory")
        # The good file is still reported.
        self.assertIn(self.file, p.stdout.decode())

    def test_unreadable_file(self):
        if os.geteuid() == 0:
            # root reads anything; a FIFO opened O_RDONLY would block, so use a dangling link.
            link = os.path.join(self.dir, "dangling")
            os.symlink("/nonexistent/target", link)
            self.expect_error(["digest", link], 1, link)
        else:
            os.chmod(self.file, 0)
            self.expect_error(["digest", self.file], 1, self.file, "Permission denied")

    def test_directory(self):
        self.expect_error(["digest", self.dir], 1, self.dir, "Is a directory")

    def test_bad_salt(self):
        self.expect_error(["digest", "--salt=xyz", self.file], 1, "--salt", "xyz", "hex")
        self.expect_error(["digest", "--salt=abc", self.file], 1, "hex")
        self.expect_error(["digest", "--salt=" + "00" * 33, self.file], 1, "salt", "33 bytes")

    def test_bad_block_size(self):
        for bs in ("1000", "0", "32", "2097152"):
            with self.subTest(bs=bs):
                self.expect_error(["digest", f"--block-size={bs}", self.file], 1,
                                  f"block size {bs}", "power of two")
        self.expect_error(["digest", "--hash-alg=sha512", "--block-size=64", self.file], 1,
                          "block size 64")

    def test_bad_algorithm(self):
        self.expect_error(["digest", "--hash-alg=md5", self.file], 1, "md5", "sha256 sha512")

    def test_usage_errors_exit_2(self):
        self.expect_error(["digest"], 2, "FILE")
        self.expect_error(["digest", "--bogus", self.file], 2, "--bogus")
        self.expect_error(["digest", "--block-size=abc", self.file], 2, "abc")
        self.expect_error(["measure"], 2)

    def test_help_exits_0(self):
        for sub in ("digest", "measure"):
            p = cfs(sub, "--help")
            self.assertEqual(p.returncode, 0)
            self.assertIn("--hash-alg", p.stdout.decode())


if __name__ == "__main__":
    t.main()
