#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""`cfs info --json` says what `composefs-info` 1.0.8 says, as JSON.

Oracles: the text outputs of composefs 1.0.8 (`NAME.info-dump.txt`, `NAME.info-ls.txt` in the
compat assets' reference-outputs, and the locally built 1.0.8 composefs-info for an image with
names that are not UTF-8), parsed here by their own escaping rules; Python's json module parses
ours, and `os.fsencode` undoes the surrogate escapes (PEP 383) to get the bytes back;
`fsverity digest` for measure-file."""
import gzip
import json
import os
import re
import shutil
import subprocess
import unittest

import cfs_testlib as t

REF = os.path.join(t.ASSETS_DIR, "reference-outputs")
REF_TOOLS = os.environ.get("CFS_REF_TOOLS", "/work/ref/composefs/build/tools")
ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[\\nrt])")


def unescape(field):
    """composefs-dump(5) escapes: \\xHH, \\\\, \\n, \\r, \\t."""
    def one(m):
        c = m.group(1)
        if c[:1] == b"x":
            return bytes([int(c[1:], 16)])
        return {b"\\": b"\\", b"n": b"\n", b"r": b"\r", b"t": b"\t"}[c]
    return ESCAPE.sub(one, field)


def optional(field):
    return None if field == b"-" else unescape(field)


def parse_dump(text):
    rows = []
    for line in text.split(b"\n"):
        if not line:
            continue
        f = line.split(b" ")
        mode = f[2].decode()
        hardlink = mode.startswith("@")
        sec, nsec = f[7].split(b".")
        xattrs = []
        for x in f[11:]:
            k, v = x.split(b"=", 1)
            xattrs.append((unescape(k), unescape(v)))
        rows.append({
            "path": unescape(f[0]), "size": int(f[1]), "mode": int(mode.lstrip("@"), 8),
            "nlink": int(f[3]), "uid": int(f[4]), "gid": int(f[5]), "rdev": int(f[6]),
            "mtime": int(sec), "mtime_nsec": int(nsec),
            "hardlink": unescape(f[8]) if hardlink else None,
            "payload": None if hardlink else optional(f[8]), "content": optional(f[9]),
            "digest": None if f[10] == b"-" else f[10].decode(), "xattrs": xattrs})
    return rows


def parse_ls(text):
    rows = []
    for line in text.split(b"\n"):
        if not line:
            continue
        path, _, rest = line.partition(b"\t")
        row = {"path": unescape(path)}
        if path.endswith(b"/"):
            row = {"path": unescape(path[:-1]), "dir": True}
        elif rest.startswith(b"-> "):
            row["target"] = unescape(rest[3:])
        elif rest.startswith(b"@ "):
            row["payload"] = unescape(rest[2:])
        rows.append(row)
    return rows


def b(s):
    return None if s is None else os.fsencode(s)


def ours_as_dump(entry):
    """Our JSON dump entry with every string back to bytes. The text form of a hardlink shows
    the owner's path where the payload would be; ours has both (the payload is compared on the
    owner's entry)."""
    out = dict(entry)
    for k in ("path", "hardlink", "payload", "content"):
        out[k] = b(entry[k])
    if entry["hardlink"] is not None:
        out["payload"] = None
    out["xattrs"] = [(b(x["key"]), b(x["value"])) for x in entry["xattrs"]]
    return out


def ours_as_ls(entry):
    row = {"path": b(entry["path"])}
    if entry["type"] == "directory":
        row["dir"] = True
    elif "target" in entry:
        row["target"] = b(entry["target"])
    elif "payload" in entry:
        row["payload"] = b(entry["payload"])
    return row


def cfs_json(*args):
    p = t.run([t.tool("cfs"), "info", "--json", *args])
    return json.loads(p.stdout.decode("utf-8"))


def read_ref(name):
    for path in (os.path.join(REF, name), os.path.join(REF, name + ".gz")):
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            return gzip.decompress(data) if path.endswith(".gz") else data
    return None


class InfoJson(unittest.TestCase):
    def test_reference_images(self):
        if not os.path.isdir(REF):
            self.skipTest("compat assets missing")
        images = sorted(n[:-4] for n in os.listdir(REF) if n.endswith(".cfs"))
        self.assertTrue(images)
        for name in images:
            with self.subTest(image=name):
                img = os.path.join(REF, name + ".cfs")
                dump_txt, ls_txt = read_ref(name + ".info-dump.txt"), read_ref(name + ".info-ls.txt")
                got = cfs_json("dump", img)
                self.assertEqual([x["image"] for x in got], [img])
                self.assertEqual([ours_as_dump(e) for e in got[0]["entries"]],
                                 parse_dump(dump_txt))
                got = cfs_json("ls", img)
                self.assertEqual([ours_as_ls(e) for e in got[0]["entries"]], parse_ls(ls_txt))
                objects = sorted({e["payload"] for e in parse_dump(dump_txt)
                                  if e["payload"] and e["mode"] & 0o170000 == 0o100000})
                self.assertEqual([b(o) for o in cfs_json("objects", img)], objects)

    def test_several_images_and_types(self):
        if not os.path.isdir(REF):
            self.skipTest("compat assets missing")
        a, c = os.path.join(REF, "special.cfs"), os.path.join(REF, "config-with-hard-link.cfs")
        got = cfs_json("ls", a, c)
        self.assertEqual([x["image"] for x in got], [a, c])
        entries = got[0]["entries"] + got[1]["entries"]
        self.assertLessEqual({"directory", "file", "symlink", "chardev", "blockdev", "fifo",
                              "hardlink"}, {e["type"] for e in entries})
        for e in entries:
            self.assertEqual(e["type"] == "symlink", "target" in e)
            if "payload" in e:
                self.assertEqual(e["type"], "file")

    def test_names_that_are_not_utf8(self):
        with t.tempdir() as d:
            store, src = os.path.join(d, "store"), os.path.join(d, "src")
            os.makedirs(src)
            names = [b"caf\xc3\xa9", b"latin1-\xe9", b"quote\"back\\slash", b"tab\tnl\nend",
                     b"\xed\xa0\x80surrogate-bytes", b"ctl\x01\x7f"]
            for i, n in enumerate(names):
                with open(os.path.join(os.fsencode(src), n), "wb") as f:
                    f.write(bytes([i]) * (100 + i))
            os.symlink(b"\xff\xfe-target", os.path.join(os.fsencode(src), b"link\x80"))
            img = os.path.join(d, "img.cfs")
            t.run([t.tool("mkcomposefs"), f"--digest-store={store}", src, img])
            text = t.run([t.tool("cfs"), "info", "--json", "dump", img]).stdout
            text.decode("utf-8")  # valid UTF-8 whatever the names
            got = [ours_as_dump(e) for e in json.loads(text)[0]["entries"]]
            self.assertEqual(sorted(e["path"] for e in got[1:]),
                             sorted([b"/" + n for n in names] + [b"/link\x80"]))
            ref_info = os.path.join(REF_TOOLS, "composefs-info")
            if os.access(ref_info, os.X_OK):
                ref = subprocess.run([ref_info, "dump", img], check=True,
                                     stdout=subprocess.PIPE).stdout
                self.assertEqual(got, parse_dump(ref))
                ref = subprocess.run([ref_info, "ls", img], check=True,
                                     stdout=subprocess.PIPE).stdout
                self.assertEqual([ours_as_ls(e) for e in cfs_json("ls", img)[0]["entries"]],
                                 parse_ls(ref))
            else:
                print(f"composefs 1.0.8 composefs-info not at {ref_info}: names checked only")
            # missing-objects: all of them, then none.
            objs = cfs_json("objects", img)
            self.assertEqual(len(objs), len(names))
            empty = os.path.join(d, "empty")
            os.makedirs(empty)
            self.assertEqual(cfs_json("--basedir", empty, "missing-objects", img), objs)
            self.assertEqual(cfs_json("--basedir", store, "missing-objects", img), [])

    def test_measure_file(self):
        if shutil.which("fsverity") is None:
            self.skipTest("fsverity (fsverity-utils) not installed")
        with t.tempdir() as d:
            files = []
            for i, size in enumerate((0, 4096, 100000)):
                p = os.path.join(d, f"f\xe9{i}")
                with open(p, "wb") as f:
                    f.write(os.urandom(size))
                files.append(p)
            got = cfs_json("measure-file", *files)
            want = [subprocess.run(["fsverity", "digest", "--compact", p], check=True,
                                   stdout=subprocess.PIPE).stdout.decode().strip() for p in files]
            self.assertEqual([(g["file"], g["algorithm"], g["digest"]) for g in got],
                             [(p, "sha256", w) for p, w in zip(files, want)])
            self.assertTrue(all(g["source"] in ("kernel", "userspace") for g in got))

    def test_compat_name_has_no_json(self):
        # composefs-info 1.0.8 has no --json; the compatible program refuses it as upstream does.
        p = t.run([t.tool("composefs-info"), "--json", "objects", "x.cfs"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"unrecognized option '--json'", p.stderr)

    def test_unknown_command_is_a_usage_error(self):
        # `cfs info` exits 2 for invalid usage (composefs-info(1)), an unknown command included;
        # the compatible name exits 1 as composefs-info 1.0.8 does.
        p = t.expect_cli_error(self, ["info", "bogus", "x.cfs"], 2, "Unknown command 'bogus'")
        self.assertIn(b"usage: cfs info", p.stderr)
        p = t.run([t.tool("composefs-info"), "bogus", "x.cfs"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"Unknown command 'bogus'", p.stderr)


if __name__ == "__main__":
    t.main()
