#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;root;fuse
# ctest-timeout: 300
"""docs/root-mounts.md: every command block runs as the page says (docrun, as
test_docs_by_hand.py does), and the fstab line and unit files it shows are what systemd and
mount(8) accept: systemd-fstab-generator turns the fstab line into the mount unit's [Mount]
section, `systemd-analyze verify` accepts both units, and `mount --fstab` mounts the line
through /sbin/mount.composefs (in a private mount namespace whose /usr/sbin holds the helper).
"""
import configparser
import os
import shutil
import sys
import tempfile
import unittest

import cfs_testlib as t
import docrun

PAGE = os.path.join(t.SOURCE_DIR, "docs", "root-mounts.md")
TOOLS = ["busybox", "findmnt", "mountpoint", "chroot", "fusermount3", "mount"]
GENERATOR = "/usr/lib/systemd/system-generators/systemd-fstab-generator"


def shown(blocks, lang):
    return [b.text for b in blocks if b.kind == "show" and b.lang == lang]


def unit(text):
    c = configparser.ConfigParser(interpolation=None, strict=True)
    c.optionxform = str
    c.read_string(text)
    return c


class RootMounts(unittest.TestCase):
    def setUp(self):
        t.require_root()
        if not os.path.exists("/dev/fuse"):
            self.skipTest("no /dev/fuse")
        self.blocks = docrun.parse(PAGE)
        self.fstab, = shown(self.blocks, "text")
        self.mount_unit, self.service = shown(self.blocks, "ini")

    def test_page_runs(self):
        missing = [x for x in TOOLS if not shutil.which(x)]
        if missing:
            self.skipTest(f"missing tools: {missing}")
        scratch = tempfile.mkdtemp(prefix="cfs-doc-root-")
        try:
            work, results = os.path.join(scratch, "w"), os.path.join(scratch, "r")
            os.mkdir(work)
            os.mkdir(results)
            env = dict(os.environ, LC_ALL="C", PATH=t.BIN_DIR + ":" + os.environ["PATH"])
            try:
                res = docrun.run(self.blocks, work, results, have_verity=False, env=env,
                                 timeout=240)
            finally:
                docrun.unmount_all(work)
            problems = docrun.check(res, have_verity=False)
            self.assertFalse(problems, "\n\n".join(problems))
            self.assertFalse(docrun.mounts_under(work), "the page left mounts behind")
        finally:
            docrun.unmount_all(scratch)
            shutil.rmtree(scratch, ignore_errors=True)

    def scratch_paths(self, d, text):
        """The page's /var/lib/app and /srv/app, moved into the scratch directory d."""
        return (text.replace("/var/lib/app", os.path.join(d, "var-lib-app"))
                .replace("/srv/app", os.path.join(d, "srv-app")))

    def test_fstab_line_and_units(self):
        with t.tempdir("cfs-doc-units-") as d:
            # The fstab line -> the generator's unit == the page's mount unit ([Mount]).
            if os.access(GENERATOR, os.X_OK):
                fstab = os.path.join(d, "fstab")
                with open(fstab, "w") as f:
                    f.write(self.fstab)
                out = os.path.join(d, "gen")
                os.mkdir(out)
                p = t.run([GENERATOR, out, out, out],
                          env={"SYSTEMD_FSTAB": fstab, "SYSTEMD_LOG_LEVEL": "err"}, check=False)
                self.assertEqual(p.returncode, 0, p.stderr.decode())
                with open(os.path.join(out, "srv-app.mount")) as f:
                    generated = unit(f.read())
                self.assertEqual(dict(generated["Mount"]), dict(unit(self.mount_unit)["Mount"]))
            else:
                print("systemd-fstab-generator missing: fstab/unit equivalence not checked",
                      file=sys.stderr)
            # Both units pass systemd-analyze verify (with paths that exist here).
            if shutil.which("systemd-analyze") is None or shutil.which("systemd-escape") is None:
                self.skipTest("systemd-analyze/systemd-escape missing")
            os.makedirs(os.path.join(d, "var-lib-app", "objects"))
            os.makedirs(os.path.join(d, "srv-app"))
            open(os.path.join(d, "var-lib-app", "image.cfs"), "w").close()
            where = os.path.join(d, "srv-app")
            name = t.run(["systemd-escape", "--path", "--suffix=mount", where]).stdout.decode()
            units = os.path.join(d, "units")
            os.mkdir(units)
            self.assertEqual(
                t.run(["systemd-escape", "--path", "--suffix=mount", "/srv/app"]).stdout.strip(),
                b"srv-app.mount", "the page names the unit after its mount point")
            service = self.scratch_paths(d, self.service).replace("/usr/bin/cfs", t.tool("cfs"))
            for fname, text in ((name.strip(), self.scratch_paths(d, self.mount_unit)),
                                ("app-fuse.service", service)):
                path = os.path.join(units, fname)
                with open(path, "w") as f:
                    f.write(text)
                p = t.run(["systemd-analyze", "verify", path], check=False,
                          env={"SYSTEMD_LOG_LEVEL": "warning"})
                err = p.stderr.decode()
                self.assertEqual(p.returncode, 0, err)
                # Only complaints about this host (no systemd running, other units) may appear.
                self.assertNotIn(os.path.basename(path) + ":", err)
                self.assertNotIn("Unknown", err)

    def test_fstab_line_mounts_through_the_helper(self):
        if not shutil.which("unshare"):
            self.skipTest("unshare missing")
        with t.tempdir("cfs-doc-fstab-") as d:
            src = os.path.join(d, "src")
            os.makedirs(src)
            with open(os.path.join(src, "hello"), "w") as f:
                f.write("hello from fstab\n" * 10)
            lib = os.path.join(d, "var-lib-app")
            os.makedirs(os.path.join(d, "srv-app"))
            os.makedirs(lib)
            t.run([t.tool("mkcomposefs"), f"--digest-store={lib}/objects", src,
                   f"{lib}/image.cfs"])
            fstab = os.path.join(d, "fstab")
            with open(fstab, "w") as f:
                f.write(self.scratch_paths(d, self.fstab))
            helper = os.path.join(d, "sbin")
            os.mkdir(helper)
            os.symlink(t.tool("cfs"), os.path.join(helper, "mount.composefs"))
            where = os.path.join(d, "srv-app")
            # /usr/sbin in a private namespace: an overlay of the helper over the real one.
            script = (f"mount -t overlay -o lowerdir={helper}:/usr/sbin cfs-sbin /usr/sbin && "
                      f"mount --fstab {fstab} {where} && "
                      f"findmnt -no FSTYPE,VFS-OPTIONS {where} && cat {where}/hello | head -1 && "
                      f"umount {where}")
            p = t.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                      check=False)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            self.assertEqual(p.stdout.decode().split("\n")[:2],
                             ["overlay ro,relatime", "hello from fstab"])


if __name__ == "__main__":
    t.main()
