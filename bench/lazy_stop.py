#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How long a lazy mount's server takes to exit after SIGTERM, with the registry up (the
background fill transferring) and gone (closed just before), side by side with a FUSE mount of
the same image pulled whole (no registry involved), in one run.

  bench/lazy_stop.py [--image oci:DIR:TAG] [--runs 5] [--cap 40] --ab LABEL=BUILD_DIR ...

IMAGE (default: the Debian image of tests/integration/test_oci_debian.py) is pushed as
zstd:chunked to a docker-registry started here, reached through the fault proxy
(tests/testlib/fault_proxy.py, unthrottled), whose close() stands for the registry going away.
Each run, for each LABEL in turn (its BUILD_DIR/bin/cfs): `cfs oci mount --lazy -f` (fill on)
into a fresh repository, `/usr/bin/dpkg` read through it, then SIGTERM (case "up"), or the proxy
closed, 0.3 s, SIGTERM (case "gone"); `--no-fill`, SIGTERM as soon as it is mounted, nothing
read (case "fresh": since session 15 the image's registration runs once the mount is quiet, at
most 2 s after it serves, or at the stop: here at the stop, as in bench/lazy.py's runs, which
unmount at the workload's first byte); then `cfs oci mount --fuse -f` of the image pulled whole
(case "whole"). The time is from SIGTERM until the server process ended (this script is its
parent, so it is reaped at once), capped at --cap seconds (then SIGKILL; printed as ">CAP")."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402

NOTLS = "--tls-verify=false"


is_mounted, umount = r.t.is_mounted, r.t.umount


def serve(args, mnt):
    p = subprocess.Popen(args + ["-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        if is_mounted(mnt):
            return p
        if p.poll() is not None:
            raise SystemExit(f"mount exited: {args}")
        time.sleep(0.05)
    raise SystemExit("mount did not come up")


def stop_time(p, cap):
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=cap)
        return time.monotonic() - t0
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cap", type=float, default=40)
    ap.add_argument("--ab", action="append", required=True, metavar="LABEL=BUILD_DIR")
    args = ap.parse_args()
    builds = [(spec.partition("=")[0],
               os.path.join(os.path.abspath(spec.partition("=")[2]), "bin", "cfs"))
              for spec in args.ab]
    cfs0 = builds[-1][1]
    work = tempfile.mkdtemp(prefix="cfs-bench-stop-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    reg = r.Registry()
    reg.start()
    times = {}
    try:
        src = os.path.join(work, "src")
        run = lambda *a: subprocess.run([cfs0, *a], check=True, capture_output=True)  # noqa: E731
        run("repo", "init", "--repo", src, "--insecure")
        run("oci", "pull", "--repo", src, args.image, "img")
        run("oci", "push", "--repo", src, NOTLS, "--compression=zstd-chunked", "img",
            reg.ref("bench/img:1"))
        for _ in range(args.runs):
            for case in ("up", "gone", "fresh"):
                for label, cfs in builds:
                    repo = os.path.join(work, "repo")
                    shutil.rmtree(repo, ignore_errors=True)
                    subprocess.run([cfs, "repo", "init", "--repo", repo, "--insecure"],
                                   check=True, capture_output=True)
                    proxy = r.FaultProxy(reg.host)
                    try:
                        fill = ["--no-fill"] if case == "fresh" else []
                        p = serve([cfs, "oci", "mount", "--lazy", *fill, "--repo", repo, NOTLS,
                                   proxy.ref("bench/img:1"), mnt], mnt)
                        if case != "fresh":
                            with open(os.path.join(mnt, "usr/bin/dpkg"), "rb") as f:
                                f.read()
                        if case == "gone":
                            proxy.close()
                            time.sleep(0.3)
                        times.setdefault((case, label), []).append(stop_time(p, args.cap))
                    finally:
                        proxy.close()
                        umount(mnt)
            for label, cfs in builds:
                p = serve([cfs, "oci", "mount", "--fuse", "--repo", src, "img", mnt], mnt)
                times.setdefault(("whole", label), []).append(stop_time(p, args.cap))
                umount(mnt)
        print(f"{'case':<6} {'build':<10} {'median s':>9}  runs")
        fmt = lambda x: f">{args.cap:.0f}" if x is None else f"{x:.3f}"  # noqa: E731
        for (case, label), got in times.items():
            srt = sorted(got, key=lambda x: float("inf") if x is None else x)
            print(f"{case:<6} {label:<10} {fmt(srt[len(srt) // 2]):>9}  "
                  + " ".join(fmt(x) for x in got))
    finally:
        umount(mnt)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
