# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the Python integration and compat tests (stdlib only).

Tests run one file per CTest. A file that lacks a prerequisite calls skip(reason), which prints
the reason and exits 77 (CTest's SKIP_RETURN_CODE), so nothing passes silently.
"""
import contextlib
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("CFS_BIN_DIR", os.path.join(os.getcwd(), "build", "bin"))
SHARED_DIR = os.environ.get("CFS_SHARED_DIR", os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")))
SOURCE_DIR = os.environ.get("CFS_SOURCE_DIR", os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..")))
ASSETS_DIR = os.path.join(SHARED_DIR, "compat", "composefs-assets")
SKIP = 77


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP)


def tool(name):
    """Path of a cfs executable (cfs, mkcomposefs, composefs-info, mount.composefs, ...)."""
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not built")
    return path


def run(args, check=True, input=None, env=None, **kw):
    """Runs a command, captures output as bytes; on unexpected failure shows stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=full_env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}\nstderr: {p.stderr.decode(errors='replace')}")
    return p


def cfs(*args, check=True, **kw):
    """Runs `cfs ARGS` (arguments converted with str) like run()."""
    return run([tool("cfs"), *map(str, args)], check=check, **kw)


def expect_cli_error(case, args, rc, *needles):
    """Runs `cfs ARGS`; asserts exit status `rc`, a "cfs: error: " message containing every
    needle, and returns the process."""
    p = run([tool("cfs"), *args], check=False)
    err = p.stderr.decode()
    case.assertEqual(p.returncode, rc, f"{args}: {err}")
    case.assertTrue(err.startswith("cfs: error: "), err)
    for n in needles:
        case.assertIn(n, err)
    return p


def require_root():
    if os.geteuid() != 0:
        skip("needs root")


def require_assets():
    if not os.path.isdir(ASSETS_DIR):
        skip(f"compat assets not found at {ASSETS_DIR}")


def read_asset(name):
    path = os.path.join(ASSETS_DIR, name)
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if name.endswith(".gz") else data


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mountinfo():
    """/proc/self/mountinfo as text. Its paths are raw bytes (only space, tab, newline and
    backslash are escaped), and any test running beside this one may mount at or from a name
    that is not UTF-8, so the bytes are decoded as os.fsdecode does (surrogateescape)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def mount_points():
    """Every mount point in /proc/self/mountinfo, its octal escapes undone."""
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
    return [unescape(line.split(" ")[4]) for line in mountinfo().splitlines()]


def is_mounted(path):
    """Whether path is a mount point (in /proc/self/mountinfo)."""
    return os.path.realpath(path) in mount_points()


def umount(path):
    """Unmounts path (lazily, so a busy mount goes too) until it is no mount point, for at most
    five seconds; nothing when it is not mounted."""
    for _ in range(100):
        if not is_mounted(path):
            return
        subprocess.run(["umount", "-l", path], capture_output=True)
        time.sleep(0.05)


def store_objects(store):
    """The names ("ab" + "cdef...") of the objects in an object store or a repository's
    objects/ directory: every file in a two-character fan-out directory."""
    found = set()
    for d in os.listdir(store):
        if len(d) == 2:
            found |= {d + n for n in os.listdir(os.path.join(store, d))}
    return found


@contextlib.contextmanager
def tempdir(prefix="cfs-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    """unittest.main that maps 'everything skipped' to exit 77."""
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    if not r.wasSuccessful():
        sys.exit(1)
    if r.testsRun > 0 and len(r.skipped) == r.testsRun:
        print("SKIP: every test case skipped")
        sys.exit(SKIP)
    sys.exit(0)
