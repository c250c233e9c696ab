#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What a workload reads of the objects a lazy mount fetched whole, and what a partial verified
fetch of only those parts would cost on the wire (docs/design.md, "Partial verified fetch:
measured potential"; issue 15).

  bench/lazy_reads.py [--build-dir build] [--image oci:DIR:TAG] [--work DIR]
                      [--workloads dpkg,apt-get,python3,perl] [--readahead default,0]
                      [--cpu] [--sections] [--split-overhead] [--json FILE]

IMAGE (default: the Debian image tests/integration/test_oci_debian.py caches) is pulled into a
repository and pushed as zstd:chunked with its lazy metadata to a docker-registry started here
(loopback, not shaped: this measures reads, not time). For each workload and readahead setting,
in a fresh repository: `cfs oci mount --lazy --no-fill -o prefill_max=0` with CFS_LAZY_TRACE
(prefill off: no object goes into the page cache whole at its open, so every page the program
touches, by read(2) or by an mmap fault, reaches the server as a READ and is traced as
`read OBJ OFF LEN`, docs/lazy.md), then `chroot MNT WORKLOAD` to its exit. Readahead `default`
is the mount's own (the server raises the bdi's read_ahead_kb to 1024 as root; the value read is
printed); `0` sets the mount's bdi read_ahead_kb to 0 before the workload, so that each READ is
the pages the program touched (an mmap fault reads its one page; read(2) its own pages).

Per object read (from the trace; the object's bytes from the source repository, its path from
`cfs info dump` of the image): READs, bytes read, distinct 4 KiB blocks, and at 16/32/64/128 KiB
chunks: the chunks touched, their compressed bytes (each chunk compressed alone with zstd level
3, the level `cfs oci push --compression=zstd-chunked` uses for its per-file frames: a chunk that
can be decoded alone is a frame of its own), and the ranges (runs of adjacent chunks). Against
that, today's cost: the object whole, compressed as one frame the same way (the layer's frame).

The cost model at 1 Gbit/s (docs/design.md, bench/README.md session 15: docker-registry spends
~3.5 ms per request and ~0.45 ms per extra range of a multi-range request; the link carries
125 MB/s): a request of R ranges and B bytes costs 3.5 + 0.45 (R - 1) ms + B / 125 MB/s.
  today      the program's loader closure (the objects of the trace's `elf closure` request, the
             program first) whole, in one request of one range per object;
  profile    the same objects' touched chunks known ahead (a recorded read profile, as the
             loader graph is known ahead): one request, one range per run of chunks, plus each object's
             Merkle leaves (SHA-512: 64 bytes per 4 KiB block), stored in front of the object's
             first frame (so they ride in the first chunk's range);
  as read    chunks fetched when a READ misses them: one request per READ that needs a chunk
             not fetched yet (the program waits for each), in the trace's order, with the
             readahead setting's READs; the leaves come with the object's first request.
  bridged    profile, with the chunks between two runs of an object fetched along whenever
             they are fewer bytes than an extra range costs (0.45 ms at 125 MB/s: 56 KB).
--cpu: the CPU time (best of 5, this process) to decode and hash (SHA-512 per 4 KiB block, as
the fetch builds the fs-verity leaves) the closure whole against only its touched chunks: what
the mount's fetch threads would spend less, on the same two cores as the program.
--sections: the closure's read blocks by the ELF section they fall in (the loader's: headers,
dynamic section, symbol and version tables, relocations, init arrays, RELRO data and GOT; code;
the rest), and what a static profile, one push could compute without running anything (the
headers' block and every block of the loader's sections, and ld.so.cache whole), would fetch and
how many of the read blocks it covers, and the requests the program's reads outside it would
still make (one per miss, as `as read`).
`split` is what cutting the closure's objects into frames of that size adds to their compressed
bytes (every frame starts its dictionary afresh); --split-overhead prints the same for every
object of the image (the layers a full pull downloads would grow by about that much).
Reads after the workload's first output byte are left out of the chunks (the time that matters
ends there); the table's `late blocks` counts the blocks only they touched.

Prints a table per workload and setting, and one JSON line per workload, setting and
granularity (--json FILE: also written there). Runs as root (mount, chroot, the bdi)."""
import argparse
import ctypes
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402

sys.path.insert(0, HERE)
from lazy import umount, wait_server_gone  # noqa: E402

NOTLS = "--tls-verify=false"
WORKLOADS = {"dpkg": ["/usr/bin/dpkg", "--version"],
             "apt-get": ["/usr/bin/apt-get", "--version"],
             "python3": ["/usr/bin/python3", "-c", "pass"],
             "perl": ["/usr/bin/perl", "-e", "1"]}
BLOCK = 4096
CHUNKS = (16 << 10, 32 << 10, 64 << 10, 128 << 10)
LEVEL = 3  # cfs oci push --compression=zstd-chunked (oci::ZstdChunkedWriter's default)
LEAF = 64  # SHA-512 digest per 4 KiB block
REQUEST_MS, RANGE_MS, LINK_BPS = 3.5, 0.45, 125e6

_zstd = ctypes.CDLL("libzstd.so.1")
_zstd.ZSTD_compressBound.restype = ctypes.c_size_t
_zstd.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
_zstd.ZSTD_compress.restype = ctypes.c_size_t
_zstd.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                                ctypes.c_size_t, ctypes.c_int]
_zstd.ZSTD_isError.restype = ctypes.c_uint
_zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]


_zstd.ZSTD_decompress.restype = ctypes.c_size_t
_zstd.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                                  ctypes.c_size_t]


def zstd_frame(data):
    """`data` as one zstd frame at LEVEL."""
    cap = _zstd.ZSTD_compressBound(len(data))
    buf = ctypes.create_string_buffer(cap)
    n = _zstd.ZSTD_compress(buf, cap, data, len(data), LEVEL)
    if _zstd.ZSTD_isError(n):
        raise RuntimeError("zstd compression failed")
    return buf.raw[:n]


def decode_and_hash_ms(pieces, runs=5):
    """CPU ms (the best of `runs`) to decode each (frame, size) and hash what it gives in 4 KiB
    blocks with SHA-512: what a fetch spends on the bytes it receives (the fs-verity leaves)."""
    best = None
    for _ in range(runs):
        t0 = time.process_time()
        for frame, size in pieces:
            out = ctypes.create_string_buffer(max(size, 1))
            n = _zstd.ZSTD_decompress(out, size, frame, len(frame))
            if _zstd.ZSTD_isError(n) or n != size:
                raise RuntimeError("zstd decompression failed")
            raw = out.raw[:size]
            for i in range(0, size, BLOCK):
                hashlib.sha512(raw[i:i + BLOCK]).digest()
        ms = (time.process_time() - t0) * 1e3
        best = ms if best is None else min(best, ms)
    return best


def zstd_size(data):
    """Bytes of `data` compressed as one zstd frame at LEVEL (content size declared, as the
    push's frames are: ZSTD_compress knows the size, as a pledged frame does)."""
    cap = _zstd.ZSTD_compressBound(len(data))
    buf = ctypes.create_string_buffer(cap)
    n = _zstd.ZSTD_compress(buf, cap, data, len(data), LEVEL)
    if _zstd.ZSTD_isError(n):
        raise RuntimeError("zstd compression failed")
    return n


def leaves(size):
    """Bytes of an object's Merkle leaves (none for one block: the root is that block's hash)."""
    blocks = (size + BLOCK - 1) // BLOCK
    return blocks * LEAF if blocks > 1 else 0


def request_ms(ranges, nbytes):
    return REQUEST_MS + RANGE_MS * max(ranges - 1, 0) + nbytes / LINK_BPS * 1e3


def runs(indices):
    """Runs of consecutive integers in a set."""
    s = sorted(indices)
    return sum(1 for i, x in enumerate(s) if i == 0 or s[i - 1] != x - 1)


def bridged(touched, comp):
    """(ranges, bytes) of an object's touched chunks when a gap between two runs is fetched
    along whenever its bytes cost less on the link than the extra range would at the registry
    (RANGE_MS at LINK_BPS: 56 KB)."""
    s = sorted(touched)
    ranges, nbytes = 0, 0
    for i, c in enumerate(s):
        nbytes += comp[c]
        if i == 0:
            ranges = 1
            continue
        gap = sum(comp[s[i - 1] + 1:c])
        if gap == 0:
            continue
        if gap <= RANGE_MS / 1e3 * LINK_BPS:
            nbytes += gap
        else:
            ranges += 1
    return ranges, nbytes


def bdi_of(mnt):
    """The bdi name (MAJOR:MINOR) of the mount at `mnt` (the topmost), from mountinfo."""
    real = os.path.realpath(mnt)
    dev = None
    for line in r.t.mountinfo().splitlines():
        fields = line.split()
        if fields[4] == real:
            dev = fields[2]
    return dev


class Objects:
    """The image's objects: hex12 -> (path, size, object file), from the source repository."""

    def __init__(self, cfs, repo):
        images = os.path.join(repo, "images")
        (image,) = [n for n in os.listdir(images)
                    if os.path.isfile(os.path.join(images, n))]
        dump = subprocess.run([cfs, "info", "dump", os.path.join(images, image)], check=True,
                              capture_output=True, text=True).stdout
        self.by_hex = {}
        for line in dump.splitlines():
            f = line.split(" ")
            # path size mode nlink uid gid rdev mtime payload content digest [xattrs]
            if len(f) < 11 or f[8] == "-" or "/" not in f[8] or not f[2].startswith("1"):
                continue
            digest = f[10]
            if digest == "-":
                continue
            self.by_hex.setdefault(digest[:12], (path_unescape(f[0]), int(f[1]),
                                                 os.path.join(repo, "objects", f[8])))
        self.cache = {}

    def info(self, hx):
        return self.by_hex[hx]

    def compressed(self, hx, chunk):
        """Compressed bytes of each chunk of `chunk` bytes (chunk 0: the whole object)."""
        key = (hx, chunk)
        if key not in self.cache:
            _, size, path = self.by_hex[hx]
            with open(path, "rb") as f:
                data = f.read()
            step = chunk or max(size, 1)
            self.cache[key] = [zstd_size(data[i:i + step]) for i in range(0, max(size, 1), step)]
        return self.cache[key]


def path_unescape(p):
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m[1], 16)), p)


LOADER_SECTIONS = {".interp", ".dynamic", ".dynsym", ".dynstr", ".gnu.hash", ".hash",
                   ".gnu.version", ".gnu.version_d", ".gnu.version_r", ".rela.dyn", ".rela.plt",
                   ".relr.dyn", ".init_array", ".fini_array", ".data.rel.ro", ".got", ".got.plt",
                   ".tdata", ".note.gnu.property", ".note.gnu.build-id", ".note.ABI-tag"}
CODE_SECTIONS = {".text", ".plt", ".plt.got", ".plt.sec", ".init", ".fini"}


def elf_sections(path):
    """[(name, offset, size)] of an ELF64 little-endian file's sections with file bytes (not
    NOBITS), or None when it is not one."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    stroff = heads[shstrndx][4]
    out = []
    for name, typ, _, _, off, size in heads:
        if typ == 8 or size == 0:  # SHT_NOBITS
            continue
        end = data.index(b"\0", stroff + name)
        out.append((data[stroff + name:end].decode(), off, size))
    return out


def section_classes(objs, per, closure):
    """Blocks read by class of ELF section (loader: what ld.so reads or relocates on every
    load; code; the rest), and a static profile made of the headers' block and every block of
    the loader's sections: its blocks and how many of the read blocks it covers."""
    out = {"loader": 0, "code": 0, "other": 0, "static_blocks": 0, "static_covered": 0,
           "read_blocks": 0, "static_sets": {}}
    for hx in closure:
        _, size, path = objs.info(hx)
        secs = elf_sections(path)
        read = per[hx]["blocks"] if hx in per else set()
        out["read_blocks"] += len(read)
        if secs is None:  # ld.so.cache: read whole, a profile would list it whole
            static = set(range((size + BLOCK - 1) // BLOCK))
        else:
            static = {0}
            klass = {}
            for name, off, n in secs:
                blocks = range(off // BLOCK, (off + n - 1) // BLOCK + 1)
                c = ("loader" if name in LOADER_SECTIONS or name.startswith(".note")
                     else "code" if name in CODE_SECTIONS else "other")
                for b in blocks:
                    if klass.get(b) != "loader":  # a block shared with a loader section
                        klass[b] = c
                if c == "loader":
                    static.update(blocks)
            for b in read:
                out[klass.get(b, "loader" if b == 0 else "other")] += 1
        out["static_blocks"] += len(static)
        out["static_covered"] += len(read & static)
        out["static_sets"][hx] = static
    return out


def parse_trace(path):
    """(reads [(t, hex, off, len)], closure [hex, program first], closure request bytes,
    fetched {hex})."""
    reads, fetched, grouped = [], set(), {}
    closure_lead, closure_bytes = None, None
    with open(path) as f:
        for line in f:
            t, _, event = line.rstrip("\n").partition(" ")
            p = event.split(" ")
            if p[0] == "read" and len(p) == 4:
                reads.append((float(t), p[1], int(p[2]), int(p[3])))
            elif p[0] == "verified":
                fetched.add(p[1])
            elif p[0] == "elf" and p[1] == "closure" and closure_lead is None:
                closure_lead = p[2]
            elif p[0] == "grouped":
                grouped.setdefault(p[2], []).append(p[1])
            elif p[0] in ("ranges", "range") and p[1] == closure_lead and closure_bytes is None:
                closure_bytes = int(p[2])
    closure = [closure_lead, *grouped.get(closure_lead, [])] if closure_lead else []
    return reads, closure, closure_bytes, fetched


def analyse(reads, first_byte):
    """Per object and granularity: what was read (before the first byte, and in all)."""
    per = {}
    for t, hx, off, length in reads:
        o = per.setdefault(hx, {"reads": 0, "bytes": 0, "blocks": set(), "late_blocks": set(),
                                "seq": []})
        if length == 0:
            continue
        blocks = set(range(off // BLOCK, (off + length - 1) // BLOCK + 1))
        if t <= first_byte:
            o["reads"] += 1
            o["bytes"] += length
            o["blocks"] |= blocks
            o["seq"].append((off, length))
        else:
            o["late_blocks"] |= blocks - o["blocks"]
    return per


def model(objs, per, closure, order, chunk, cpu=False):
    """Costs of the closure's objects at one granularity (see the docstring)."""
    out = {"chunk": chunk, "objects": len(closure), "objects_read": 0, "size": 0,
           "read_bytes": 0, "blocks": 0, "chunks": 0, "chunk_bytes": 0, "ranges": 0,
           "bridged_ranges": 0, "bridged_bytes": 0, "leaf_bytes": 0, "whole_bytes": 0,
           "all_chunks_bytes": 0, "whole_ranges": len(closure)}
    for hx in closure:
        _, size, _ = objs.info(hx)
        out["size"] += size
        out["whole_bytes"] += objs.compressed(hx, 0)[0]
        comp = objs.compressed(hx, chunk)
        out["all_chunks_bytes"] += sum(comp)
        o = per.get(hx)
        if not o or not o["blocks"]:
            continue
        touched = {b * BLOCK // chunk for b in o["blocks"]}
        out["objects_read"] += 1
        out["read_bytes"] += o["bytes"]
        out["blocks"] += len(o["blocks"])
        out["chunks"] += len(touched)
        out["chunk_bytes"] += sum(comp[c] for c in touched)
        out["ranges"] += runs(touched)
        br, bb = bridged(touched, comp)
        out["bridged_ranges"] += br
        out["bridged_bytes"] += bb
        out["leaf_bytes"] += leaves(size)
    out["whole_ms"] = round(request_ms(out["whole_ranges"], out["whole_bytes"]), 1)
    out["profile_bytes"] = out["chunk_bytes"] + out["leaf_bytes"]
    out["profile_ms"] = round(request_ms(out["ranges"], out["profile_bytes"]), 1)
    out["bridged_ms"] = round(request_ms(out["bridged_ranges"],
                                         out["bridged_bytes"] + out["leaf_bytes"]), 1)
    if cpu:
        # What the fetch decodes and hashes: every object whole, or its touched chunks.
        whole, part = [], []
        for hx in closure:
            _, size, path = objs.info(hx)
            with open(path, "rb") as f:
                data = f.read()
            whole.append((zstd_frame(data), size))
            o = per.get(hx)
            for c in sorted({b * BLOCK // chunk for b in o["blocks"]} if o else ()):
                piece = data[c * chunk:(c + 1) * chunk]
                part.append((zstd_frame(piece), len(piece)))
        out["whole_cpu_ms"] = round(decode_and_hash_ms(whole), 1)
        out["chunks_cpu_ms"] = round(decode_and_hash_ms(part), 1)
    # As read: the READs in the trace's order, one request for each that needs a chunk not
    # fetched yet (leaves with an object's first request).
    have, requests, ms = set(), 0, 0.0
    for hx, off, length in order:
        if hx not in closure or length == 0:
            continue
        need = {(hx, c) for c in range(off // chunk, (off + length - 1) // chunk + 1)} - have
        if not need:
            continue
        comp = objs.compressed(hx, chunk)
        nbytes = sum(comp[c] for _, c in need)
        if not any(h == hx for h, _ in have):
            nbytes += leaves(objs.info(hx)[1])
        have |= need
        requests += 1
        ms += request_ms(runs(c for _, c in need), nbytes)
    out["as_read_requests"] = requests
    out["as_read_ms"] = round(ms, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--work", help="scratch directory (default: a new temporary one, deleted)")
    ap.add_argument("--workloads", default="dpkg,apt-get,python3,perl",
                    help="of " + ",".join(WORKLOADS) + " (those the image lacks are skipped)")
    ap.add_argument("--readahead", default="default,0",
                    help="the mount's readahead for the workload: default (the server's), or "
                         "a read_ahead_kb value set on the mount's bdi")
    ap.add_argument("--json", help="also write the JSON lines to this file")
    ap.add_argument("--cpu", action="store_true",
                    help="also time (CPU, best of 5) decoding and hashing the closure whole "
                         "against its touched chunks")
    ap.add_argument("--sections", action="store_true",
                    help="also class the closure's read blocks by ELF section, and size a "
                         "static profile (headers and the loader's sections)")
    ap.add_argument("--split-overhead", action="store_true",
                    help="first, what splitting every object of the image into frames of each "
                         "chunk size adds to its compressed bytes")
    args = ap.parse_args()
    cfs = os.path.join(os.path.abspath(args.build_dir), "bin", "cfs")
    work = args.work or tempfile.mkdtemp(prefix="cfs-bench-reads-")
    os.makedirs(work, exist_ok=True)
    out_json = open(args.json, "w") if args.json else None

    def run(*a, env=None):
        return subprocess.run([cfs, *a], check=True, capture_output=True, env=env)

    reg = r.Registry()
    reg.start()
    mnt = os.path.join(work, "mnt")
    try:
        src = os.path.join(work, "src")
        if not os.path.exists(src):
            run("repo", "init", "--repo", src, "--insecure")
            run("oci", "pull", "--repo", src, args.image, "img")
        run("oci", "push", "--repo", src, NOTLS, "--compression=zstd-chunked", "img",
            reg.ref("bench/img:1"))
        objs = Objects(cfs, src)
        if args.split_overhead:
            # What splitting every file into frames of each size would add to the layers (the
            # full pull's bytes, hence the bytes target's denominator grows too).
            whole = sum(objs.compressed(hx, 0)[0] for hx in objs.by_hex)
            for c in CHUNKS:
                split = sum(sum(objs.compressed(hx, c)) for hx in objs.by_hex)
                print(f"image: {len(objs.by_hex)} objects, {whole} bytes as one frame each; "
                      f"in {c >> 10} KiB frames {split} bytes ({split / whole - 1:+.1%})")
            objs.cache.clear()
        os.makedirs(mnt, exist_ok=True)
        serial = 0
        for wname in args.workloads.split(","):
            argv = WORKLOADS[wname]
            for ra in args.readahead.split(","):
                serial += 1
                repo = os.path.join(work, f"repo-{wname}-{ra}-{serial}-{os.getpid()}")
                run("repo", "init", "--repo", repo, "--insecure")
                trace = os.path.join(work, "trace")
                if os.path.exists(trace):
                    os.unlink(trace)
                run("oci", "mount", "--lazy", "--no-fill", "-o", "prefill_max=0", "--repo", repo,
                    NOTLS, reg.ref("bench/img:1"), mnt,
                    env=dict(os.environ, CFS_LAZY_TRACE=trace))
                try:
                    if not os.path.lexists(mnt + argv[0]):
                        print(f"{wname}: not in the image, skipped", file=sys.stderr)
                        continue
                    ra_file = f"/sys/class/bdi/{bdi_of(mnt)}/read_ahead_kb"
                    with open(ra_file) as f:
                        ra_kb = int(f.read())
                    if ra != "default":
                        with open(ra_file, "w") as f:
                            f.write(ra + "\n")
                        ra_kb = int(ra)
                    p = subprocess.Popen(["chroot", mnt, *argv], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
                    b = p.stdout.read(1)
                    first = time.time()
                    p.stdout.read()
                    rc = p.wait()
                    if rc != 0 and wname != "perl":
                        raise RuntimeError(f"{wname}: exit {rc}")
                finally:
                    umount(mnt)
                    wait_server_gone(repo)
                if not b:
                    first = time.time()  # no output (perl -e 1): all reads count
                reads, closure, closure_bytes, fetched = parse_trace(trace)
                per = analyse(reads, first)
                order = [(hx, off, n) for t, hx, off, n in reads if t <= first]
                sizes = [n for _, _, _, n in reads]
                print(f"\n{wname} (read_ahead_kb {ra_kb}): {len(reads)} READs "
                      f"(sizes: max {max(sizes, default=0)}, "
                      f"{sum(1 for n in sizes if n <= BLOCK)} of at most 4 KiB), "
                      f"{len(per)} objects read, {len(fetched)} fetched; loader closure "
                      f"{len(closure)} objects, {closure_bytes} bytes in its request")
                print(f"  {'object':<44} {'size':>9} {'READs':>5} {'read':>9} {'blocks':>6} "
                      f"{'of':>5} " + " ".join(f"{c >> 10:>3}K" for c in CHUNKS)
                      + "   late blocks")
                for hx in sorted(per, key=lambda h: -objs.info(h)[1]):
                    path, size, _ = objs.info(hx)
                    o = per[hx]
                    touched = [len({b * BLOCK // c for b in o["blocks"]}) for c in CHUNKS]
                    mark = "*" if hx in closure else " "
                    print(f" {mark}{path[-44:]:<44} {size:>9} {o['reads']:>5} {o['bytes']:>9} "
                          f"{len(o['blocks']):>6} {(size + BLOCK - 1) // BLOCK:>5} "
                          + " ".join(f"{n:>4}" for n in touched)
                          + f"   {len(o['late_blocks'])}")
                rows = [model(objs, per, closure, order, c, cpu=args.cpu) for c in CHUNKS]
                if args.sections:
                    sc = section_classes(objs, per, closure)
                    print(f"  closure's read blocks by ELF section: loader {sc['loader']}, "
                          f"code {sc['code']}, other {sc['other']}; a static profile (headers "
                          f"and the loader's sections whole): {sc['static_blocks']} blocks, "
                          f"{sc['static_covered']} of the {sc['read_blocks']} read")
                    for c in CHUNKS:
                        chunks = nbytes = nruns = 0
                        have = set()
                        for hx, static in sc["static_sets"].items():
                            comp = objs.compressed(hx, c)
                            t = {b * BLOCK // c for b in static}
                            have |= {(hx, i) for i in t}
                            chunks += len(t)
                            nbytes += sum(comp[i] for i in t) + leaves(objs.info(hx)[1])
                            nruns += runs(t)
                        # Then the reads it missed, each miss a request the program waits for.
                        misses, miss_ms = 0, 0.0
                        for hx, off, length in order:
                            if hx not in closure or length == 0:
                                continue
                            need = {(hx, i) for i in
                                    range(off // c, (off + length - 1) // c + 1)} - have
                            if need:
                                comp = objs.compressed(hx, c)
                                have |= need
                                misses += 1
                                miss_ms += request_ms(runs(i for _, i in need),
                                                      sum(comp[i] for _, i in need))
                        static_ms = request_ms(nruns, nbytes)
                        print(f"    static profile at {c >> 10} KiB: {chunks} chunks, {nbytes} "
                              f"bytes with leaves, {nruns} ranges: {static_ms:.1f} ms, then "
                              f"{misses} misses: {miss_ms:.1f} ms")
                w = rows[0]
                print(f"  closure (*): {w['size']} bytes, {w['blocks']} blocks read "
                      f"({w['blocks'] * BLOCK / max(w['size'], 1):.0%}); today whole "
                      f"{w['whole_bytes']} bytes compressed, {w['whole_ranges']} ranges: "
                      f"{w['whole_ms']} ms at 1 Gbit/s")
                print(f"  {'chunk':>6} {'split':>8} {'chunks':>6} {'bytes':>9} {'leaves':>7} "
                      f"{'ranges':>6} {'profile ms':>10} {'bridged':>7} {'bytes':>9} "
                      f"{'ms':>6} {'as-read req':>11} {'as-read ms':>10}")
                for m in rows:
                    print(f"  {m['chunk'] >> 10:>5}K "
                          f"{m['all_chunks_bytes'] / m['whole_bytes'] - 1:>+8.1%} "
                          f"{m['chunks']:>6} {m['chunk_bytes']:>9} "
                          f"{m['leaf_bytes']:>7} {m['ranges']:>6} {m['profile_ms']:>10} "
                          f"{m['bridged_ranges']:>7} {m['bridged_bytes']:>9} "
                          f"{m['bridged_ms']:>6} "
                          f"{m['as_read_requests']:>11} {m['as_read_ms']:>10}"
                          + (f"   cpu {m['whole_cpu_ms']} -> {m['chunks_cpu_ms']} ms"
                             if "whole_cpu_ms" in m else ""))
                    line = json.dumps({"workload": wname, "read_ahead_kb": ra_kb,
                                       "reads": len(reads), "closure_request_bytes":
                                       closure_bytes, **m})
                    if out_json:
                        out_json.write(line + "\n")
                        out_json.flush()
    finally:
        umount(mnt)
        reg.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
