#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One lazy fetch's throughput and CPU: `cat` of large files through a lazy mount, one at a time,
with one cfs build or several alternated in the same run (a same-run A/B on a shared machine).

  bench/lazy_fetch.py [--runs 3] [--image oci:DIR:TAG] LABEL=BUILD_DIR [LABEL=BUILD_DIR ...]

IMAGE (default: the Debian image of tests/integration/test_oci_debian.py) is pulled and pushed
with `--compression=zstd-chunked` to a docker-registry on 127.0.0.1 (unshaped loopback). In each
run, for each LABEL in turn: a fresh repository, `cfs oci mount --lazy --no-fill
--no-elf-prefetch --batch-bytes 0` (one object per Range request, nothing fetched behind the
workload's back), then for each file of FILES: the first byte is read (the open waits for the
whole object: fetched, verified, stored) and the time and the server's CPU time for it are
taken (the sum of its threads' run time, /proc/PID/task/*/schedstat). Prints one line per file
(MB uncompressed, ms, MB/s, CPU ms per MB) and, per LABEL, the total CPU of all files (median
and all runs)."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402

NOTLS = "--tls-verify=false"
FILES = ["/usr/lib/x86_64-linux-gnu/libapt-pkg.so.6.0.0",
         "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
         "/usr/lib/x86_64-linux-gnu/libc.so.6",
         "/usr/bin/perl5.36.0",
         "/usr/lib/x86_64-linux-gnu/libdb-5.3.so",
         "/usr/bin/bash"]


def cpu_of(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended meanwhile
    return total / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("builds", nargs="+", metavar="LABEL=BUILD_DIR")
    args = ap.parse_args()
    builds = [(s.partition("=")[0], os.path.join(os.path.abspath(s.partition("=")[2]), "bin", "cfs"))
              for s in args.builds]
    work = tempfile.mkdtemp(prefix="cfs-bench-fetch-")
    reg = r.Registry()
    reg.start()
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    totals = {label: [] for label, _ in builds}
    try:
        cfs = builds[0][1]
        src = os.path.join(work, "src")
        subprocess.run([cfs, "repo", "init", "--repo", src, "--insecure"], check=True)
        subprocess.run([cfs, "oci", "pull", "--repo", src, args.image, "img"], check=True,
                       capture_output=True)
        subprocess.run([cfs, "oci", "push", "--repo", src, NOTLS, "--compression=zstd-chunked",
                        "img", reg.ref("bench/img:1")], check=True, capture_output=True)
        for run in range(args.runs):
            for label, binary in builds:
                repo = os.path.join(work, "repo")
                shutil.rmtree(repo, ignore_errors=True)
                subprocess.run([binary, "repo", "init", "--repo", repo, "--insecure"], check=True)
                subprocess.run([binary, "oci", "mount", "--lazy", "--no-fill", "--no-elf-prefetch",
                                "--batch-bytes", "0", "--repo", repo, NOTLS,
                                reg.ref("bench/img:1"), mnt], check=True)
                try:
                    pid = subprocess.run(["pgrep", "-n", "-f", "oci mount --lazy.* " + mnt],
                                         capture_output=True, text=True).stdout.split()[0]
                    total = 0.0
                    for path in FILES:
                        size = os.stat(mnt + path).st_size
                        c0, t0 = cpu_of(pid), time.monotonic()
                        with open(mnt + path, "rb") as f:
                            f.read(1)
                        dt, dc = time.monotonic() - t0, cpu_of(pid) - c0
                        total += dc
                        print(f"run {run} {label:8s} {path:48s} {size / 1e6:5.2f} MB "
                              f"{dt * 1e3:6.1f} ms {size / dt / 1e6:6.1f} MB/s "
                              f"cpu {dc * 1e9 / size:5.2f} ms/MB", flush=True)
                    totals[label].append(total)
                finally:
                    subprocess.run(["umount", mnt], capture_output=True)
        print("\nserver CPU for all files (ms): median, all runs")
        for label, vals in totals.items():
            print(f"  {label:8s} {statistics.median(vals) * 1e3:6.1f}  "
                  + " ".join(f"{v * 1e3:.1f}" for v in vals))
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
