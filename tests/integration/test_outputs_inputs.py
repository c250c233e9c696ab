#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""Where outputs go and what inputs are refused, for every command (issue 16 items 1-3).

Outputs (one rule, cfs/util/output.h): a regular file or nothing is replaced atomically, a
symlink is followed and the file it names replaced, a character device or FIFO is written
through, anything else is refused. An interrupted run leaves no temp file; `cfs fsck --repair`
removes the named temps of killed writers and never one a live writer holds.
Inputs: a FIFO given as an image fails at once with a clear message, never a hang.
Expected bytes come from an output written to a plain file, and digests from `fsverity digest`."""
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
import unittest

import cfs_testlib as t


def run(*args, timeout=30, **kw):
    return subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_src(root):
    os.makedirs(os.path.join(root, "d"))
    for i, size in enumerate([10, 5000, 70000]):
        with open(os.path.join(root, "d", f"f{i}"), "wb") as f:
            f.write(bytes([i + 1]) * size)
    os.symlink("d/f1", os.path.join(root, "link"))


class Outputs(unittest.TestCase):
    def setUp(self):
        self._dir = t.tempdir("cfs-out-")
        self.d = self._dir.__enter__()
        self.src = os.path.join(self.d, "src")
        make_src(self.src)
        self.plain = os.path.join(self.d, "plain.cfs")
        p = run(t.tool("mkcomposefs"), "--use-epoch", self.src, self.plain)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.image = read(self.plain)

    def tearDown(self):
        self._dir.__exit__(None, None, None)

    def mk(self, out, *extra):
        return run(t.tool("mkcomposefs"), "--use-epoch", *extra, self.src, out)

    def temps(self, d=None):
        return [n for n in os.listdir(d or self.d) if ".cfs-tmp-" in n or n.startswith(".tmp")]

    def test_symlink_output_is_followed(self):
        os.makedirs(os.path.join(self.d, "real"))
        target = os.path.join(self.d, "real", "image.cfs")
        with open(target, "wb") as f:
            f.write(b"old")
        link = os.path.join(self.d, "link.cfs")
        os.symlink("real/image.cfs", link)
        p = self.mk(link)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(read(target), self.image)
        # A dangling link: the file is created where it points.
        os.unlink(target)
        p = self.mk(link)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(read(target), self.image)
        self.assertEqual(self.temps(), [])
        self.assertEqual(self.temps(os.path.join(self.d, "real")), [])

    def test_digest_outputs_follow_symlinks(self):
        target = os.path.join(self.d, "desc.bin")
        link = os.path.join(self.d, "desc-link")
        os.symlink("desc.bin", link)
        f = os.path.join(self.src, "d", "f2")
        p = run(t.tool("cfs"), "digest", f"--out-descriptor={link}", f)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(len(read(target)), 256)

    def test_fifo_output_is_streamed(self):
        fifo = os.path.join(self.d, "out.fifo")
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(read(fifo)), daemon=True)
        reader.start()
        try:
            p = self.mk(fifo)
            reader.join(timeout=30)
        finally:
            if reader.is_alive():  # the FIFO was replaced, or never written: release the reader
                with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                    pass
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        self.assertEqual(got, [self.image])

    def test_character_device_output_is_written_through(self):
        if os.geteuid() != 0:
            self.skipTest("mknod needs root")
        null = os.path.join(self.d, "null")
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        p = self.mk(null, "--print-digest")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(stat.S_ISCHR(os.lstat(null).st_mode), "device node replaced")
        self.assertEqual(p.stdout.decode().strip(), fsverity_digest(self.plain))
        self.assertEqual(self.temps(), [])

    def test_dev_null_stays_a_device(self):
        # The real /dev/null, in a private mount namespace whose /dev is a fresh tmpfs holding
        # only a null device of our own, so a failure cannot damage the machine.
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare")
        script = ("mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && "
                  "mknod -m 444 /dev/urandom c 1 9 && "
                  f"{t.tool('mkcomposefs')} --use-epoch --print-digest {self.src} /dev/null && "
                  "stat -c %F /dev/null")
        p = run("unshare", "-m", "--propagation", "private", "sh", "-c", script)
        self.assertEqual(p.returncode, 0, p.stderr)
        digest, kind = p.stdout.decode().split("\n")[:2]
        self.assertEqual(digest, fsverity_digest(self.plain))
        self.assertEqual(kind, "character special file")

    def test_proc_fd_output_writes_the_open_file(self):
        # /dev/fd/1 names the file the shell opened: it is written, nothing is replaced. (A
        # path inside /proc cannot be replaced, so a failure here harms nothing.)
        for path in ("/dev/fd/1", "/proc/self/fd/1"):
            out = os.path.join(self.d, "redirected.cfs")
            with open(out, "wb") as f:
                p = subprocess.run([t.tool("mkcomposefs"), "--use-epoch", self.src, path],
                                   stdout=f, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(read(out), self.image)

    def test_dev_stdout_is_written_through(self):
        # /dev/stdout in a private mount namespace with a /dev of its own, so that a failure
        # (replacing the link by a file) cannot damage the machine's /dev.
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare")
        out = os.path.join(self.d, "redirected.cfs")
        script = ("mount -t tmpfs none /dev && ln -s /proc/self/fd/1 /dev/stdout && "
                  "mknod -m 444 /dev/urandom c 1 9 && "
                  f"{t.tool('mkcomposefs')} --use-epoch {self.src} /dev/stdout > {out} && "
                  "stat -c %F /dev/stdout >&2")
        p = run("unshare", "-m", "--propagation", "private", "sh", "-c", script)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr.decode().strip(), "symbolic link")
        self.assertEqual(read(out), self.image)

    def test_directory_output_refused(self):
        d = os.path.join(self.d, "adir")
        os.makedirs(d)
        p = self.mk(d)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"refusing to replace a directory", p.stderr)
        self.assertTrue(os.path.isdir(d))

    def test_killed_run_leaves_no_temp(self):
        # --from-file reading a FIFO that never ends: the output is already open when the run is
        # killed (upstream order: output first).
        fifo = os.path.join(self.d, "dump.fifo")
        os.mkfifo(fifo)
        out = os.path.join(self.d, "killed.cfs")
        proc = subprocess.Popen([t.tool("mkcomposefs"), "--from-file", fifo, out],
                                stderr=subprocess.DEVNULL)
        try:
            w = os.open(fifo, os.O_WRONLY)  # waits for mkcomposefs to open it
            os.write(w, b"/ 4096 40755 2 0 0 0 0.0 - - -\n")
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            os.close(w)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(sorted(os.listdir(self.d)), ["dump.fifo", "plain.cfs", "src"])


def fsverity_digest(path):
    return subprocess.run(["fsverity", "digest", "--compact", path], check=True,
                          stdout=subprocess.PIPE).stdout.decode().strip()


class FifoInputs(unittest.TestCase):
    """A FIFO where an image is expected: a clear error within seconds, for every reader."""

    def setUp(self):
        self._dir = t.tempdir("cfs-fifo-")
        self.d = self._dir.__enter__()
        self.fifo = os.path.join(self.d, "image.cfs")
        os.mkfifo(self.fifo)

    def tearDown(self):
        self._dir.__exit__(None, None, None)

    def expect_refused(self, argv, rc=None):
        try:
            p = run(*argv, timeout=10)
        except subprocess.TimeoutExpired:
            self.fail(f"{argv} hung on a FIFO")
        self.assertNotEqual(p.returncode, 0)
        if rc is not None:
            self.assertEqual(p.returncode, rc, p.stderr)
        self.assertIn(b"not a regular file (a FIFO)", p.stderr)
        self.assertIn(self.fifo.encode(), p.stderr)

    def test_info(self):
        for cmd in ("ls", "dump", "objects"):
            self.expect_refused([t.tool("composefs-info"), cmd, self.fifo], rc=1)

    def test_fsck(self):
        self.expect_refused([t.tool("cfs"), "fsck", self.fifo], rc=3)
        self.expect_refused([t.tool("cfs"), "fsck", "--basedir", self.d, self.fifo], rc=3)

    def test_mounts(self):
        mnt = os.path.join(self.d, "mnt")
        os.makedirs(mnt)
        self.expect_refused([t.tool("cfs"), "mount", self.fifo, mnt, "-o", f"basedir={self.d}"])
        self.expect_refused([t.tool("mount.composefs"), self.fifo, mnt, "-o",
                             f"basedir={self.d}"])
        self.expect_refused([t.tool("cfs"), "mount", "--fuse", self.fifo, mnt, "-o",
                             f"basedir={self.d}"])
        self.expect_refused([t.tool("cfs"), "mount", "--fuse", self.fifo, mnt, "-o",
                             f"basedir={self.d},digest=" + "0" * 64])


if __name__ == "__main__":
    t.main()
