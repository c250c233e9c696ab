#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An independent splitstream encoder and decoder for tests (stdlib + the zstd and fsverity CLIs).

Written from the byte layout in ../shared/reference/oci-repository.md §2.1, not from cfs:

  header (32): magic "SplitStream", version u8 = 0, flags u16, algorithm u8, lg_blocksize u8,
               info FileRange{start u64, end u64}
  old header:  info FileRange at 0, flags u16 at 16, magic at 18, version 29, algorithm 30,
               lg_blocksize 31
  info (80):   stream_refs, object_refs, stream, named_refs (FileRanges), content_type u64,
               stream_size u64
  stream:      zstd of chunks: i64 LE n < 0 -> -n inline bytes follow; n >= 0 -> object_refs[n]
  named_refs:  zstd of "idx:name\\0" records sorted by name

  encode SPEC OUT      SPEC is a text file, one item per line:
                         alg 1|2 / content_type NAME8 / old_header / info_extra N
                         inline HEX / object PATH / named NAME HEX-DIGEST
  decode FILE OBJDIR OUT   prints "alg", "content_type", "stream_size", "old_header",
                         "object HEX", "stream HEX", "named NAME HEX", "chunk inline N" /
                         "chunk object I" lines, and writes the reassembled stream to OUT
                         (objects read from OBJDIR/xx/rest-of-hex).
"""
import struct
import subprocess
import sys

MAGIC = b"SplitStream"


def zstd(data, decompress=False):
    args = ["zstd", "-q", "-c"] + (["-d"] if decompress else ["-3", "--no-check"])
    return subprocess.run(args, input=data, stdout=subprocess.PIPE, check=True).stdout


def verity_digest(path, alg):
    name = {1: "sha256", 2: "sha512"}[alg]
    out = subprocess.run(["fsverity", "digest", "--compact", f"--hash-alg={name}", path],
                         stdout=subprocess.PIPE, check=True).stdout
    return bytes.fromhex(out.decode().strip())


def encode(spec_path, out_path):
    alg, ctype, old, extra = 1, b"ocilayer", False, 0
    chunks, named, objects = [], {}, []
    for line in open(spec_path, encoding="utf-8"):
        word, _, rest = line.rstrip("\n").partition(" ")
        if word == "alg":
            alg = int(rest)
        elif word == "content_type":
            ctype = rest.encode()
        elif word == "old_header":
            old = True
        elif word == "info_extra":
            extra = int(rest)
        elif word == "inline":
            chunks.append(("inline", bytes.fromhex(rest)))
        elif word == "object":
            chunks.append(("object", rest))
        elif word == "named":
            name, hexd = rest.rsplit(" ", 1)
            named[name] = bytes.fromhex(hexd)
    body = b""
    size = 0
    for kind, val in chunks:
        if kind == "inline":
            body += struct.pack("<q", -len(val)) + val
            size += len(val)
        else:
            d = verity_digest(val, alg)
            if d not in objects:
                objects.append(d)
            body += struct.pack("<q", objects.index(d))
            size += len(open(val, "rb").read())
    srefs = []
    records = b""
    for name in sorted(named):
        if named[name] not in srefs:
            srefs.append(named[name])
        records += f"{srefs.index(named[name])}:{name}\0".encode()
    stream_refs, object_refs = b"".join(srefs), b"".join(objects)
    named_z, stream_z = zstd(records), zstd(body)
    info_len = 80 + extra
    off = 32 + info_len
    ranges = []
    for sec in (stream_refs, object_refs, named_z, stream_z):
        ranges.append((off, off + len(sec)))
        off += len(sec)
    (sr, orr, nr, st) = ranges
    info = struct.pack("<QQQQQQQQQQ", *sr, *orr, *st, *nr,
                       struct.unpack("<Q", ctype)[0], size) + b"\xee" * extra
    if old:
        header = struct.pack("<QQH", 32, 32 + info_len, 0) + MAGIC + bytes([0, alg, 12])
    else:
        header = MAGIC + bytes([0]) + struct.pack("<H", 0) + bytes([alg, 12]) + \
            struct.pack("<QQ", 32, 32 + info_len)
    assert len(header) == 32
    with open(out_path, "wb") as f:
        f.write(header + info + stream_refs + object_refs + named_z + stream_z)


def decode(path, objdir, out_path):
    data = open(path, "rb").read()
    if data[:11] == MAGIC:
        version, _flags, alg, lg = data[11], struct.unpack_from("<H", data, 12)[0], data[14], data[15]
        info_start, info_end = struct.unpack_from("<QQ", data, 16)
        old = False
    else:
        assert data[18:29] == MAGIC, "bad magic"
        info_start, info_end = struct.unpack_from("<QQ", data, 0)
        version, alg, lg = data[29], data[30], data[31]
        old = True
    assert version == 0 and lg == 12 and alg in (1, 2)
    f = struct.unpack_from("<QQQQQQQQQQ", data, info_start)
    sr, orr, st, nr = (f[0], f[1]), (f[2], f[3]), (f[4], f[5]), (f[6], f[7])
    ctype, size = f[8], f[9]
    dsz = 32 if alg == 1 else 64
    lines = [f"alg {alg}", f"content_type {struct.pack('<Q', ctype).decode('latin-1')}",
             f"stream_size {size}", f"old_header {int(old)}"]
    objs = [data[i:i + dsz] for i in range(orr[0], orr[1], dsz)]
    srefs = [data[i:i + dsz] for i in range(sr[0], sr[1], dsz)]
    lines += [f"object {o.hex()}" for o in objs] + [f"stream {s.hex()}" for s in srefs]
    if nr[1] > nr[0]:
        for rec in zstd(data[nr[0]:nr[1]], True).split(b"\0")[:-1]:
            idx, name = rec.decode().split(":", 1)
            lines.append(f"named {name} {srefs[int(idx)].hex()}")
    body = zstd(data[st[0]:st[1]], True) if st[1] > st[0] else b""
    pos, out = 0, b""
    while pos < len(body):
        (n,) = struct.unpack_from("<q", body, pos)
        pos += 8
        if n < 0:
            out += body[pos:pos - n]
            pos -= n
            lines.append(f"chunk inline {-n}")
        else:
            h = objs[n].hex()
            out += open(f"{objdir}/{h[:2]}/{h[2:]}", "rb").read()
            lines.append(f"chunk object {n}")
    assert len(out) == size, f"reassembled {len(out)} bytes, stream_size {size}"
    open(out_path, "wb").write(out)
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1] == "encode":
        encode(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "decode":
        decode(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"usage: {sys.argv[0]} encode SPEC OUT | decode FILE OBJDIR OUT")
