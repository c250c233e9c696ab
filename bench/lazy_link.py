#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What limits the rate at which a lazy mount's loader closure arrives: the closure's one
request of several ranges, replayed by curl alone, beside the lazy mount fetching it, over
bench/lazy.py's shaped loopback.

  bench/lazy_link.py [--build-dir build] [--image oci:DIR:TAG] [--rate 1e9] [--runs 9]
                     [--program /usr/bin/apt-get]

Set-up as bench/lazy.py's (a network namespace of its own under `unshare --net`, its loopback
(MTU 1500) shaped by `tc qdisc … tbf rate R burst 64kb latency 200ms`, Debian's docker-registry
on 127.0.0.1, the image pushed with `cfs oci push --compression=zstd-chunked`). One lazy mount
runs PROGRAM --version under `strace -f` to capture the Range header of its largest request (the
program's loader closure); then each run, alternating the orders:
  curl multi     the same request (same blob, same ranges) by curl, body to /dev/null
  curl single    one range of the same number of bytes from the first range's offset
  curl + 2 hogs  the multi-range request while two busy loops take both cores
  cfs default    a lazy mount running PROGRAM --version; the closure's time from its `ranges`
                 trace event to `ranges done` (CFS_LAZY_TRACE), and the registry's socket's
                 `rwnd_limited` and `busy` (tcp_info, `ss -ti`, read after the first byte: the
                 time the registry could not send because our receive window was full)
  cfs rmem8M     the same with this namespace's net.ipv4.tcp_rmem default raised from 128 KiB
                 to 8 MiB (autotuning kept): a receive buffer that holds the whole closure
  cfs open-only  a lazy mount whose PROGRAM is only opened and one byte read (the open asks for
                 the closure; no loader maps the libraries beside the fetch)
curl's times are `time_starttransfer` (first byte) and `time_total`; the registry's CPU per
curl multi-range GET is its /proc utime+stime around the request (clock ticks: the mean over
the runs is the number). Prints one JSON line per measurement and the medians, and for rmem8M
the paired differences from default. Needs root, strace, curl, ss and tc (Debian packages
strace, curl, iproute2). bench/README.md, session 14 (linkrate), has what it found."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
sys.path.insert(0, HERE)
import cfs_registry as r  # noqa: E402
import lazy as L  # noqa: E402

NOTLS = "--tls-verify=false"
RMEM = {"default": "4096 131072 33554432", "rmem8M": "4096 8388608 33554432"}


def registry_pid():
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0].endswith(b"docker-registry"):
                        return p
            except OSError:
                continue
    raise RuntimeError("no docker-registry process")


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e3 / os.sysconf("SC_CLK_TCK")


def sender_info(port):
    """tcp_info of the registry's side of the connection that sent the most bytes."""
    out = subprocess.run(["ss", "-tinH", "state", "established", f"sport = :{port}"],
                         check=True, capture_output=True, text=True).stdout
    best = {}
    for line in out.splitlines():
        acked = re.search(r"\bbytes_acked:(\d+)", line)
        if acked and int(acked[1]) > best.get("bytes_acked", -1):
            best = {"bytes_acked": int(acked[1])}
            for key in ("busy", "rwnd_limited"):
                m = re.search(rf"\b{key}:(\d+)ms", line)
                best[key + "_ms"] = int(m[1]) if m else 0
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--rate", type=float, default=1e9, help="link speed in bit/s")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--program", default="/usr/bin/apt-get")
    args = ap.parse_args()
    if os.environ.get("CFS_BENCH_LAZY_NETNS") != "1":
        env = dict(os.environ, CFS_BENCH_LAZY_NETNS="1")
        os.execvpe("unshare", ["unshare", "--net", sys.executable, *sys.argv], env)
    subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True)
    cfs = os.path.join(os.path.abspath(args.build_dir), "bin", "cfs")
    argv = [args.program, "--version"]

    def run(*a, env=None):
        return subprocess.run([cfs, *a], check=True, capture_output=True, env=env)

    work = tempfile.mkdtemp(prefix="cfs-bench-link-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    reg = r.Registry()
    reg.start()
    serial = iter(range(1 << 30))

    def lazy_mount(env=None, wrap=()):
        repo = os.path.join(work, f"repo-{next(serial)}")
        run("repo", "init", "--repo", repo, "--insecure")
        cmd = [cfs, "oci", "mount", "--lazy", "--no-fill", "--repo", repo, NOTLS,
               reg.ref("bench/img:1"), mnt]
        # strace -f follows the server the mount command leaves running: wait for the mount only.
        p = subprocess.Popen([*wrap, *cmd], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        if wrap:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                if time.monotonic() > deadline or p.poll() not in (None, 0):
                    raise RuntimeError("the lazy mount under strace did not come up")
                time.sleep(0.01)
        elif p.wait() != 0:
            raise RuntimeError("cfs oci mount --lazy failed")
        return repo, p

    try:
        src = os.path.join(work, "src")
        run("repo", "init", "--repo", src, "--insecure")
        run("oci", "pull", "--repo", src, args.image, "img")
        run("oci", "push", "--repo", src, NOTLS, "--compression=zstd-chunked", "img",
            reg.ref("bench/img:1"))
        L.TcLink(reg, args.rate)  # the loopback shaped as bench/lazy.py shapes it
        port = int(reg.host.rsplit(":", 1)[1])

        # The closure's request, from the daemon's own send() of it.
        log = os.path.join(work, "strace")
        repo, p = lazy_mount(wrap=("strace", "-f", "-qq", "-e", "trace=sendto,sendmsg,write",
                                   "-s", "1000000", "-o", log))
        L.first_byte(mnt, argv)
        L.umount(mnt)
        L.wait_server_gone(repo)
        p.wait()
        path, spec = None, ""
        with open(log) as f:
            for line in f:
                m = re.search(r"GET (/v2/\S+/blobs/\S+) HTTP/1.1\\r\\n.*?Range: bytes=([0-9,-]+)",
                              line)
                if m and len(m[2]) > len(spec):
                    path, spec = m[1], m[2]
        spans = [tuple(map(int, s.split("-"))) for s in spec.split(",")]
        total = sum(b - a + 1 for a, b in spans)
        print(f"closure request: {len(spans)} ranges, {total} bytes of {path}", flush=True)
        url = f"http://{reg.host}{path}"
        single = f"{spans[0][0]}-{spans[0][0] + total - 1}"
        rpid = registry_pid()

        def curl(rng, hogs=0):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(hogs)]
            try:
                if busy:
                    time.sleep(0.05)
                c0 = cpu_ms(rpid)
                out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Range: bytes={rng}",
                                      "-w", "%{time_starttransfer} %{time_total} %{size_download}",
                                      url], check=True, capture_output=True, text=True).stdout
                time.sleep(0.02)  # the registry's last writes after curl's last byte
                reg_cpu = cpu_ms(rpid) - c0
            finally:
                for h in busy:
                    h.kill()
                    h.wait()
            first, whole, size = map(float, out.split())
            return {"first_byte_ms": round(first * 1e3, 2), "ms": round(whole * 1e3, 2),
                    "bytes": int(size), "registry_cpu_ms": reg_cpu}

        def closure_times(trace):
            start = done = None
            with open(trace) as f:
                for line in f:
                    t, _, event = line.rstrip("\n").partition(" ")
                    m = re.match(r"ranges \S+ (\d+) bytes", event)
                    if m and int(m[1]) == total and start is None:
                        start = float(t)
                    elif event.startswith("ranges done") and start is not None and done is None:
                        done = float(t)
            return start, done

        def cfs_closure(variant):
            if variant == "open-only":
                return cfs_open_only()
            subprocess.run(["sysctl", "-qw", f"net.ipv4.tcp_rmem={RMEM[variant]}"], check=True)
            trace = os.path.join(work, "trace")
            if os.path.exists(trace):
                os.unlink(trace)
            t0 = time.monotonic()
            repo, _ = lazy_mount(env=dict(os.environ, CFS_LAZY_TRACE=trace))
            try:
                L.first_byte(mnt, argv)
                secs = time.monotonic() - t0
                info = sender_info(port)
            finally:
                L.umount(mnt)
                L.wait_server_gone(repo)
                subprocess.run(["sysctl", "-qw", f"net.ipv4.tcp_rmem={RMEM['default']}"],
                               check=True)
            start, done = closure_times(trace)
            return {"ms": round((done - start) * 1e3, 1), "first_byte_s": round(secs, 3), **info}

        def cfs_open_only():
            """The same closure with nothing else running: one byte of PROGRAM read (its open
            asks for the closure), no loader mapping the libraries as they arrive."""
            trace = os.path.join(work, "trace")
            if os.path.exists(trace):
                os.unlink(trace)
            repo, _ = lazy_mount(env=dict(os.environ, CFS_LAZY_TRACE=trace))
            try:
                with open(mnt + args.program, "rb") as f:
                    f.read(1)
                deadline = time.monotonic() + 30
                while closure_times(trace)[1] is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                info = sender_info(port)
            finally:
                L.umount(mnt)
                L.wait_server_gone(repo)
            start, done = closure_times(trace)
            return {"ms": round((done - start) * 1e3, 1), "first_byte_s": 0, **info}

        kinds = ("curl multi", "curl single", "curl + 2 hogs", "cfs default", "cfs rmem8M",
                 "cfs open-only")
        res = {k: [] for k in kinds}
        for i in range(args.runs):
            order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
            for kind in order:
                if kind == "curl multi":
                    x = curl(spec)
                elif kind == "curl single":
                    x = curl(single)
                elif kind == "curl + 2 hogs":
                    x = curl(spec, hogs=2)
                else:
                    x = cfs_closure(kind.split()[1])
                res[kind].append(x)
                print(json.dumps({"run": i, "kind": kind, **x}), flush=True)
        mbps = total / 1e3
        print(f"\n{'kind':<14} {'median ms':>9} {'MB/s':>6} {'first byte ms':>13}  other")
        for kind in kinds:
            xs = res[kind]
            ms = statistics.median(x["ms"] for x in xs)
            other = ""
            if kind.startswith("curl"):
                fb = f"{statistics.median(x['first_byte_ms'] for x in xs):13.1f}"
                other = (f"registry CPU {statistics.mean(x['registry_cpu_ms'] for x in xs):.1f} "
                         f"ms per request (mean)")
            else:
                fb = f"{'-':>13}"
                rw = [x.get("rwnd_limited_ms", 0) for x in xs]
                other = (f"rwnd_limited ms median {statistics.median(rw)}, nonzero in "
                         f"{sum(1 for v in rw if v)}/{len(rw)} (max {max(rw)})")
                if kind != "cfs open-only":
                    other += (f"; {args.program} first byte "
                              f"{statistics.median(x['first_byte_s'] for x in xs):.3f} s")
            print(f"{kind:<14} {ms:9.1f} {mbps / ms:6.1f} {fb}  {other}")
        diffs = sorted(a["ms"] - b["ms"] for a, b in zip(res["cfs rmem8M"], res["cfs default"]))
        print(f"cfs rmem8M - default, paired: median {statistics.median(diffs):+.1f} ms, lower in "
              f"{sum(1 for d in diffs if d < 0)}/{len(diffs)}: {[round(d, 1) for d in diffs]}")
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
        L.umount(mnt)
        reg.stop()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
