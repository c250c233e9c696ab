#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""Repositories without mounts: meta.json bytes and compatibility rules, names, cfs create
--repo, fsck and its repair, gc without mounts.

Oracles: the meta.json block composefs-rs' `cfsctl init` writes, as the reference document
quotes it (read at run time), and Python's json.dumps(indent=2) (serde_json's pretty layout)
for the other settings; composefs 1.0.8's mkcomposefs (when built locally) for image bytes;
`fsverity digest` for object and image names; the file system itself for what exists."""
import json
import os
import re
import shutil
import subprocess
import unittest

import cfs_testlib as t
from cfs_testlib import cfs

REFERENCE = os.path.join(t.SHARED_DIR, "reference", "oci-repository.md")
MKCOMPOSEFS_108 = os.environ.get("CFS_REF_MKCOMPOSEFS",
                                 "/work/ref/composefs/build/tools/mkcomposefs")


def fsverity_digest(path, alg="sha256"):
    out = subprocess.run(["fsverity", "digest", f"--hash-alg={alg}", "--compact", path],
                         capture_output=True, text=True, check=True).stdout
    return f"{alg}:{out.strip()}"


def meta_oracle(alg, fmt):
    """What composefs-rs writes: serde pretty JSON of RepoMetadata plus a newline."""
    obj = {"version": 1, "algorithm": f"fsverity-{alg}-12",
           "features": {"compatible": [],
                        "read-only-compatible": ["v1_erofs"] if fmt == 1 else [],
                        "incompatible": []},
           "erofs_formats": {"default": fmt}}
    return json.dumps(obj, indent=2) + "\n"


def make_tree(root, variant=0):
    os.makedirs(f"{root}/etc", exist_ok=True)
    os.makedirs(f"{root}/usr/lib", exist_ok=True)
    with open(f"{root}/etc/hostname", "w") as f:
        f.write("repo-test\n")
    for i in range(12):
        with open(f"{root}/usr/lib/file{i}", "w") as f:
            f.write(f"{i}:{variant if i % 4 == 0 else 0}\n" * (50 + 30 * i))
    os.symlink("lib/file1", f"{root}/usr/link")
    os.utime(root, (1700000000, 1700000000))


class RepoTest(unittest.TestCase):
    def setUp(self):
        self._tmp = t.tempdir("cfs-repo-")
        self.dir = self._tmp.__enter__()
        self.repo = os.path.join(self.dir, "repo")

    def tearDown(self):
        self._tmp.__exit__(None, None, None)

    def init(self, *extra):
        cfs("repo", "init", "--repo", self.repo, "--insecure", *extra)

    # --- meta.json -------------------------------------------------------------------------

    def test_meta_json_bytes_match_the_reference(self):
        if not os.path.exists(REFERENCE):
            self.skipTest(f"{REFERENCE} not found")
        with open(REFERENCE) as f:
            doc = f.read()
        section = doc[doc.index("### 1.2 meta.json"):]
        block = re.search(r"```json\n(.*?)```", section, re.S).group(1)
        self.init()
        with open(f"{self.repo}/meta.json") as f:
            self.assertEqual(f.read(), block)
        self.assertEqual(block, meta_oracle("sha512", 1))

    def test_meta_json_for_each_algorithm_and_format(self):
        for alg in ("sha256", "sha512"):
            for fmt in (0, 1):
                with self.subTest(alg=alg, fmt=fmt):
                    path = os.path.join(self.dir, f"r-{alg}-{fmt}")
                    cfs("repo", "init", "--repo", path, "--insecure",
                        "--algorithm", f"fsverity-{alg}-12", "--erofs-version", str(fmt))
                    with open(f"{path}/meta.json") as f:
                        self.assertEqual(f.read(), meta_oracle(alg, fmt))
                    self.assertEqual(os.stat(path).st_mode & 0o777, 0o700)

    def test_init_is_idempotent_and_refuses_other_settings(self):
        self.init()
        self.init()
        t.expect_cli_error(self, ["repo", "init", "--repo", self.repo, "--insecure",
                                  "--erofs-version", "0"], 1, "already initialised")
        t.expect_cli_error(self, ["repo", "init", "--repo", self.repo, "--insecure",
                                  "--algorithm", "fsverity-sha1-12"], 2, "unknown hash")

    def test_init_again_refuses_another_security_mode(self):
        # An insecure repository initialised again without --insecure is refused, naming both
        # modes (it stayed insecure in silence where the filesystem has fs-verity, and the
        # error blamed the filesystem where it has none).
        self.init()
        t.expect_cli_error(self, ["repo", "init", "--repo", self.repo], 1,
                           "already initialised as an insecure repository, not a secure one")
        with open(f"{self.repo}/meta.json") as f:
            self.assertEqual(f.read(), meta_oracle("sha512", 1))

    def test_secure_init_needs_fs_verity(self):
        # Without fs-verity on the filesystem a secure repository is refused with a pointer to
        # --insecure and nothing is left behind; with it, meta.json gets fs-verity.
        probe = os.path.join(self.dir, "probe")
        with open(probe, "w") as f:
            f.write("x")
        has_verity = subprocess.run(["fsverity", "enable", probe],
                                    capture_output=True).returncode == 0
        if has_verity:
            cfs("repo", "init", "--repo", self.repo)
            subprocess.run(["fsverity", "measure", f"{self.repo}/meta.json"], check=True,
                           capture_output=True)
            return
        t.expect_cli_error(self, ["repo", "init", "--repo", self.repo], 1, "--insecure")
        self.assertFalse(os.path.exists(f"{self.repo}/meta.json"))

    def write_meta(self, obj):
        os.makedirs(self.repo, exist_ok=True)
        with open(f"{self.repo}/meta.json", "w") as f:
            json.dump(obj, f)

    def test_future_version_and_incompat_features_are_refused(self):
        self.write_meta({"version": 2, "algorithm": "fsverity-sha256-12"})
        t.expect_cli_error(self, ["repo", "images", "--repo", self.repo], 1, "version 2")
        self.write_meta({"version": 1, "algorithm": "fsverity-sha256-12",
                         "features": {"incompatible": ["chunked_objects"]}})
        t.expect_cli_error(self, ["repo", "images", "--repo", self.repo], 1, "chunked_objects")
        t.expect_cli_error(self, ["repo", "gc", "--repo", self.repo], 1, "chunked_objects")

    def test_unknown_ro_compat_opens_read_only(self):
        self.write_meta({"version": 1, "algorithm": "fsverity-sha256-12",
                         "features": {"read-only-compatible": ["v1_erofs", "shiny"]},
                         "erofs_formats": {"default": 1}})
        src = os.path.join(self.dir, "src")
        make_tree(src)
        cfs("repo", "images", "--repo", self.repo)            # reading works
        cfs("repo", "fsck", "--repo", self.repo)
        cfs("repo", "gc", "--dry-run", "--repo", self.repo)   # a dry run only reads
        t.expect_cli_error(self, ["create", "--repo", self.repo, src, "--name", "x"], 1, "shiny")
        t.expect_cli_error(self, ["repo", "gc", "--repo", self.repo], 1, "shiny")
        self.assertFalse(os.path.exists(f"{self.repo}/objects"))

    def test_old_repository_without_meta_json(self):
        # An old composefs-rs repository: objects named by 62 hex digits (sha256).
        src = os.path.join(self.dir, "src")
        make_tree(src)
        os.makedirs(f"{self.repo}/objects")
        cfs("create", "--digest-store", f"{self.repo}/objects", src,
            os.path.join(self.dir, "img.cfs"))
        cfs("repo", "images", "--repo", self.repo)
        out = json.loads(cfs("repo", "fsck", "--json", "--repo", self.repo).stdout)
        self.assertFalse(out["has_metadata"])
        self.assertEqual(out["algorithm"], "fsverity-sha256-12")
        t.expect_cli_error(self, ["create", "--repo", self.repo, src, "--name", "x"], 1,
                           "cfs repo init")
        # init upgrades it, keeping its algorithm; the default format 1 applies to new images.
        cfs("repo", "init", "--repo", self.repo, "--insecure")
        with open(f"{self.repo}/meta.json") as f:
            self.assertEqual(f.read(), meta_oracle("sha256", 1))

    # --- create, names, images -------------------------------------------------------------

    def create(self, src, name=None, *extra):
        args = ["create", "--repo", self.repo, src, "--json", *extra]
        if name:
            args += ["--name", name]
        return json.loads(cfs(*args).stdout)

    def test_create_stores_objects_image_and_name(self):
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        out = self.create(src, "os/v1")
        image = out["image"]
        obj = f"{self.repo}/objects/{image[:2]}/{image[2:]}"
        self.assertEqual(fsverity_digest(obj), f"sha256:{image}")
        self.assertEqual(os.readlink(f"{self.repo}/images/{image}"),
                         f"../objects/{image[:2]}/{image[2:]}")
        self.assertEqual(os.readlink(f"{self.repo}/images/refs/os/v1"), f"../../{image}")
        # Every file object is named by its digest.
        for i in range(12):
            d = fsverity_digest(f"{src}/usr/lib/file{i}").split(":")[1]
            self.assertTrue(os.path.isfile(f"{self.repo}/objects/{d[:2]}/{d[2:]}"))
        # The image is what composefs 1.0.8 writes with --min-version=1 (EROFS format 1).
        if os.access(MKCOMPOSEFS_108, os.X_OK):
            ref = subprocess.run([MKCOMPOSEFS_108, "--min-version=1", "--print-digest-only", src],
                                 capture_output=True, text=True, check=True).stdout.strip()
            self.assertEqual(ref, image)
        listing = json.loads(cfs("repo", "images", "--json", "--repo", self.repo).stdout)
        self.assertEqual(listing["images"], [{"name": "os/v1", "id": image, "mounts": 0}])

    def test_format_0_repository_writes_mkcomposefs_default_images(self):
        self.init("--algorithm", "fsverity-sha256-12", "--erofs-version", "0")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        image = self.create(src, "v")["image"]
        if not os.access(MKCOMPOSEFS_108, os.X_OK):
            self.skipTest("composefs 1.0.8 mkcomposefs not built")
        ref = subprocess.run([MKCOMPOSEFS_108, "--print-digest-only", src],
                             capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(ref, image)

    def test_tag_untag(self):
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        image = self.create(src, "a")["image"]
        cfs("repo", "tag", "--repo", self.repo, image, "b/c")
        cfs("repo", "tag", "--repo", self.repo, "a", "d")
        names = [i["name"] for i in
                 json.loads(cfs("repo", "images", "--json", "--repo", self.repo).stdout)["images"]]
        self.assertEqual(names, ["a", "b/c", "d"])
        cfs("repo", "untag", "--repo", self.repo, "b/c")
        self.assertFalse(os.path.exists(f"{self.repo}/images/refs/b"))
        t.expect_cli_error(self, ["repo", "untag", "--repo", self.repo, "b/c"], 1, "no name")
        t.expect_cli_error(self, ["repo", "tag", "--repo", self.repo, "0" * 64, "x"], 1,
                           "not in")
        t.expect_cli_error(self, ["repo", "tag", "--repo", self.repo, "a", "../x"], 1,
                           "not valid")

    def test_cfs_repo_environment_variable(self):
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        env = {"CFS_REPO": self.repo}
        t.run([t.tool("cfs"), "create", src, "--name", "env"], env=env)
        out = t.run([t.tool("cfs"), "repo", "images", "--json"], env=env).stdout
        self.assertEqual([i["name"] for i in json.loads(out)["images"]], ["env"])

    # --- fsck ------------------------------------------------------------------------------

    def test_fsck_finds_damage_and_repair_then_reimport_heals(self):
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        self.create(src, "v1")
        self.assertEqual(cfs("repo", "fsck", "--repo", self.repo).returncode, 0)
        d = fsverity_digest(f"{src}/usr/lib/file3").split(":")[1]
        obj = f"{self.repo}/objects/{d[:2]}/{d[2:]}"
        with open(obj, "r+b") as f:
            f.seek(5)
            f.write(b"#")
        open(f"{self.repo}/objects/.tmp-object-leftover", "w").close()
        os.symlink("../objects/00/" + "0" * 62, f"{self.repo}/images/" + "00" + "0" * 62)
        p = cfs("repo", "fsck", "--json", "--repo", self.repo, check=False)
        self.assertEqual(p.returncode, 1)
        out = json.loads(p.stdout)
        kinds = sorted(x["kind"] for x in out["problems"])
        self.assertEqual(kinds, ["broken-link", "object-digest-mismatch", "temp-file"])
        self.assertEqual(out["objects_corrupted"], 1)
        # Repair removes the corrupt object, the leftover and the dangling link; the image
        # now misses one object, which fsck names until the build is run again.
        p = cfs("repo", "fsck", "--repair", "--json", "--repo", self.repo, check=False)
        out = json.loads(p.stdout)
        self.assertEqual(p.returncode, 1)
        self.assertEqual([x["kind"] for x in out["problems"] if not x["repaired"]],
                         ["missing-object"])
        self.assertFalse(os.path.exists(obj))
        self.create(src, "v1")
        self.assertEqual(fsverity_digest(obj), f"sha256:{d}")
        out = json.loads(cfs("repo", "fsck", "--json", "--repo", self.repo).stdout)
        self.assertTrue(out["ok"])
        self.assertEqual(out["problems"], [])

    def test_fsck_objects_that_are_not_files(self):
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        self.create(src, "v1")
        d = fsverity_digest(f"{src}/usr/lib/file5").split(":")[1]
        obj = f"{self.repo}/objects/{d[:2]}/{d[2:]}"
        os.unlink(obj)
        os.mkfifo(obj)  # must not hang
        p = subprocess.run([t.tool("cfs"), "repo", "fsck", "--json", "--repo", self.repo],
                           capture_output=True, text=True, timeout=30)
        out = json.loads(p.stdout)
        self.assertIn("object-not-regular", [x["kind"] for x in out["problems"]])
        self.assertEqual(p.returncode, 1)

    # --- gc without mounts -----------------------------------------------------------------

    def objects(self):
        return t.store_objects(f"{self.repo}/objects")

    def test_gc_removes_unreferenced_keeps_referenced_and_dry_run_removes_nothing(self):
        self.init("--algorithm", "fsverity-sha256-12")
        v1, v2 = os.path.join(self.dir, "v1"), os.path.join(self.dir, "v2")
        make_tree(v1, 1)
        make_tree(v2, 2)
        i1 = self.create(v1, "v1")["image"]
        i2 = self.create(v2, "v2")["image"]
        only_v1 = {fsverity_digest(f"{v1}/usr/lib/file{i}").split(":")[1] for i in (0, 4, 8)}
        before = self.objects()
        self.assertTrue(only_v1 <= before)
        cfs("repo", "untag", "--repo", self.repo, "v1")
        dry = json.loads(cfs("repo", "gc", "--dry-run", "--json", "--repo", self.repo).stdout)
        self.assertEqual(self.objects(), before)
        self.assertTrue(os.path.lexists(f"{self.repo}/images/{i1}"))
        self.assertEqual(dry["objects_removed"], 4)  # three files and the image
        out = json.loads(cfs("repo", "gc", "--json", "--repo", self.repo).stdout)
        self.assertEqual(out["objects_removed"], dry["objects_removed"])
        self.assertEqual(out["bytes_removed"], dry["bytes_removed"])
        self.assertEqual(self.objects(), before - only_v1 - {i1})
        self.assertFalse(os.path.lexists(f"{self.repo}/images/{i1}"))
        self.assertEqual(out["images_pruned"], 1)
        # v2 is whole: fsck clean, and a second gc removes nothing.
        self.assertTrue(json.loads(cfs("repo", "fsck", "--json", "--repo", self.repo).stdout)["ok"])
        self.assertEqual(json.loads(cfs("repo", "gc", "--json", "--repo",
                                        self.repo).stdout)["objects_removed"], 0)
        del i2

    def test_gc_extra_roots(self):
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        image = self.create(src)["image"]  # no name
        before = self.objects()
        out = json.loads(cfs("repo", "gc", "--json", "--root", image, "--repo", self.repo).stdout)
        self.assertEqual(out["objects_removed"], 0)
        self.assertEqual(self.objects(), before)
        t.expect_cli_error(self, ["repo", "gc", "--root", "nope", "--repo", self.repo], 1,
                           "--root nope")
        out = json.loads(cfs("repo", "gc", "--json", "--repo", self.repo).stdout)
        self.assertEqual(out["objects_removed"], len(before))
        self.assertEqual(self.objects(), set())

    # --- locking ---------------------------------------------------------------------------

    def test_lock_protocol_with_flock_as_the_other_tool(self):
        # composefs-rs holds flock(LOCK_SH) on the repository directory while a repository is
        # open and LOCK_EX for gc (reference §1.4). flock(1) plays that other tool here; the
        # order of events is read from what each side wrote, never from timings.
        self.init("--algorithm", "fsverity-sha256-12")
        src = os.path.join(self.dir, "src")
        make_tree(src)
        gate, mark = os.path.join(self.dir, "gate"), os.path.join(self.dir, "holder-done")
        os.mkfifo(gate)

        def holder(mode):
            # Holds the lock until the test writes to the FIFO, then notes that it let go.
            return subprocess.Popen(["flock", mode, self.repo, "sh", "-c",
                                     f"echo locked; read x < {gate}; : > {mark}"],
                                    stdout=subprocess.PIPE, text=True)

        for mode, args in (("--shared", ["repo", "gc", "--repo", self.repo]),
                           ("--exclusive", ["create", "--repo", self.repo, src, "--name", "x"])):
            with self.subTest(mode):
                if os.path.exists(mark):
                    os.unlink(mark)
                h = holder(mode)
                self.assertEqual(h.stdout.readline().strip(), "locked")
                c = subprocess.Popen([t.tool("cfs"), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                # cfs says it waits (before blocking), and has not finished.
                line = c.stderr.readline()
                self.assertIn("waiting for", line)
                self.assertIsNone(c.poll())
                with open(gate, "w") as f:
                    f.write("go\n")
                self.assertEqual(h.wait(), 0)
                out, err = c.communicate(timeout=120)
                self.assertEqual(c.returncode, 0, err)
                self.assertTrue(os.path.exists(mark))
        # Shared holders do not exclude each other: images works while flock -s holds it.
        h = holder("--shared")
        self.assertEqual(h.stdout.readline().strip(), "locked")
        p = cfs("repo", "images", "--repo", self.repo)
        self.assertIn(b"x", p.stdout)
        self.assertNotIn(b"waiting", p.stderr)
        with open(gate, "w") as f:
            f.write("go\n")
        self.assertEqual(h.wait(), 0)


if __name__ == "__main__":
    if not shutil.which("fsverity"):
        t.skip("fsverity (fsverity-utils) not installed")
    t.main()
