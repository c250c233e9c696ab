#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Differential test of the image writer against upstream composefs 1.0.8 (local use).

Generates random composefs dumps (odd names, xattrs that share and escape, whiteouts,
hardlinks, inline content at block-boundary sizes, long symlinks, files over 8 TiB, ...),
builds each with the reference mkcomposefs and with ours, and compares the images byte for
byte. Both tools must succeed with identical bytes, or both must fail.

The reference is NOT built here: point --ref at an existing composefs 1.0.8 build (for example
one made outside the repository from its public source). Exits 77 (skip) when either tool is
missing.

  scripts/differential-writer.py --count 2000 [--seed 0] [--ref PATH] [--ours PATH]
"""
import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile

def esc(b: bytes, eq=False) -> str:
    out = []
    for c in b:
        if c == 0x5C:
            out.append("\\\\")
        elif eq and c == 0x3D:
            out.append("\\x3d")
        elif 0x21 <= c <= 0x7E:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def opt(b):
    if b is None:
        return "-"
    s = esc(b)
    return "\\x2d" if s == "-" else s


NAME_POOL = [b"a", b"b", b"-", b"+", b".a", b"..b", b"00", b"ff", b"0f", b"a b", b"=x", b"\xff\xfe",
             b"z" * 255, b"x" * 200, b"A", b"_", b"~", b"c\nd", b"lib", b"bin", b"0", b"zz"]

KEY_POOL = ["user.a", "user.b", "user.foo", "trusted.a", "trusted.overlay.x", "trusted.overlay.opaque",
            "trusted.overlay.whiteout", "trusted.overlay.overlay.y", "trusted.overlay.redirect",
            "trusted.overlay.metacopy", "security.selinux", "security.capability",
            "system.posix_acl_access", "system.posix_acl_default", "user.overlay.whiteouts",
            "user.overlay.opaque", "user.overlay.whiteout", "lustre.x", "system.foo", "x", "user.",
            "trusted.overlay.whiteouts"]

VAL_POOL = [b"", b"y", b"x", b"v", b"bar-2", b"system_u:object_r:usr_t:s0", b"\x00\x01=", b"a" * 100]


def rand_name(r):
    if r.random() < 0.5:
        return r.choice(NAME_POOL)
    n = r.randint(1, r.choice([3, 10, 40, 255]))
    return bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz0123456789-_.+= \x01\x7f\x80\xc3\xa9") for _ in range(n))


def rand_val(r, big):
    if r.random() < 0.6:
        return r.choice(VAL_POOL)
    n = r.randint(0, r.choice([8, 64, 600, 3000, 1500] + ([9000, 20000] if big else [])))
    return bytes(r.getrandbits(8) for _ in range(n))


def rand_xattrs(r, shared_keys, big):
    xs = {}
    n = r.choice([0, 0, 1, 2, 3, 5, 10, 20])
    if r.random() < 0.02:
        n = r.randint(100, 200)  # > 128 shareable xattrs on one inode
    for _ in range(n):
        if shared_keys and r.random() < 0.5:
            k, v = r.choice(shared_keys)
        else:
            k = r.choice(KEY_POOL) if r.random() < 0.7 else "user." + rand_name(r).decode("latin1")
            v = rand_val(r, big)
        if len(k.encode("latin1")) > 255:
            continue
        xs[k] = v
    # keep within the 32767 per-inode budget
    total = 12 + sum(7 + len(k.encode("latin1")) + len(v) for k, v in xs.items())
    while xs and total > 32000:
        k = next(iter(xs))
        total -= 7 + len(k.encode("latin1")) + len(xs[k])
        del xs[k]
    return xs


def gen(seed):
    r = random.Random(seed)
    big = r.random() < 0.2
    edge = r.random() < 0.5
    mtimes = [(r.randint(0, 2**33), r.randint(0, 999999999)) for _ in range(r.randint(1, 3))]
    shared_keys = [("user.s%d" % i, b"v" * r.randint(0, 40)) for i in range(r.randint(0, 160))]
    lines = []
    paths = []  # non-dir paths (hardlink targets)
    count = [0]
    limit = r.choice([5, 20, 100, 400]) + (800 if edge else 0)

    def mt():
        s, ns = r.choice(mtimes)
        return "%d.%d" % (s, ns)

    def xattr_str(xs):
        return "".join(" %s=%s" % (esc(k.encode("latin1"), True), esc(v, True)) for k, v in xs.items())

    def node(path, depth, is_root=False):
        count[0] += 1
        t = "dir" if is_root else r.choices(
            ["dir", "reg0", "inline", "ext", "huge", "sym", "chr", "wh", "blk", "fifo", "sock", "link"],
            [10 if depth < 4 else 0, 6, 8, 14, 1, 8, 3, 3, 2, 2, 1, 3])[0]
        xs = rand_xattrs(r, shared_keys, big)
        uid = r.choice([0, 1000, 65535, 65536, 2**32 - 1])
        gid = r.choice([0, 100, 70000])
        nlink = r.choice([1, 1, 2, 70000])
        p = esc(path) if path else "/"
        if t == "link":
            if not paths:
                t = "fifo"
            else:
                lines.append("%s 0 @100644 1 0 0 0 0.0 %s - -" % (p, esc(r.choice(paths))))
                paths.append(path)
                return
        if t == "dir":
            mode = 0o40000 | r.choice([0o755, 0o555, 0o700])
            lines.append("%s 4096 %o 2 %d %d 0 %s - - -%s" % (p, mode, uid, gid, mt(), xattr_str(xs)))
            n = r.randint(0, 6) if depth < 4 else 0
            if is_root:
                n = r.randint(0, 12)
            if edge and r.random() < 0.3:
                n = r.randint(50, 400)
            names = set()
            for _ in range(n):
                if count[0] >= limit:
                    break
                nm = rand_name(r)
                if nm in names or nm in (b".", b"..") or b"/" in nm or not nm or b"\x00" in nm:
                    continue
                names.add(nm)
            for nm in sorted(names):
                node(path + b"/" + nm, depth + 1)
            return
        perm = r.choice([0o644, 0o755, 0o777, 0o4755])
        size, payload, content, digest, rdev = 0, None, None, None, 0
        if t == "reg0":
            mode = 0o100000 | perm
        elif t == "inline":
            mode = 0o100000 | perm
            size = r.choice([1, 15, 64, 2048, 2049, 4095, 4096, 4097, 5000, r.randint(1, 5000),
                             r.randint(1, 2048), r.randint(1800, 2100), r.randint(4096, 5000)])
            content = bytes(r.getrandbits(8) for _ in range(size))
        elif t in ("ext", "huge"):
            mode = 0o100000 | perm
            size = r.choice([1, 4096, 4097, 1 << 20, r.randint(1, 1 << 40)]) if t == "ext" else \
                r.choice([(1 << 43) + 1, 1 << 50, 9000000000000000, (1 << 53), r.randint(1 << 43, 1 << 53)])
            if r.random() < 0.8:
                h = hashlib.sha256(str(r.random()).encode()).hexdigest() if r.random() < 0.8 else "ab" * 32
                payload = (h[:2] + "/" + h[2:]).encode() if r.random() < 0.9 else rand_name(r)
                if r.random() < 0.8:
                    digest = h
        elif t == "sym":
            mode = 0o120777
            n = r.choice([1, 10, 100, 3000, 3900, 4000, 4070, 4095, r.randint(1, 4095),
                          r.randint(3500, 4095), r.randint(3900, 4064)])
            payload = bytes(r.choice(b"abc/.-_xyz") for _ in range(n))
            size = n
        elif t in ("chr", "wh"):
            mode = 0o20000 | perm
            rdev = 0 if t == "wh" else r.choice([1, 10769, 2**32, 2**32 + 5])
            if t == "wh" and r.random() < 0.2:
                size = 1
        elif t == "blk":
            mode = 0o60000 | perm
            rdev = r.choice([0, 107690, 2**33])
        elif t == "fifo":
            mode = 0o10000 | perm
        else:
            mode = 0o140000 | perm
        lines.append("%s %d %o %d %d %d %d %s %s %s %s%s" % (
            p, size, mode, nlink, uid, gid, rdev, mt(), opt(payload), opt(content),
            digest if digest else "-", xattr_str(xs)))
        paths.append(path)

    node(b"", 0, True)
    return "\n".join(lines) + "\n"




def run_case(seed, ref, ours, work):
    r = random.Random(seed * 7 + 1)
    text = gen(seed)
    inp = os.path.join(work, "in-%d.dump" % seed)
    with open(inp, "w", encoding="latin1") as f:
        f.write(text)
    vmin, vmax = r.choice([0, 0, 1]), r.choice([0, 1, 1])
    outs = [os.path.join(work, "%s-%d.cfs" % (tag, seed)) for tag in ("ref", "ours")]
    env = dict(os.environ)
    env.pop("CFS_PARSE_STRICT", None)
    procs = [subprocess.run([tool, "--min-version=%d" % vmin, "--max-version=%d" % vmax,
                             "--from-file", inp, out], capture_output=True, env=env)
             for tool, out in zip((ref, ours), outs)]
    codes = [p.returncode for p in procs]
    if codes[0] != 0 and codes[1] != 0:
        result = "bothfail"
    elif codes[0] != 0 or codes[1] != 0:
        result = "MISMATCH-status ref=%d ours=%d: %s | %s" % (
            codes[0], codes[1], procs[0].stderr.decode(errors="replace").strip()[:200],
            procs[1].stderr.decode(errors="replace").strip()[:200])
    else:
        same = open(outs[0], "rb").read() == open(outs[1], "rb").read()
        result = "same" if same else "MISMATCH-bytes (kept %s)" % inp
    if not result.startswith("MISMATCH"):
        for f in [inp] + outs:
            if os.path.exists(f):
                os.unlink(f)
    return result


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="/work/ref/composefs/build/tools/mkcomposefs")
    ap.add_argument("--ours", default=os.path.join(root, "build", "bin", "mkcomposefs"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--keep-dir", help="where failing inputs are kept (default: a temp dir)")
    args = ap.parse_args()
    for tool in (args.ref, args.ours):
        if not os.access(tool, os.X_OK):
            print("SKIP: %s not found" % tool)
            return 77
    work = args.keep_dir or tempfile.mkdtemp(prefix="cfs-diff-")
    os.makedirs(work, exist_ok=True)
    stats = {}
    for seed in range(args.seed, args.seed + args.count):
        result = run_case(seed, args.ref, args.ours, work)
        key = result.split(" ")[0]
        stats[key] = stats.get(key, 0) + 1
        if result.startswith("MISMATCH"):
            print("seed %d: %s" % (seed, result), flush=True)
    print("cases %d: %s" % (args.count, ", ".join("%s %d" % kv for kv in sorted(stats.items()))))
    return 1 if any(k.startswith("MISMATCH") for k in stats) else 0


if __name__ == "__main__":
    sys.exit(main())
