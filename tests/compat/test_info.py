#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: compat
# ctest-timeout: 300
# ctest-cost: 8
"""composefs-info against composefs 1.0.8's own outputs (reference-outputs/*.info-*.txt) and
the dump -> image round trip of upstream's check-checksums."""
import gzip
import os
import re

import cfs_testlib as t

REF = os.path.join(t.ASSETS_DIR, "reference-outputs")


def images():
    if not os.path.isdir(REF):
        t.skip(f"reference outputs missing at {REF}")
    return sorted(os.path.join(REF, n) for n in os.listdir(REF) if n.endswith(".cfs"))


def reference(image, kind):
    base = image[:-len(".cfs")] + f".info-{kind}.txt"
    if os.path.exists(base):
        with open(base, "rb") as f:
            return f.read()
    with gzip.open(base + ".gz", "rb") as f:
        return f.read()


def info(*args, check=True):
    return t.run([t.tool("composefs-info"), *args], check=check)


def unescape(s):
    return re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), s)


class Info(t.unittest.TestCase):
    def test_dump_and_ls_equal_reference_outputs(self):
        for img in images():
            for kind in ("dump", "ls"):
                with self.subTest(image=os.path.basename(img), kind=kind):
                    out = info(kind, img).stdout
                    self.assertEqual(out, reference(img, kind))

    def test_cfs_info_is_the_same_command(self):
        img = os.path.join(REF, "special.cfs")
        self.assertEqual(t.run([t.tool("cfs"), "info", "dump", img]).stdout,
                         reference(img, "dump"))

    def test_objects_are_the_reference_payloads(self):
        # Expected list derived from upstream's dump: payloads of non-hardlink regular files.
        for img in images():
            want = set()
            for line in reference(img, "dump").splitlines():
                f = line.split(b" ")
                if len(f) >= 9 and f[2].startswith(b"10") and f[8] != b"-":
                    want.add(unescape(f[8]))
            out = info("objects", img).stdout
            self.assertEqual(out, b"".join(p + b"\n" for p in sorted(want)),
                             os.path.basename(img))

    def test_several_images_and_union_of_objects(self):
        a, b = os.path.join(REF, "config.cfs"), os.path.join(REF, "cs9-x86_64-minimal.cfs")
        self.assertEqual(info("dump", a, b).stdout, reference(a, "dump") + reference(b, "dump"))
        union = set(info("objects", a).stdout.splitlines()) | set(
            info("objects", b).stdout.splitlines())
        self.assertEqual(info("objects", a, b).stdout.splitlines(), sorted(union))

    def test_missing_objects(self):
        img = os.path.join(REF, "config.cfs")
        objs = info("objects", img).stdout.splitlines()
        self.assertEqual(info("missing-objects", img).stdout.splitlines(), objs)
        with t.tempdir() as d:
            present = objs[::3]
            for o in present:
                p = os.path.join(d, o.decode())
                os.makedirs(os.path.dirname(p), exist_ok=True)
                open(p, "wb").close()
            out = info("--basedir", d, "missing-objects", img).stdout.splitlines()
            self.assertEqual(out, [o for o in objs if o not in set(present)])
            out = info("missing-objects", f"--basedir={d}", img).stdout.splitlines()
            self.assertEqual(out, [o for o in objs if o not in set(present)])

    def test_filter(self):
        # Upstream check-dump-filtered: 4 lines with these prefixes.
        img = os.path.join(REF, "special.cfs")
        out = info("--filter=chardev", "--filter", "inline", "--filter=whiteout", "dump",
                   img).stdout.decode().splitlines()
        self.assertEqual([l.split(" ")[0] for l in out], ["/", "/chardev", "/inline", "/whiteout"])
        p = info("--filter=a/b", "dump", img, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"Filter must be a single name", p.stderr)

    def test_measure_file(self):
        # Golden digests of upstream's check-units (composefs-format.md §5).
        with t.tempdir() as d:
            files = []
            for name, data in (("a", b"hello world\n"), ("b", b"foo bar baz\n")):
                files.append(os.path.join(d, name))
                with open(files[-1], "wb") as f:
                    f.write(data)
            out = info("measure-file", *files).stdout.decode().split()
            self.assertEqual(out, [
                "37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92",
                "91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b"])

    def test_errors(self):
        self.assertEqual(info(check=False).returncode, 1)  # upstream: exit 1, not 2
        self.assertEqual(info("dump", check=False).returncode, 1)
        self.assertEqual(info("frobnicate", "x", check=False).returncode, 1)
        self.assertEqual(t.run([t.tool("cfs"), "info"], check=False).returncode, 2)
        p = info("dump", "/nonexistent.cfs", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"/nonexistent.cfs", p.stderr)
        with t.tempdir() as d:
            bad = os.path.join(d, "bad.cfs")
            with open(bad, "wb") as f:
                f.write(b"\x9a\x62\x78\xd0" + b"\0" * 4000)
            p = info("ls", bad, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(p.stdout, b"")

    def test_dump_then_mkcomposefs_gives_the_same_image(self):
        probe = t.run([t.tool("mkcomposefs"), "--help"], check=False)
        if b"--from-file" not in probe.stdout + probe.stderr:
            self.skipTest("mkcomposefs front end not available yet")
        with t.tempdir() as d:
            for img in images():
                with self.subTest(image=os.path.basename(img)):
                    dump = os.path.join(d, "x.dump")
                    with open(dump, "wb") as f:
                        f.write(info("dump", img).stdout)
                    out = os.path.join(d, "x.cfs")
                    with open(img, "rb") as f:
                        version = int.from_bytes(f.read(16)[12:16], "little")
                    t.run([t.tool("mkcomposefs"), "--from-file", f"--min-version={version}",
                           f"--max-version={version}", dump, out])
                    self.assertEqual(t.sha256_file(out), t.sha256_file(img))


if __name__ == "__main__":
    t.main()
