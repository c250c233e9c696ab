#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Lazy mount benchmark: time from mount to the first byte a workload prints, and the bytes
fetched for it, `cfs oci mount --lazy` against a full `cfs oci pull` + `cfs oci mount --fuse`,
side by side in one run, over a loopback link shaped to a speed.

  bench/lazy.py [--build-dir build] [--image oci:DIR:TAG] [--rates 100e6,1e9] [--runs 1]
                [--compression zstd-chunked] [--lazy-option=--no-elf-prefetch ...]
                [--shaper tc|proxy] [--trace] [--ab LABEL=BUILD_DIR[,OPTION...] ...]

--shaper tc (default): the whole benchmark runs in a network namespace of its own (re-executed
under `unshare --net`), whose loopback (MTU 1500) the kernel shapes with a token bucket
(`tc qdisc … tbf rate R`); the registry is reached directly and its access log counts requests
and response bytes. --shaper proxy: the registry is reached through the Python fault proxy
(tests/testlib/fault_proxy.py) throttled to the rate, as in sessions 5-6; it costs 10-60 ms per
response, more than a link of that speed would.

IMAGE (default: the Debian image tests/integration/test_oci_debian.py caches in
/var/cache/cfs-oci-debian) is pulled into a repository and pushed with its lazy metadata
(`cfs oci push --compression=COMPRESSION`) to a docker-registry started here. For each rate and
workload (`chroot MNT /usr/bin/dpkg --version`, `chroot MNT /usr/bin/apt-get --version`), each
in a fresh repository:
  lazy  cfs oci mount --lazy --no-fill docker://REGISTRY/…  MNT; run the workload
  full  cfs oci pull docker://REGISTRY/…; cfs oci mount --fuse; run the workload
Each mount is unmounted after its workload's first byte, and the next waits until its server has
exited (a lazy mount names the objects it deferred when it stops, beside the next mount otherwise).
Each mount and pull gets a new repository; none is deleted: their files are emptied at the end
and the tree is left in TMPDIR (printed; remove it when nothing is about to be measured), since
a deletion taxes the next inode allocations on ext4 without a journal, as this host's root is,
for minutes: the next benchmark's, or the next lazy.py run's (session 18: ~190 ms of a lazy
mount's daemon CPU right after the deletion of one run's tree).
The time runs from the mount command (the pull, for full) to the workload's first output byte;
the bytes are the response bodies the registry (or the proxy) sent meanwhile (for lazy also the
Range requests alone: file contents, the rest is metadata). Prints both, and lazy / full.
--trace: each lazy run's start-up steps and fetch events (CFS_LAZY_TRACE, docs/lazy.md) on
stderr, in ms from the mount command, with the moment the command returned and the first byte.
Each lazy run's JSON line has the mount command's CPU time (user + system, until it returned:
`mount_command_cpu_ms`) and, with --trace, the serving process's at its last served open
(`daemon_cpu_ms`, from the trace's `served` events); the two are the mount's CPU for the run.
--ab (repeatable): a same-run A/B of lazy mounts on a shared machine: in every run, one lazy
mount with each LABEL's `BUILD_DIR/bin/cfs` (and its extra `cfs oci mount --lazy` options, comma
separated), in the order given and reversed every other run, then the full pull (--build-dir's
cfs); one JSON line per lazy mount, labelled, and a table of each label's lazy seconds (median
and all runs) and ratio to the full pull of the same run. Alternating within a run puts every
binary under the same load. LABEL is lower case (it names a registry repository).
Each LABEL's cfs also pushes the image, to a registry repository of its own (bench/ab-LABEL/img),
which its lazy mounts use: each build mounts the lazy metadata it writes itself (an older build
cannot read a newer object index, and a newer build must be measured with the index it writes).
--registry-memo: each lazy mount's fresh repository already remembers the registry as one
without the referrers API (REPO/cfs-registries/HOST:PORT, docs/lazy.md "The referrers listing"),
as any earlier lazy mount from that registry into the repository leaves it: a mount of a new
image in a repository that has mounted from this registry before (a build before session 16
ignores the file). There is no added round-trip time: this kernel has no sch_netem (tc netem),
so the shaping charges bandwidth only."""
import argparse
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402
from import_layer import truncate_tree  # noqa: E402

NOTLS = "--tls-verify=false"
WORKLOADS = {"dpkg --version": ["/usr/bin/dpkg", "--version"],
             "apt-get --version": ["/usr/bin/apt-get", "--version"]}


umount = r.t.umount


def seed_registry_memo(repo, ref):
    """What a lazy mount from a registry without the referrers API leaves in the repository
    (REPO/cfs-registries/HOST:PORT, src/registry/referrers_memo.h), for `ref` (docker://…)."""
    host = ref[len("docker://"):].split("/", 1)[0]
    os.makedirs(os.path.join(repo, "cfs-registries"), exist_ok=True)
    with open(os.path.join(repo, "cfs-registries", host), "w") as f:
        f.write(f"no-referrers-api {int(time.time())}\n")


def wait_server_gone(repo, timeout=10):
    """Waits (at most `timeout` s) until no process names `repo` on its command line: the
    mount's server has exited. `umount -l` returns before it does, and its exit work (the
    commits a lazy mount defers until it is quiet or stops, session 14) would otherwise share
    the CPUs with the next mount measured."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if repo.encode() in f.read().split(b"\0"):
                        break
            except OSError:
                continue
        else:
            return
        time.sleep(0.005)


def first_byte(mnt, argv):
    """Runs argv chrooted in mnt; returns once it printed its first byte (then drains it)."""
    p = subprocess.Popen(["chroot", mnt, *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    b = p.stdout.read(1)
    p.stdout.read()
    rc = p.wait()
    if not b or rc != 0:
        raise RuntimeError(f"{argv} in {mnt}: exit {rc}, no output")


class TcLink:
    """The loopback of this network namespace, shaped by the kernel to `rate` bit/s; requests are
    read from the registry's access log."""
    LINE = re.compile(r'"(\w+) (\S+) HTTP/[\d.]+" (\d+) (\d+|-)')

    def __init__(self, reg, rate):
        self.reg = reg
        subprocess.run(["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate",
                        f"{int(rate)}bit", "burst", "64kb", "latency", "200ms"], check=True)

    def ref(self, name):
        return self.reg.ref(name)

    def mark(self):
        return len(self.reg.read_log())

    def requests(self, since):
        out = []
        for line in self.reg.read_log()[since:].splitlines():
            m = self.LINE.search(line)
            if m:
                out.append({"method": m[1], "path": m[2], "range": m[3] == "206",
                            "sent": int(m[4]) if m[4] != "-" else 0})
        return out

    def close(self):
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)


class ProxyLink:
    """The registry behind the Python fault proxy throttled to `rate` bit/s."""

    def __init__(self, reg, rate):
        self.proxy = r.FaultProxy(reg.host, throttle_bps=rate)

    def ref(self, name):
        return self.proxy.ref(name)

    def mark(self):
        return time.time()

    def requests(self, since):
        return self.proxy.requests(since=since)

    def close(self):
        self.proxy.close()


def print_trace(path, wall0, mounted, first, wname):
    """The CFS_LAZY_TRACE events of one lazy run, in ms from the mount command."""
    events = []
    with open(path) as f:
        for line in f:
            t, _, event = line.rstrip("\n").partition(" ")
            events.append((float(t), event))
    events += [(mounted, "(mount command returned)"), (first, "(first byte of output)")]
    print(f"trace of {wname}:", file=sys.stderr)
    for t, event in sorted(events):
        print(f"  {(t - wall0) * 1e3:8.1f} ms  {event}", file=sys.stderr)
    print_opens(events, wall0, first)


def daemon_cpu_ms(path):
    """The serving process's CPU time (user + system, ms) at its last `served` event (the
    trace's `cpu USER+SYS ms`), or None."""
    last = None
    with open(path) as f:
        for line in f:
            m = re.search(r" served \S+ cpu ([\d.]+)\+([\d.]+) ms", line)
            if m:
                last = round(float(m[1]) + float(m[2]), 1)
    return last


def print_opens(events, wall0, first):
    """The critical path of the workload's opens: for each object an open waited for (in the
    order of the opens), when it was asked for, when a fetch thread took it (`claimed`, or the
    request of the batch that brought it), when its Range request went out, when the response's
    first bytes arrived, when its bytes were verified, when the open was served, and when its fetch thread was free again (`committed`);
    the last column says what the open waited on longest: a thread, the link (request to
    verified), or neither (served from a verified object)."""
    obj = {}
    for t, event in sorted(events):
        parts = event.split(" ")
        if len(parts) < 2 or len(parts[1]) != 12:
            continue
        name, hx = parts[0], parts[1]
        o = obj.setdefault(hx, {})  # ("range done HEX" has no object in parts[1]: skipped)
        if name == "batched":  # neighbour of parts[2]: claimed with its batch's request
            o.setdefault("claimed", t)
            o["via"] = parts[2] if len(parts) > 2 else "?"
            continue
        o.setdefault(name, t)
    for hx, o in obj.items():
        if "via" in o and o["via"] in obj and "range" in obj[o["via"]]:
            o.setdefault("range", obj[o["via"]]["range"])
            o.setdefault("response", obj[o["via"]].get("response"))
            o.setdefault("committed", obj[o["via"]].get("committed"))
    opens = sorted((o["open"], hx) for hx, o in obj.items() if "open" in o)
    ms = lambda t: f"{(t - wall0) * 1e3:7.1f}" if t else "      -"  # noqa: E731
    print("  object        open  claimed    range response verified   served committed  waited on",
          file=sys.stderr)
    for t_open, hx in opens:
        o = obj[hx]
        served = o.get("served") or o.get("failed")
        waits = {}
        if o.get("claimed") and o["claimed"] > t_open:
            waits["thread"] = o["claimed"] - t_open
        if o.get("verified") and o.get("range"):
            waits["link"] = o["verified"] - max(o["range"], t_open)
        why = max(waits, key=waits.get) if waits and max(waits.values()) > 0 else "-"
        via = f" (batch {o['via'][:6]})" if "via" in o else ""
        print(f"  {hx} {ms(t_open)}  {ms(o.get('claimed'))}  {ms(o.get('range'))}  "
              f"{ms(o.get('response'))}  {ms(o.get('verified'))}  {ms(served)}  "
              f"{ms(o.get('committed'))}  {why}{via}",
              file=sys.stderr)
    print(f"  first byte {ms(first)} ms", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--rates", default="100e6,1e9", help="link speeds in bit/s")
    ap.add_argument("--compression", default="zstd-chunked")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--lazy-option", action="append", default=[],
                    help="passed to cfs oci mount --lazy (e.g. --no-elf-prefetch for an A/B)")
    ap.add_argument("--trace", action="store_true",
                    help="print the lazy mount's start-up steps and fetch events (CFS_LAZY_TRACE) "
                         "in ms from the mount command, with the workload's first byte")
    ap.add_argument("--shaper", choices=("tc", "proxy"), default="tc",
                    help="tc: kernel shaping of a private loopback (default); proxy: the "
                         "throttled Python fault proxy")
    ap.add_argument("--ab", action="append", default=[], metavar="LABEL=BUILD_DIR[,OPTION...]",
                    help="same-run A/B: a lazy mount with this build (and options) in every run")
    ap.add_argument("--registry-memo", action="store_true",
                    help="each lazy mount's repository remembers the registry as one without "
                         "the referrers API (as an earlier mount from it leaves it)")
    args = ap.parse_args()
    if args.shaper == "tc":
        if os.environ.get("CFS_BENCH_LAZY_NETNS") != "1":
            env = dict(os.environ, CFS_BENCH_LAZY_NETNS="1")
            os.execvpe("unshare", ["unshare", "--net", sys.executable, *sys.argv], env)
        subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True)
    cfs = os.path.join(os.path.abspath(args.build_dir), "bin", "cfs")

    def run(*a, env=None, binary=None):
        return subprocess.run([binary or cfs, *a], check=True, capture_output=True, env=env)

    # The lazy variants of each run: (label, cfs binary, extra mount options).
    variants = [("lazy", cfs, list(args.lazy_option))]
    if args.ab:
        variants = []
        for spec in args.ab:
            label, _, rest = spec.partition("=")
            # The label names a registry repository (bench/ab-LABEL/img): its grammar.
            if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", label):
                raise SystemExit(f"--ab {spec}: LABEL must be lower-case letters and digits "
                                 "(a registry repository name component)")
            bdir, *opts = rest.split(",")
            variants.append((label, os.path.join(os.path.abspath(bdir), "bin", "cfs"),
                             [*args.lazy_option, *opts]))

    work = tempfile.mkdtemp(prefix="cfs-bench-lazy-")
    reg = r.Registry(access_log=args.shaper == "tc")
    reg.start()
    try:
        src = os.path.join(work, "src")
        run("repo", "init", "--repo", src, "--insecure")
        run("oci", "pull", "--repo", src, args.image, "img")
        run("oci", "push", "--repo", src, NOTLS, f"--compression={args.compression}", "img",
            reg.ref("bench/img:1"))
        refs = {"lazy": "bench/img:1", "full": "bench/img:1"}
        if args.ab:
            for mode, binary, _ in variants:
                refs[mode] = f"bench/ab-{mode}/img:1"
                run("oci", "push", "--repo", src, NOTLS, f"--compression={args.compression}",
                    "img", reg.ref(refs[mode]), binary=binary)
        mnt = os.path.join(work, "mnt")
        os.mkdir(mnt)
        rows = []
        serial = itertools.count()
        for rate in [float(x) for x in args.rates.split(",")]:
            link = (TcLink if args.shaper == "tc" else ProxyLink)(reg, rate)
            try:
                for wname, argv in WORKLOADS.items():
                    for i in range(args.runs):
                        res = {}
                        # Reversed every other run: a fixed order charges one label the
                        # position's cost (the first mount after the full pull's unmount; seen
                        # as a 0.2 s "win" in session 18 that an ABBA order took back).
                        order = variants if i % 2 == 0 else variants[::-1]
                        for mode, binary, lazy_opts in [*order, ("full", cfs, [])]:
                            lazy = mode != "full"
                            # A new repository each time, none deleted before the end: on
                            # this host's ext4 (no journal) every inode allocation for 1-5
                            # minutes after a large deletion scans the deleted inodes, and
                            # deleting the last full pull's 5,157 objects here cost the next
                            # lazy mount 10-40 ms of CPU (bench/README.md, session 13).
                            repo = os.path.join(work, f"repo-{mode}-{next(serial)}")
                            run("repo", "init", "--repo", repo, "--insecure")
                            ref = link.ref(refs[mode])
                            if lazy and args.registry_memo:
                                seed_registry_memo(repo, ref)
                            since = link.mark()
                            trace = os.path.join(work, "trace")
                            env = dict(os.environ, CFS_LAZY_TRACE=trace) if args.trace else None
                            if os.path.exists(trace):
                                os.unlink(trace)
                            t0 = time.monotonic()
                            wall0 = time.time()
                            if lazy:
                                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                                run("oci", "mount", "--lazy", "--no-fill", *lazy_opts,
                                    "--repo", repo, NOTLS, ref, mnt, env=env, binary=binary)
                                mounted = time.time()
                                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                                cmd_cpu = ((ru1.ru_utime - ru0.ru_utime)
                                           + (ru1.ru_stime - ru0.ru_stime)) * 1e3
                            else:
                                run("oci", "pull", "--repo", repo, NOTLS, ref, "img")
                                run("oci", "mount", "--fuse", "--repo", repo, "img", mnt)
                            try:
                                first_byte(mnt, argv)
                                secs = time.monotonic() - t0
                            finally:
                                umount(mnt)
                                wait_server_gone(repo)
                            daemon_cpu = None
                            if lazy and args.trace:
                                print_trace(trace, wall0, mounted, wall0 + secs,
                                            f"{wname} ({mode})")
                                daemon_cpu = daemon_cpu_ms(trace)
                            reqs = link.requests(since)
                            sent = sum(e["sent"] for e in reqs)
                            res[mode] = (secs, sent)
                            if lazy:  # file contents: the Range requests
                                res["ranges " + mode] = (len([e for e in reqs if e["range"]]),
                                                         sum(e["sent"] for e in reqs
                                                             if e["range"]),
                                                         len(reqs))
                                res["cpu " + mode] = (cmd_cpu, daemon_cpu)
                        rows.append((rate, wname, res))
                        for mode, _, _ in variants:
                            label = {} if mode == "lazy" else {"label": mode}
                            print(json.dumps({"rate_bps": rate, "workload": wname, **label,
                                              "lazy_s": round(res[mode][0], 3),
                                              "full_s": round(res["full"][0], 3),
                                              "lazy_bytes": res[mode][1],
                                              "full_bytes": res["full"][1],
                                              "lazy_range_requests": res["ranges " + mode][0],
                                              "lazy_range_bytes": res["ranges " + mode][1],
                                              "lazy_requests": res["ranges " + mode][2],
                                              "mount_command_cpu_ms":
                                                  round(res["cpu " + mode][0], 1),
                                              **({"daemon_cpu_ms": res["cpu " + mode][1]}
                                                 if res["cpu " + mode][1] is not None else {})}),
                                  flush=True)
            finally:
                link.close()
        if args.ab:
            print(f"\n{'link':>10} {'workload':<18} {'build':<12} {'lazy s median':>13} "
                  f"{'ratio median':>12}  runs (lazy s / ratio)")
            for rate in sorted({x[0] for x in rows}):
                for wname in WORKLOADS:
                    for mode, _, _ in variants:
                        got = [(res[mode][0], res[mode][0] / res["full"][0])
                               for rt, wn, res in rows if rt == rate and wn == wname]
                        secs = sorted(g[0] for g in got)
                        ratios = sorted(g[1] for g in got)
                        print(f"{rate / 1e6:>7.0f}Mb/s {wname:<18} {mode:<12} "
                              f"{secs[len(secs) // 2]:>13.3f} {ratios[len(ratios) // 2]:>12.1%}  "
                              + " ".join(f"{a:.3f}/{b:.1%}" for a, b in got))
            return
        print(f"\n{'link':>10} {'workload':<18} {'lazy s':>8} {'full s':>8} {'ratio':>6} "
              f"{'lazy MB':>9} {'full MB':>9} {'ratio':>6} {'ranges':>6}")
        for rate, wname, res in rows:
            (ls, lb), (fs, fb) = res["lazy"], res["full"]
            print(f"{rate / 1e6:>7.0f}Mb/s {wname:<18} {ls:>8.2f} {fs:>8.2f} {ls / fs:>6.1%} "
                  f"{lb / 1e6:>9.2f} {fb / 1e6:>9.2f} {lb / fb:>6.1%} "
                  f"{res['ranges lazy'][0]:>6}")
    finally:
        umount(os.path.join(work, "mnt"))
        reg.stop()
        truncate_tree(work)
        print(f"left emptied: {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
