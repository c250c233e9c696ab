#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Differential test of the image writer against upstream composefs 1.0.8.

Dumps (default): random composefs dumps (odd names, xattrs that share and escape, whiteouts,
hardlinks, inline content at block-boundary sizes, long symlinks, files over 8 TiB, ...) built
with `mkcomposefs --from-file`.

Directories (--dirs): random trees written to a tmpfs (/dev/shm; tmpfs keeps xattrs of any
size, ext4 only one block's worth) with every file type, modes, owners, nanosecond mtimes,
hardlinks, and xattrs in the user., trusted. (overlay names included) and security.
namespaces, a share of them sized around composefs' per-inode budget (32,700..32,800 bytes
in total, several xattrs, long keys), built with `mkcomposefs DIR` and random options. Owners,
devices and trusted. xattrs need root; without it those are left out.

Each input is built with the reference mkcomposefs and with ours and the images are compared
byte for byte: both tools must succeed with identical bytes, or both must fail.

The reference is NOT built here: point --ref at an existing composefs 1.0.8 build (for example
one made outside the repository from its public source). Exits 77 (skip) when either tool is
missing.

  scripts/differential-writer.py [--dirs] --count 2000 [--seed 0] [--ref PATH] [--ours PATH]
"""
import argparse
import errno
import hashlib
import os
import random
import shutil
import stat
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
    if r.random() < 0.03:
        return near_limit_xattrs(r, [k for k in KEY_POOL if k.startswith(("user.", "trusted."))],
                                 printable=True)
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



# ---------------------------------------------------------------------------------------------
# Directory sources

BUDGET = 32767  # composefs' per-inode xattr budget: 12 + sum(7 + key + value) (format §2.1)
DIR_KEYS_USER = ["user.a", "user.b", "user.mime_type", "user.overlay.opaque", "user.overlay.whiteout"]
DIR_KEYS_ROOT = ["trusted.a", "trusted.overlay.x", "trusted.overlay.opaque",
                 "trusted.overlay.metacopy", "trusted.overlay.overlay.y", "security.capability",
                 "security.selinux", "trusted.overlay.redirect"]


def fs_name(r):
    while True:
        n = rand_name(r)
        if n and n not in (b".", b"..") and b"/" not in n and b"\x00" not in n:
            return n


def near_limit_xattrs(r, keys, printable=False):
    """A few xattrs whose budget total lands in 32,700..32,800 (some just over the limit).
    `printable`: big values of one printable byte, so a dump line stays under 64 KiB."""
    n = r.choice([1, 1, 2, 3, 5])
    chosen = []
    for _ in range(n):
        if r.random() < 0.3:
            k = "user." + "k" * r.randint(1, 250)  # long keys, up to 255 bytes
        else:
            k = r.choice(keys)
        if k not in [c for c, _ in chosen]:
            chosen.append((k, 0))
    fixed = 12 + sum(7 + len(k) for k, _ in chosen)
    target = r.choice([32700, 32740, 32766, 32767, 32767, 32768, 32769, 32800,
                       r.randint(32700, 32800)])
    room = max(0, target - fixed)
    sizes = [room // len(chosen)] * len(chosen)
    sizes[-1] += room - sum(sizes)
    def value(v):
        if v < 64:
            return bytes(r.getrandbits(8) for _ in range(v))
        return bytes([r.randint(0x21, 0x7E) if printable else r.getrandbits(8)]) * v
    return {k: value(v) for (k, _), v in zip(chosen, sizes)}


def dir_xattrs(r, root_user):
    keys = DIR_KEYS_USER + (DIR_KEYS_ROOT if root_user else [])
    if r.random() < 0.06:
        return near_limit_xattrs(r, keys)
    xs = {}
    for _ in range(r.choice([0, 0, 0, 1, 2, 3, 6])):
        k = r.choice(keys) if r.random() < 0.7 else "user." + fs_name(r).decode("latin1")
        if len(k.encode("latin1")) <= 255:
            xs[k] = rand_val(r, False)
    return xs


def set_xattrs(path, xs):
    for k, v in xs.items():
        try:
            os.setxattr(path, k.encode("latin1"), v, follow_symlinks=False)
        except OSError as e:
            # user.* is refused on symlinks and devices by the kernel; skip what cannot exist
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL):
                raise


def gen_dir(seed, root, root_user):
    """Writes a random tree at `root` (must exist); returns mkcomposefs options to use."""
    r = random.Random(seed)
    root = os.fsencode(root)
    files = []
    count = [0]
    limit = r.choice([5, 20, 60])

    def meta(path, is_link=False):
        if root_user:
            os.lchown(path, r.choice([0, 1000, 65534]), r.choice([0, 100, 65534]))
        if not is_link:
            mode = os.lstat(path).st_mode
            perm = r.choice([0o644, 0o755, 0o600, 0o4755, 0o1777]) if not stat.S_ISDIR(mode) \
                else r.choice([0o755, 0o700, 0o1777])
            os.chmod(path, perm)
        set_xattrs(path, dir_xattrs(r, root_user))

    def times(path):
        ns = r.choice([0, r.randint(0, 2**33) * 10**9 + r.randint(0, 999999999)])
        os.utime(path, ns=(ns, ns), follow_symlinks=False)

    def fill(d, depth):
        names = set()
        for _ in range(r.randint(0, 8) if depth < 3 else 0):
            if count[0] >= limit:
                break
            n = fs_name(r)
            if n in names:
                continue
            names.add(n)
            count[0] += 1
            p = os.path.join(d, n)
            t = r.choices(["dir", "reg0", "inline", "ext", "sym", "fifo", "sock", "chr", "wh",
                           "blk", "hard"], [8, 3, 8, 10, 5, 2, 1, 2, 2, 1, 2])[0]
            if t in ("chr", "wh", "blk", "sock") and not root_user:
                t = "fifo"
            if t == "hard" and not files:
                t = "inline"
            if t == "dir":
                os.mkdir(p)
                fill(p, depth + 1)
                meta(p)
            elif t == "sym":
                os.symlink(bytes(r.choice(b"abc/.-_xyz") for _ in range(
                    r.choice([1, 10, 100, r.randint(1, 4000)]))), p)
                meta(p, True)
            elif t == "hard":
                os.link(r.choice(files), p)
            else:
                if t in ("reg0", "inline", "ext"):
                    size = {"reg0": 0, "inline": r.choice([1, 63, 64]),
                            "ext": r.choice([65, 4096, 4097, r.randint(65, 300000)])}[t]
                    with open(p, "wb") as f:
                        f.write(bytes([r.getrandbits(8)]) * size if size > 1000 else
                                bytes(r.getrandbits(8) for _ in range(size)))
                elif t == "fifo":
                    os.mkfifo(p)
                elif t == "sock":
                    os.mknod(p, stat.S_IFSOCK | 0o644)
                else:
                    dev = 0 if t == "wh" else os.makedev(r.randint(1, 300), r.randint(0, 70000))
                    os.mknod(p, (stat.S_IFBLK if t == "blk" else stat.S_IFCHR) | 0o644, dev)
                meta(p)
                files.append(p)
            times(p)

    fill(root, 0)
    meta(root)
    times(root)
    opts = []
    if r.random() < 0.3:
        opts.append("--use-epoch")
    if r.random() < 0.1:
        opts.append("--skip-devices")
    x = r.random()
    if x < 0.1:
        opts.append("--skip-xattrs")
    elif x < 0.2:
        opts.append("--user-xattrs")
    opts += ["--min-version=%d" % r.choice([0, 0, 1]), "--max-version=%d" % r.choice([0, 1, 1])]
    return opts


def run_dir_case(seed, ref, ours, work, root_user):
    src = os.path.join(work, "src-%d" % seed)
    os.mkdir(src)
    try:
        opts = gen_dir(seed, src, root_user)
        outs = [os.path.join(work, "%s-%d.cfs" % (tag, seed)) for tag in ("ref", "ours")]
        procs = [subprocess.run([tool] + opts + [src, out], capture_output=True)
                 for tool, out in zip((ref, ours), outs)]
        codes = [p.returncode for p in procs]
        if codes[0] != 0 and codes[1] != 0:
            result = "bothfail"
        elif codes[0] != 0 or codes[1] != 0:
            result = "MISMATCH-status ref=%d ours=%d %s: %s | %s" % (
                codes[0], codes[1], " ".join(opts),
                procs[0].stderr.decode(errors="replace").strip()[:200],
                procs[1].stderr.decode(errors="replace").strip()[:200])
        else:
            same = open(outs[0], "rb").read() == open(outs[1], "rb").read()
            result = "same" if same else "MISMATCH-bytes %s (rerun with --dirs --seed %d --count 1)" % (
                " ".join(opts), seed)
        for f in outs:
            if os.path.exists(f):
                os.unlink(f)
        return result
    finally:
        shutil.rmtree(src, ignore_errors=True)


def tmpfs_dir():
    """A directory on tmpfs for --dirs sources, or None."""
    try:
        if os.statvfs("/dev/shm") and subprocess.run(
                ["stat", "-f", "-c", "%T", "/dev/shm"], capture_output=True,
                text=True).stdout.strip() == "tmpfs":
            return tempfile.mkdtemp(prefix="cfs-diff-dirs-", dir="/dev/shm")
    except OSError:
        pass
    return None


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
    ap.add_argument("--ref", default=os.environ.get(
        "CFS_REF_MKCOMPOSEFS", "/work/ref/composefs/build/tools/mkcomposefs"))
    ap.add_argument("--ours", default=os.path.join(root, "build", "bin", "mkcomposefs"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--keep-dir", help="where failing inputs are kept (default: a temp dir)")
    ap.add_argument("--dirs", action="store_true", help="random directories instead of dumps")
    args = ap.parse_args()
    for tool in (args.ref, args.ours):
        if not os.access(tool, os.X_OK):
            print("SKIP: %s not found" % tool)
            return 77
    if args.dirs:
        work = tmpfs_dir()
        if work is None:
            print("SKIP: /dev/shm is not a tmpfs (large xattrs need one)")
            return 77
        root_user = os.geteuid() == 0
        try:
            stats = {}
            for seed in range(args.seed, args.seed + args.count):
                result = run_dir_case(seed, args.ref, args.ours, work, root_user)
                key = result.split(" ")[0]
                stats[key] = stats.get(key, 0) + 1
                if result.startswith("MISMATCH"):
                    print("seed %d: %s" % (seed, result), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("directories %d%s: %s" % (args.count, "" if root_user else " (not root: no owners, "
                                        "devices or trusted xattrs)",
                                        ", ".join("%s %d" % kv for kv in sorted(stats.items()))))
        return 1 if any(k.startswith("MISMATCH") for k in stats) else 0
    work = args.keep_dir or tempfile.mkdtemp(prefix="cfs-diff-")
    os.makedirs(work, exist_ok=True)
    stats = {}
    try:
        for seed in range(args.seed, args.seed + args.count):
            result = run_case(seed, args.ref, args.ours, work)
            key = result.split(" ")[0]
            stats[key] = stats.get(key, 0) + 1
            if result.startswith("MISMATCH"):
                print("seed %d: %s" % (seed, result), flush=True)
    finally:
        if not args.keep_dir:  # the scratch directory was ours: leave nothing in /tmp
            shutil.rmtree(work, ignore_errors=True)
    print("cases %d: %s" % (args.count, ", ".join("%s %d" % kv for kv in sorted(stats.items()))))
    return 1 if any(k.startswith("MISMATCH") for k in stats) else 0


if __name__ == "__main__":
    sys.exit(main())
