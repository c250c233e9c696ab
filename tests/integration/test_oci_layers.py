#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""OCI layers as splitstreams: the tar reader, the split rule, bit-exact reassembly and the
decompressors, against independent oracles: archives written by Python's tarfile, GNU tar,
bsdtar and umoci; entries compared with tarfile's reading; reassembled layers hashed by
hashlib and compared with umoci's config diff_ids; compressed with gzip, pigz and the zstd CLI;
object names from `fsverity digest`."""
import hashlib
import os
import resource
import struct
import subprocess
import tarfile

import cfs_testlib as t
import oci_testlib as o


def typechar(ti):
    return ti.type.decode() if ti.type != tarfile.AREGTYPE else "0"


class Split(t.unittest.TestCase):
    def setUp(self):
        self.d = self.enterContext(t.tempdir("cfs-oci-layers-"))

    def path(self, name):
        return os.path.join(self.d, name)

    def roundtrip(self, data, name="layer.tar", *opts):
        """Splits `data`; checks reassembly and digests; returns (split report, entries)."""
        with open(self.path(name), "wb") as f:
            f.write(data)
        ss, objs = self.path(name + ".ss"), self.path("objects")
        rep = o.split(self.path(name), objs, ss, *opts)
        self.assertEqual(rep["diff_id"], o.sha256(data))
        self.assertEqual(rep["stream_size"], len(data))
        self.assertEqual(o.cat(ss, objs, *opts), data)
        return rep, o.entries(ss, *opts)

    def check_against_tarfile(self, data, rows):
        """Every entry as Python's tarfile reads it."""
        import io
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            members = tf.getmembers()
            self.assertEqual(len(rows), len(members))
            for ti, r in zip(members, rows):
                where = ti.name
                self.assertEqual(r["path"].decode("utf-8", "surrogateescape").rstrip("/"),
                                 ti.name.rstrip("/"), where)
                self.assertEqual(r["type"], typechar(ti), where)
                self.assertEqual(r["size"], ti.size, where)
                self.assertEqual(r["mode"], ti.mode, where)
                self.assertEqual((r["uid"], r["gid"]), (ti.uid, ti.gid), where)
                self.assertEqual(r["mtime"], int(ti.mtime), where)
                if ti.issym() or ti.islnk():
                    self.assertEqual(r["link"].decode("utf-8", "surrogateescape"), ti.linkname,
                                     where)
                if ti.ischr() or ti.isblk():
                    self.assertEqual((r["devmajor"], r["devminor"]), (ti.devmajor, ti.devminor))
                pax = ti.pax_headers
                if "mtime" in pax and "." in pax["mtime"]:
                    frac = pax["mtime"].split(".")[1][:9].ljust(9, "0")
                    self.assertEqual(r["mtime_nsec"], int(frac), where)
                else:
                    self.assertEqual(r["mtime_nsec"], 0, where)
                xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                          for k, v in pax.items() if k.startswith("SCHILY.xattr.")}
                self.assertEqual(r["xattrs"], xattrs, where)
                if ti.isreg():
                    content = tf.extractfile(ti).read()
                    if ti.size <= 64:
                        self.assertEqual(r["content"], content, where)
                        self.assertNotIn("object", r)
                    else:
                        self.assertNotIn("content", r)
                        with open(self.path("content"), "wb") as f:
                            f.write(content)
                        self.assertEqual(r["object"], o.fsverity_digest(self.path("content")),
                                         where)

    def members(self, fmt):
        long_dir = "d" * 90 + "/" + "e" * 40
        m = [
            o.info("dir/", tarfile.DIRTYPE, mode=0o755),
            o.info("dir/empty"),
            o.info("dir/f64", data=b"x" * 64, mode=0o4755),
            o.info("dir/f65", data=b"y" * 65, uid=1000, gid=100),
            o.info("dir/big", data=os.urandom(70000), mode=0o600),
            o.info("dir/link", tarfile.SYMTYPE, link="big", mode=0o777),
            o.info("dir/hard", tarfile.LNKTYPE, link="dir/f65"),
            o.info("dir/chr", tarfile.CHRTYPE, devmajor=1, devminor=3),
            o.info("dir/blk", tarfile.BLKTYPE, devmajor=8, devminor=1),
            o.info("dir/fifo", tarfile.FIFOTYPE),
            o.info(long_dir + "/", tarfile.DIRTYPE),
            o.info(long_dir + "/file", data=b"long name " * 20),
        ]
        if fmt != tarfile.USTAR_FORMAT:
            m.append(o.info("dir/" + "n" * 200, data=b"a long name"))
            m.append(o.info("dir/longlink", tarfile.SYMTYPE, link="t" * 300))
            m.append(o.info("dir/bigids", data=b"z" * 100, uid=3000000, gid=70000000))
        if fmt == tarfile.PAX_FORMAT:
            cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
            m.append(o.info("dir/pax", data=b"p" * 300, pax={
                "mtime": "1700000000.123456789",
                "SCHILY.xattr.user.comment": "hello",
                "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape")}))
            m.append(o.info("dir/ns5", data=b"q", pax={"mtime": "1600000000.5"}))
            m.append(o.info("dir/ns12", data=b"r", pax={"mtime": "1600000000.123456789123"}))
        return m

    def test_python_tarfile_formats(self):
        for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu"),
                          (tarfile.USTAR_FORMAT, "ustar")):
            with self.subTest(fmt=name):
                data = o.tar_bytes(self.members(fmt), fmt=fmt)
                rep, rows = self.roundtrip(data, f"{name}.tar")
                self.check_against_tarfile(data, rows)
                # Headers inline, file content over 64 bytes external; objects deduplicated.
                self.assertGreater(rep["external_chunks"], 0)
                self.assertEqual(rep["inline_bytes"] + rep["external_bytes"], len(data))

    def test_sha512_objects(self):
        data = o.tar_bytes(self.members(tarfile.PAX_FORMAT))
        rep, rows = self.roundtrip(data, "pax512.tar", "--sha512")
        big = [r for r in rows if r["path"] == b"dir/big"][0]
        with tarfile.open(self.path("pax512.tar")) as tf:
            with open(self.path("content"), "wb") as f:
                f.write(tf.extractfile("dir/big").read())
        self.assertEqual(big["object"], o.fsverity_digest(self.path("content"), "sha512"))

    def test_no_end_blocks_trailing_bytes_and_global_headers(self):
        data = o.tar_bytes(self.members(tarfile.PAX_FORMAT))
        body = data.rstrip(b"\0")
        body += b"\0" * (-len(body) % 512)
        with self.subTest("no end-of-archive blocks"):
            rep, rows = self.roundtrip(body, "noend.tar")
            self.assertEqual(len(rows), len(self.members(tarfile.PAX_FORMAT)))
            self.assertEqual(rep["trailing_bytes"], 0)
        with self.subTest("ends inside the last entry's padding (umoci 0.4.7)"):
            last = o.tar_bytes([o.info("a", data=b"x" * 100), o.info("b", data=b"tail")])
            cut = last[:3 * 512 + 4]  # a: header + data block, b: header + 4 bytes of data
            rep, rows = self.roundtrip(cut, "cut.tar")
            self.assertEqual([r["path"] for r in rows], [b"a", b"b"])
            self.assertEqual(rows[1]["content"], b"tail")
        with self.subTest("one zero block only"):
            self.roundtrip(body + b"\0" * 512, "onezero.tar")
        with self.subTest("junk after the end"):
            rep, rows = self.roundtrip(data + b"trailing junk \x01\x02", "junk.tar")
            self.assertEqual(len(rows), len(self.members(tarfile.PAX_FORMAT)))
            self.assertGreater(rep["trailing_bytes"], 0)
        with self.subTest("global pax header"):
            g = o.tar_bytes(self.members(tarfile.PAX_FORMAT)[:3],
                            pax_headers={"comment": "global"})
            self.assertIn(b"g", g[156:157] + g[512 + 156:512 + 157])
            _, rows = self.roundtrip(g, "global.tar")
            self.assertEqual(len(rows), 3)

    def test_gnu_tar_and_bsdtar(self):
        if not o.have("tar", "bsdtar", "setfattr"):
            self.skipTest("needs GNU tar, bsdtar and setfattr")
        src = self.path("src")
        os.makedirs(os.path.join(src, "sub", "x" * 120))
        for i, size in enumerate([0, 1, 64, 65, 511, 512, 513, 100000]):
            with open(os.path.join(src, "sub", f"f{i}"), "wb") as f:
                f.write(os.urandom(size))
        with open(os.path.join(src, "sub", "x" * 120, "y" * 120), "wb") as f:
            f.write(b"deep" * 50)
        os.symlink("f7", os.path.join(src, "sub", "sym"))
        os.link(os.path.join(src, "sub", "f7"), os.path.join(src, "sub", "hard"))
        os.utime(os.path.join(src, "sub", "f3"), ns=(1, 1600000000123456789))
        t.run(["setfattr", "-n", "user.test", "-v", "value", os.path.join(src, "sub", "f4")])
        cases = {
            "gnu": ["tar", "--format=gnu", "-cf"],
            "posix": ["tar", "--format=posix", "--xattrs", "-cf"],
            "posix-b1": ["tar", "--format=posix", "-b", "1", "-cf"],
            "ustar": ["tar", "--format=ustar", "-cf"],
            "bsdtar-pax": ["bsdtar", "--format", "pax", "-cf"],
            "bsdtar-gnutar": ["bsdtar", "--format", "gnutar", "-cf"],
        }
        for name, cmd in cases.items():
            with self.subTest(archiver=name):
                out = self.path(name + ".tar")
                p = t.run(cmd + [out, "-C", src, "sub"], check=False)
                if p.returncode != 0:  # ustar cannot hold the 241-byte name
                    self.assertEqual(name, "ustar", p.stderr)
                    continue
                data = o.read(out)
                _, rows = self.roundtrip(data, name + ".tar")
                self.check_against_tarfile(data, rows)
                if name == "posix":
                    f3 = [r for r in rows if r["path"].endswith(b"/f3")][0]
                    self.assertEqual(f3["mtime_nsec"], 123456789)
                    f4 = [r for r in rows if r["path"].endswith(b"/f4")][0]
                    self.assertEqual(f4["xattrs"].get("user.test"), b"value")

    def test_umoci_layers_reassemble_to_their_diff_ids(self):
        if not o.have("umoci"):
            self.skipTest("umoci not installed")
        img = o.UmociImage(self.d)
        r1 = self.path("r1")
        os.makedirs(os.path.join(r1, "etc"))
        os.makedirs(os.path.join(r1, "usr", "bin"))
        with open(os.path.join(r1, "etc", "hostname"), "w") as f:
            f.write("box\n")
        with open(os.path.join(r1, "usr", "bin", "tool"), "wb") as f:
            f.write(os.urandom(200000))
        os.link(os.path.join(r1, "usr", "bin", "tool"), os.path.join(r1, "usr", "bin", "tool2"))
        img.insert(r1)
        img.whiteout("/etc/hostname")
        for i, (blob, media_type, diff_id) in enumerate(img.layers()):
            with self.subTest(layer=i):
                rep = o.split(blob, self.path("objects"), self.path(f"l{i}.ss"))
                self.assertEqual(rep["compression"], "gzip")
                self.assertTrue(media_type.endswith("+gzip"))
                self.assertEqual(rep["diff_id"], diff_id)
                self.assertEqual(rep["blob_sha256"], "sha256:" + os.path.basename(blob))
                self.assertEqual(o.sha256(o.cat(self.path(f"l{i}.ss"), self.path("objects"))),
                                 diff_id)


class Compression(t.unittest.TestCase):
    def setUp(self):
        if not o.have("gzip", "pigz", "zstd"):
            self.skipTest("needs gzip, pigz and zstd")
        self.d = self.enterContext(t.tempdir("cfs-oci-compress-"))
        self.tar = o.tar_bytes([o.info(f"f{i}", data=os.urandom(3000) * (i + 1))
                                for i in range(40)])

    def path(self, name):
        return os.path.join(self.d, name)

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def compress(self, cmd, data):
        return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True).stdout

    def decompress(self, name, *opts, check=True):
        return o.driver("decompress", *opts, self.path(name), check=check)

    def test_multi_member_gzip_and_multi_frame_zstd(self):
        half = len(self.tar) // 3
        a, b = self.tar[:half], self.tar[half:]
        skippable = struct.pack("<II", 0x184D2A5E, 7) + b"skipped"
        blobs = {
            "gzip": self.compress(["gzip", "-c"], self.tar),
            "gzip-2-members": self.compress(["gzip", "-c"], a) + self.compress(["gzip", "-c"], b),
            "pigz-2-members": self.compress(["pigz", "-c"], a) + self.compress(["pigz", "-9", "-c"], b),
            "pigz-independent": self.compress(["pigz", "-i", "-b", "32", "-c"], self.tar),
            "zstd": self.compress(["zstd", "-c", "-q"], self.tar),
            "zstd-frames-skippable": (self.compress(["zstd", "-c", "-q"], a) + skippable +
                                      self.compress(["zstd", "-c", "-q", "--no-check"], b) +
                                      skippable),
            "zstd-leading-skippable": skippable + self.compress(["zstd", "-c", "-q"], self.tar),
        }
        for name, blob in blobs.items():
            for engine in ([], ["--zlib"]):
                with self.subTest(blob=name, engine=engine):
                    self.write(name, blob)
                    self.assertEqual(self.decompress(name, *engine).stdout, self.tar)
                    rep = o.split(self.path(name), self.path("objs"), self.path("x.ss"), *engine)
                    self.assertEqual(rep["diff_id"], o.sha256(self.tar))
                    self.assertEqual(rep["blob_sha256"], o.sha256(blob))

    def test_media_type_must_match_the_bytes(self):
        self.write("gz", self.compress(["gzip", "-c"], self.tar))
        p = o.driver("split", "--media-type", "application/vnd.oci.image.layer.v1.tar+zstd",
                     self.path("gz"), self.path("objs"), self.path("x.ss"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("says zstd, but the blob is gzip", p.stderr.decode())
        rep = o.split(self.path("gz"), self.path("objs"), self.path("x.ss"), "--media-type",
                      "application/vnd.docker.image.rootfs.diff.tar.gzip")
        self.assertEqual(rep["diff_id"], o.sha256(self.tar))

    def test_truncated_and_trailing_garbage(self):
        gz = self.compress(["gzip", "-c"], self.tar)
        zs = self.compress(["zstd", "-c", "-q"], self.tar)
        cases = {
            "gzip truncated": (gz[:len(gz) // 2], "truncated gzip"),
            "gzip without trailer": (gz[:-4], "truncated gzip"),
            "gzip bad crc": (gz[:-8] + bytes([gz[-8] ^ 1]) + gz[-7:], "gzip"),
            "gzip garbage after": (gz + b"garbage!", "are not another member"),
            "zstd truncated": (zs[:len(zs) // 2], "truncated zstd"),
            "zstd garbage after": (zs + b"garbage!", "zstd"),
            "zstd bad checksum": (zs[:-1] + bytes([zs[-1] ^ 1]), "zstd"),
        }
        for name, (blob, needle) in cases.items():
            for engine in ([], ["--zlib"]):
                with self.subTest(name, engine=engine):
                    self.write("bad", blob)
                    p = self.decompress("bad", *engine, check=False)
                    self.assertEqual(p.returncode, 1, name)
                    self.assertIn(needle, p.stderr.decode())
                    self.assertIn(self.path("bad"), p.stderr.decode())


class Hostile(t.unittest.TestCase):
    def setUp(self):
        self.d = self.enterContext(t.tempdir("cfs-oci-hostile-"))

    def split_error(self, data, *needles):
        path = os.path.join(self.d, "bad.tar")
        with open(path, "wb") as f:
            f.write(data)
        p = o.driver("split", path, os.path.join(self.d, "objs"), os.path.join(self.d, "x.ss"),
                     check=False)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(path, err)
        for n in needles:
            self.assertIn(n, err)
        return err

    def header(self, name, size=0, type=b"0", fix_checksum=True):
        h = bytearray(512)
        h[0:len(name)] = name
        h[100:108] = b"0000644\0"
        h[108:116] = b"0000000\0"
        h[116:124] = b"0000000\0"
        h[124:136] = b"%011o\0" % size if size < 8 ** 11 else b"\x80" + size.to_bytes(11, "big")
        h[136:148] = b"14567777777\0"
        h[156:157] = type
        h[257:265] = b"ustar\x0000"
        h[148:156] = b" " * 8
        if fix_checksum:
            h[148:156] = b"%06o\0 " % sum(h)
        return bytes(h)

    def test_bad_checksum(self):
        good = o.tar_bytes([o.info("a", data=b"hello")])
        bad = bytearray(good)
        bad[600 - 512] ^= 1  # a byte of the name in the first header
        self.split_error(bytes(bad), "checksum mismatch", "at byte 0")

    def test_huge_pax_record_is_refused_without_allocating_it(self):
        data = self.header(b"PaxHeaders/x", size=1 << 30, type=b"x") + b"1 x\n" * 128
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        self.split_error(data, "exceed the limit")
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        self.assertLess(max(before, after), 300 * 1024, "peak RSS of the child (KiB)")

    def test_sparse_entries(self):
        self.split_error(self.header(b"sparse", type=b"S") + b"\0" * 1024,
                         "sparse entries are not supported")
        if not o.have("tar", "truncate"):
            return
        f = os.path.join(self.d, "holes")
        t.run(["truncate", "-s", "10M", f])
        with open(f, "r+b") as fh:
            fh.seek(5 << 20)
            fh.write(b"data")
        for fmt in ("gnu", "posix"):
            out = os.path.join(self.d, f"sparse-{fmt}.tar")
            t.run(["tar", f"--format={fmt}", "--sparse", "-cf", out, "-C", self.d, "holes"])
            self.split_error(o.read(out), "sparse entries are not supported")

    def test_structural_errors(self):
        ok = o.tar_bytes([o.info("a", data=b"x" * 1000)])
        self.split_error(ok[:512 + 600], "'a' at byte 0", "ends inside its data")
        self.split_error(ok[:300], "ends inside a header")
        self.split_error(b"\0" * 512 + ok, "zero block at byte 0 is followed by data")
        self.split_error(self.header(b"sym", size=10, type=b"2") + b"\0" * 512,
                         "type '2' entry with 10 bytes of data")
        self.split_error(self.header(b"", size=0) + b"\0" * 1024, "empty path")
        pax = b"30 path=only-a-path-record\n"
        orphan = self.header(b"x", size=len(pax), type=b"x") + pax + b"\0" * (512 - len(pax))
        self.split_error(orphan + b"\0" * 1024, "extension headers before byte", "have no entry")
        self.split_error(orphan, "ends inside a header")
        bad_pax = b"99 path=x\n"
        self.split_error(self.header(b"x", size=len(bad_pax), type=b"x") + bad_pax +
                         b"\0" * (512 - len(bad_pax)) + self.header(b"f") + b"\0" * 1024,
                         "bad length")
        two = self.header(b"L1", size=5, type=b"L") + b"name\0".ljust(512, b"\0")
        self.split_error(two + two + self.header(b"f") + b"\0" * 1024, "repeated 'L'")


if __name__ == "__main__":
    t.main()
