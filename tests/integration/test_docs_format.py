#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 120
"""docs/format.md section 12 quotes bytes of an image built from a dump it shows. This test
rebuilds the image from that dump and checks every quoted byte, the image size and the image
digest the page states, so the page cannot drift from what the writer produces.

Page markers: `<!-- format: input -->` before the dump block; `<!-- format: hexdump -->`
before each dump excerpt, whose lines read `OFFSET: HEX HEX ... | note` (lines without a
colon-terminated hex offset, such as `...`, are commentary); `<!-- format: facts -->` before
a block of `key: value` lines (size, digest)."""
import hashlib
import os
import re
import shutil
import subprocess
import unittest

import cfs_testlib as t

PAGE = os.path.join(t.SOURCE_DIR, "docs", "format.md")
LINE = re.compile(r"^([0-9a-f]{4,8}):((?:\s+[0-9a-f]{2})+)\s*(?:\|.*)?$")


def marked_blocks(text, kind):
    """Bodies of the fenced blocks preceded by <!-- format: KIND -->."""
    out = []
    for m in re.finditer(r"<!--\s*format:\s*" + kind + r"\s*-->\s*\n```[^\n]*\n(.*?)\n```", text,
                         re.S):
        out.append(m.group(1))
    return out


class FormatPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(PAGE, encoding="utf-8") as f:
            cls.text = f.read()

    def build(self, d):
        inputs = marked_blocks(self.text, "input")
        if not inputs:
            self.skipTest("format.md has no worked example yet")
        self.assertEqual(len(inputs), 1)
        src, img = os.path.join(d, "demo.dump"), os.path.join(d, "demo.cfs")
        with open(src, "w") as f:
            f.write(inputs[0] + "\n")
        p = subprocess.run([t.tool("mkcomposefs"), "--print-digest", "--from-file", src, img],
                           capture_output=True, text=True, env=dict(os.environ, CFS_PARSE_STRICT="1"))
        if "Usage: cfs COMMAND" in p.stderr:
            self.skipTest("mkcomposefs not implemented yet")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(img, "rb") as f:
            return f.read(), p.stdout.strip()

    def test_quoted_bytes_match(self):
        with t.tempdir() as d:
            image, digest = self.build(d)
            dumps = marked_blocks(self.text, "hexdump")
            self.assertTrue(dumps, "no hexdump excerpts")
            checked = 0
            for block in dumps:
                for line in block.splitlines():
                    m = LINE.match(line)
                    if not m:
                        continue
                    off = int(m.group(1), 16)
                    want = bytes.fromhex(m.group(2))
                    got = image[off:off + len(want)]
                    self.assertEqual(got.hex(" "), want.hex(" "), f"format.md line: {line}")
                    checked += len(want)
            self.assertGreater(checked, 256)
            facts = dict(ln.split(":", 1) for b in marked_blocks(self.text, "facts")
                         for ln in b.splitlines() if ":" in ln)
            facts = {k.strip(): v.strip() for k, v in facts.items()}
            self.assertEqual(int(facts["size"].split()[0]), len(image))
            self.assertEqual(facts["digest"], digest)
            self.assertEqual(facts["sha256"], hashlib.sha256(image).hexdigest())
            if shutil.which("fsck.erofs"):
                p = subprocess.run(["fsck.erofs", os.path.join(d, "demo.cfs")],
                                   capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    t.main()
