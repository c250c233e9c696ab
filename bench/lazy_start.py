#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A lazy mount's start-up alone: the time from `cfs oci mount --lazy` to each of its
CFS_LAZY_TRACE start-up events (docs/lazy.md) and to the command's return, per build, side by
side in one run.

  bench/lazy_start.py [--runs 7] [--rate 1e9] [--image oci:DIR:TAG] [--registry-memo]
                      [--answer-delay S] [--push-with LABEL] --ab LABEL=BUILD_DIR ...

The image (default: the Debian image of bench/lazy.py) is pulled and pushed with its lazy metadata
(zstd:chunked; by the first build, or --push-with's: what a mount reads depends on what the push
attached) to a docker-registry started here, in a network namespace of its own whose loopback the
kernel shapes to RATE bit/s (as bench/lazy.py --shaper tc). Each run mounts once with each
build, in the order given and reversed every other run (a fresh repository each time,
`--no-fill`; none deleted: the tree is emptied and left in TMPDIR at the end, as bench/lazy.py
leaves its own), unmounts, waits for the server to exit, and reads the trace; the table gives
each event's median and range over the runs, in ms from the mount command. Alternating the builds within a run puts them under the same load; nothing is
read from the mount, so only the start-up is timed (bench/lazy.py times a workload too).
--registry-memo: each fresh repository remembers the registry as one without the referrers API,
as bench/lazy.py --registry-memo. --answer-delay S: the mounts reach the registry through the
fault proxy (tests/testlib/fault_proxy.py), which waits S seconds before each answer: a registry
a round trip of S away (this kernel has no netem), for what a request fewer is worth there."""
import argparse
import itertools
import os
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
from import_layer import truncate_tree  # noqa: E402

NOTLS = "--tls-verify=false"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rate", type=float, default=1e9, help="link speed in bit/s")
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--ab", action="append", required=True, metavar="LABEL=BUILD_DIR")
    ap.add_argument("--push-with", metavar="LABEL",
                    help="the build that pulls and pushes the image (default: the first --ab); "
                         "what a mount reads depends on what the push attached")
    ap.add_argument("--answer-delay", type=float, default=0, metavar="S",
                    help="reach the registry through the fault proxy, each answer S s late")
    ap.add_argument("--registry-memo", action="store_true",
                    help="each repository remembers the registry as one without the referrers "
                         "API (as an earlier mount from it leaves it)")
    args = ap.parse_args()
    if os.environ.get("CFS_BENCH_LAZY_NETNS") != "1":
        env = dict(os.environ, CFS_BENCH_LAZY_NETNS="1")
        os.execvpe("unshare", ["unshare", "--net", sys.executable, *sys.argv], env)
    subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True)
    builds = []
    for spec in args.ab:
        label, _, bdir = spec.partition("=")
        builds.append((label, os.path.join(os.path.abspath(bdir), "bin", "cfs")))
    pushers = [b for label, b in builds if label == (args.push_with or builds[0][0])]
    if not pushers:
        ap.error(f"--push-with {args.push_with}: no --ab of that label")
    cfs = pushers[0]
    work = tempfile.mkdtemp(prefix="cfs-bench-lazy-start-")
    reg = r.Registry()
    reg.start()
    mnt = os.path.join(work, "mnt")
    try:
        src = os.path.join(work, "src")
        run = lambda *a: subprocess.run([cfs, *a], check=True, capture_output=True)  # noqa: E731
        run("repo", "init", "--repo", src, "--insecure")
        run("oci", "pull", "--repo", src, args.image, "img")
        run("oci", "push", "--repo", src, NOTLS, "--compression=zstd-chunked", "img",
            reg.ref("bench/img:1"))
        L.TcLink(reg, args.rate)  # the loopback shaped as bench/lazy.py shapes it
        ref = reg.ref("bench/img:1")
        if args.answer_delay > 0:
            proxy = r.FaultProxy(reg.host)
            proxy.add_fault(times=None, delay=args.answer_delay)
            ref = proxy.ref("bench/img:1")
        os.mkdir(mnt)
        times = {label: {} for label, _ in builds}
        budgets = {label: [] for label, _ in builds}  # the neighbour budget each measured
        cpu = {label: [] for label, _ in builds}  # the command's CPU time, ms
        trace = os.path.join(work, "trace")
        serial = itertools.count()
        for i in range(args.runs):
            # Reversed every other run, a new repository per mount (none deleted before the
            # end), and each server waited for: as bench/lazy.py since session 18. With the
            # builds always in one order and each repository deleted and made again, the second
            # build's mounts ran beside the first's registration at its stop and paid ext4's
            # deletion tax: 10-16 ms later to `serving` than the first (session 20).
            order = builds if i % 2 == 0 else builds[::-1]
            for label, binary in order:
                repo = os.path.join(work, f"repo-{label}-{next(serial)}")
                subprocess.run([binary, "repo", "init", "--repo", repo, "--insecure"], check=True)
                if args.registry_memo:
                    L.seed_registry_memo(repo, ref)
                if os.path.exists(trace):
                    os.unlink(trace)
                wall0 = time.time()
                cmd = subprocess.Popen(
                    [binary, "oci", "mount", "--lazy", "--no-fill", "--repo", repo, NOTLS,
                     ref, mnt], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, env=dict(os.environ, CFS_LAZY_TRACE=trace))
                # The command's own CPU (all its threads; not the serving process it forks,
                # which it does not wait for).
                _, status, usage = os.wait4(cmd.pid, 0)
                returned = time.time()
                if os.waitstatus_to_exitcode(status) != 0:
                    sys.exit(f"{binary} oci mount --lazy: exit status {status}")
                cpu[label].append((usage.ru_utime + usage.ru_stime) * 1e3)
                time.sleep(0.2)  # the serving process's events after the command returned
                L.umount(mnt)
                L.wait_server_gone(repo)
                events = {"(command returned)": returned}
                with open(trace) as f:
                    for line in f:
                        t, _, event = line.rstrip("\n").partition(" ")
                        if event.startswith("link:") and "first bytes " in event:
                            # The EROFS GET's first byte, in ms from when the blobs were asked
                            # for (just after `lazy artifact`): what follows it is the transfer
                            # and the work on the bytes, without the registry's own wait.
                            first = float(event.split("first bytes ")[1].split()[0])
                            events["erofs first byte"] = events["lazy artifact"] + first / 1e3
                        event = event.split(":")[0]
                        if event.startswith("batch budget"):
                            budgets[label].append(int(event.split()[2]))
                            event = "batch budget"
                        elif event.startswith("directories"):  # "directories N objects …"
                            event = "directories"
                        events.setdefault(event, float(t))
                for event, t in events.items():
                    times[label].setdefault(event, []).append((t - wall0) * 1e3)
        order = {e: statistics.median(v) for lt in times.values() for e, v in lt.items()}
        print(f"{'event (ms from the command)':<28}" + "".join(f"{label:>24}" for label, _ in builds))
        for event in sorted(order, key=order.get):
            row = f"{event:<28}"
            for label, _ in builds:
                v = times[label].get(event)
                row += (f"{statistics.median(v):>8.1f} [{min(v):5.1f}-{max(v):5.1f}]"
                        if v else " " * 24)
            print(row)
        print(f"{'command CPU (ms)':<28}" + "".join(
            f"{statistics.median(cpu[label]):>8.1f} [{min(cpu[label]):5.1f}-{max(cpu[label]):5.1f}]"
            for label, _ in builds))
        # Per run against the first build (the same run's load): median change, runs lower.
        for label, _ in builds[1:]:
            d = [b - a for a, b in zip(cpu[builds[0][0]], cpu[label])]
            print(f"command CPU {label} - {builds[0][0]}: {statistics.median(d):+.1f} ms median, "
                  f"lower in {sum(x < 0 for x in d)} of {len(d)} runs")
        # The same per event (the start-up's steps, ms from the command), and the step from
        # the process's start to the manifest alone (the registry handshake, without the
        # process start-up's own noise).
        for label, _ in builds[1:]:
            base = times[builds[0][0]]
            for event in ("start", "manifest", "referrers", "lazy artifact", "erofs fetched",
                          "serving", "(command returned)", "start->manifest",
                          "manifest->lazy artifact", "lazy artifact->erofs fetched",
                          "erofs first byte->erofs fetched", "erofs fetched->serving"):
                if "->" in event:  # a step alone, without the noise of the steps before it
                    a, b = event.split("->")
                    get = lambda lt, a=a, b=b: [y - x for x, y in zip(lt.get(a, []),  # noqa
                                                                      lt.get(b, []))]
                else:
                    get = lambda lt: lt.get(event, [])  # noqa: E731
                d = [b - a for a, b in zip(get(base), get(times[label]))]
                if d:
                    print(f"{event:<28} {label} - {builds[0][0]}: {statistics.median(d):+.1f} ms "
                          f"median, lower in {sum(x < 0 for x in d)} of {len(d)} runs")
        print(f"{'batch budget (bytes)':<28}" + "".join(
            f"{statistics.median(budgets[label]):>8.0f} [{min(budgets[label])}-{max(budgets[label])}]"
            .rjust(24) for label, _ in builds))
        with open("/proc/loadavg") as f:
            print("load average:", " ".join(f.read().split()[:3]))
    finally:
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
        reg.stop()
        truncate_tree(work)
        print(f"left emptied: {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
