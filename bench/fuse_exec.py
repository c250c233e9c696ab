#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A program's start through the FUSE mount against the kernel mount of the same image: the time
from exec to the first output byte, first run (fresh mount: entries looked up, objects opened and
verified for the first time) and second run (the same mount again), same run, fresh mounts.

  sudo bench/fuse_exec.py [--build-dir build] [--image oci:DIR:TAG] [--runs 5]
                          [--ab LABEL=BUILD_DIR ...] [--work DIR]

IMAGE (default: the Debian image tests/integration/test_oci_debian.py caches in
/var/cache/cfs-oci-debian) is pulled once into a repository in WORK (a temporary directory by
default), with --build-dir's cfs. Every run mounts it afresh for each variant, in this order:
each --ab LABEL's `BUILD_DIR/bin/cfs oci mount --fuse` (default: one variant, --build-dir),
then the kernel mount (`cfs oci mount`, EROFS + overlayfs), and runs in a chroot of it
`dpkg --version` twice and `apt-get --version` twice, in a fresh mount each (the first run of a
workload is the first in its mount). Before each workload's mounts, one unmeasured run on a
kernel mount brings its object files into the page cache: what is measured is the mount's own
cost, not the disk. Also taken from each FUSE mount: the server's
CPU time during the first run (all threads' schedstat), which load on a shared machine does not
inflate as much as the wall time, and (builds that have it) the server's CFS_FUSE_STATS for the
whole mount, both runs: requests by kind and their handlers' time (docs/fuse.md).

Prints one JSON line per mount and workload, then a table of medians (ms) with each variant's
ratio to the kernel mount of the same runs and, with --ab, each label's ratio to the first one.
Alternating the variants within a run puts them all under the same load."""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "testlib"))
import cfs_testlib as t  # noqa: E402

WORKLOADS = {"dpkg --version": ["/usr/bin/dpkg", "--version"],
             "apt-get --version": ["/usr/bin/apt-get", "--version"]}
DEFAULT_IMAGE = "oci:/var/cache/cfs-oci-debian/layout:bookworm"


def umount(path):
    for _ in range(100):
        if not t.is_mounted(path):
            return
        subprocess.run(["umount", path], capture_output=True)
        time.sleep(0.01)


def first_byte_ms(root, argv):
    """ms from spawning `chroot ROOT ARGV` to its first byte on stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(["chroot", root] + argv, stdout=subprocess.PIPE)
    first = p.stdout.read(1)
    t1 = time.perf_counter()
    p.communicate()
    if p.returncode != 0 or not first:
        sys.exit(f"fuse_exec.py: {' '.join(argv)} in {root} failed ({p.returncode})")
    return (t1 - t0) * 1000


def server_pid(mnt):
    out = subprocess.run(["pgrep", "-n", "-f", f"mount --fuse .* {mnt}$"],
                         capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def cpu_ms(pid):
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ab", action="append", default=[], metavar="LABEL=BUILD_DIR")
    ap.add_argument("--work", help="directory for the repository and mount points")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("fuse_exec.py: needs root (mounts, chroot)")
    cfs = os.path.join(os.path.abspath(args.build_dir), "bin", "cfs")
    variants = []
    for item in args.ab or [f"fuse={args.build_dir}"]:
        label, _, build = item.partition("=")
        if not label or not build:
            sys.exit(f"fuse_exec.py: --ab {item}: expected LABEL=BUILD_DIR")
        variants.append((label, os.path.join(os.path.abspath(build), "bin", "cfs")))
    for _, binary in variants + [("kernel", cfs)]:
        if not os.access(binary, os.X_OK):
            sys.exit(f"fuse_exec.py: {binary} not built")

    work = args.work or tempfile.mkdtemp(prefix="cfs-fuse-exec-")
    repo, mnt = os.path.join(work, "repo"), os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    if not os.path.exists(os.path.join(repo, "meta.json")):
        subprocess.run([cfs, "repo", "init", "--repo", repo, "--insecure"], check=True,
                       capture_output=True)
        subprocess.run([cfs, "oci", "pull", "--repo", repo, args.image, "img"], check=True,
                       capture_output=True)

    # (variant, workload) -> lists of first, second, server CPU
    res = {}
    for run in range(args.runs):
        for wname, argv in WORKLOADS.items():
            # Unmeasured: brings the workload's object files into the page cache (other jobs on
            # a shared machine may have dropped them), so that no variant pays for the disk.
            subprocess.run([cfs, "oci", "mount", "--repo", repo, "img", mnt], check=True,
                           capture_output=True)
            try:
                first_byte_ms(mnt, argv)
            finally:
                umount(mnt)
            for label, binary in variants + [("kernel", cfs)]:
                cmd = [binary, "oci", "mount", "--repo", repo, "img", mnt]
                env = dict(os.environ)
                stats = os.path.join(work, "stats.json")
                if os.path.exists(stats):
                    os.unlink(stats)
                if label != "kernel":
                    cmd.insert(3, "--fuse")
                    env["CFS_FUSE_STATS"] = stats
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                try:
                    pid = server_pid(mnt) if label != "kernel" else None
                    c0 = cpu_ms(pid) if pid else 0
                    first = first_byte_ms(mnt, argv)
                    cpu = cpu_ms(pid) - c0 if pid else None
                    second = first_byte_ms(mnt, argv)
                finally:
                    umount(mnt)
                st = None
                if label != "kernel":
                    for _ in range(100):  # written by the server as it exits
                        if os.path.exists(stats):
                            with open(stats) as f:
                                st = json.load(f)
                            break
                        time.sleep(0.01)
                r = res.setdefault((label, wname), {"first": [], "second": [], "cpu": []})
                r["first"].append(first)
                r["second"].append(second)
                if cpu is not None:
                    r["cpu"].append(cpu)
                print(json.dumps({"run": run, "variant": label, "workload": wname,
                                  "first_ms": round(first, 2), "second_ms": round(second, 2),
                                  "server_cpu_ms": None if cpu is None else round(cpu, 2),
                                  "server_stats": st}),
                      flush=True)

    med = {k: {m: statistics.median(v) if v else None for m, v in r.items()}
           for k, r in res.items()}
    print(f"\nmedians of {args.runs} runs (ms); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'workload':18} {'variant':10} {'first':>7} {'/kernel':>8} {'second':>7} "
          f"{'/kernel':>8} {'srv CPU':>8}" + (f" {'first/' + variants[0][0]:>14}"
                                               if len(variants) > 1 else ""))
    for wname in WORKLOADS:
        k = med[("kernel", wname)]
        for label, _ in variants + [("kernel", None)]:
            m = med[(label, wname)]
            line = (f"{wname:18} {label:10} {m['first']:7.1f} {m['first'] / k['first']:8.2f} "
                    f"{m['second']:7.1f} {m['second'] / k['second']:8.2f} "
                    + (f"{m['cpu']:8.1f}" if m["cpu"] is not None else f"{'-':>8}"))
            if len(variants) > 1 and label != "kernel":
                base = med[(variants[0][0], wname)]
                line += f" {m['first'] / base['first']:14.2f}"
            print(line)


if __name__ == "__main__":
    main()
