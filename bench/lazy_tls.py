#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A lazy mount's start-up against a TLS registry with verification: docker-registry serving
https with a certificate of a generated CA (tests/testlib's Registry(tls=True)), reached with
--cert-dir, per build, alternating within each run (the order swapped every run).

  bench/lazy_tls.py [--runs 9] [--repo REPO --image NAME] --ab LABEL=BUILD_DIR --ab LABEL=BUILD_DIR

The image (NAME in REPO, default the Debian image pulled into a scratch repository) is pushed
with its lazy metadata by the first build. Each run mounts once per build (`--no-fill`, a fresh
repository), unmounts, and reads CFS_LAZY_TRACE; printed: per build the medians of the command's
CPU (rusage) and of the manifest, lazy artifact and serving steps (ms from the command), and the
second build's paired change against the first. The loopback is not shaped: the TLS set-up's
CPU is what it shows."""
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

STEPS = ("manifest", "lazy artifact", "serving")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--repo", help="a repository holding --image (default: pulled here)")
    ap.add_argument("--image", default="img")
    ap.add_argument("--ab", action="append", required=True, metavar="LABEL=BUILD_DIR")
    args = ap.parse_args()
    builds = [(lbl, os.path.join(os.path.abspath(d), "bin", "cfs"))
              for lbl, _, d in (s.partition("=") for s in args.ab)]
    work = tempfile.mkdtemp(prefix="cfs-bench-lazy-tls-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    res = {lbl: {k: [] for k in ("cpu",) + STEPS} for lbl, _ in builds}
    try:
        src = args.repo
        if not src:
            src = os.path.join(work, "src")
            cfs = builds[0][1]
            subprocess.run([cfs, "repo", "init", "--repo", src, "--insecure"], check=True)
            subprocess.run([cfs, "oci", "pull", "--repo", src,
                            "oci:/var/cache/cfs-oci-debian/layout:bookworm", args.image],
                           check=True, capture_output=True)
        with r.Registry(tls=True) as reg:
            ref = reg.ref("bench/img:1")
            subprocess.run([builds[0][1], "oci", "push", "--repo", src, "--cert-dir", reg.cert_dir,
                            "--compression=zstd-chunked", args.image, ref],
                           check=True, capture_output=True)
            trace = os.path.join(work, "trace")
            for i in range(args.runs):
                for label, binary in (builds if i % 2 == 0 else builds[::-1]):
                    repo = os.path.join(work, "repo-" + label)
                    shutil.rmtree(repo, ignore_errors=True)
                    subprocess.run([binary, "repo", "init", "--repo", repo, "--insecure"], check=True)
                    if os.path.exists(trace):
                        os.unlink(trace)
                    wall0 = time.time()
                    p = subprocess.Popen([binary, "oci", "mount", "--lazy", "--no-fill", "--repo",
                                          repo, "--cert-dir", reg.cert_dir, ref, mnt],
                                         env=dict(os.environ, CFS_LAZY_TRACE=trace),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    _, status, usage = os.wait4(p.pid, 0)
                    if os.waitstatus_to_exitcode(status) != 0:
                        sys.exit(f"{binary} oci mount --lazy: exit status {status}")
                    res[label]["cpu"].append((usage.ru_utime + usage.ru_stime) * 1e3)
                    time.sleep(0.2)  # the serving process's events after the command returned
                    subprocess.run(["umount", "-l", mnt], check=False)
                    events = {}
                    with open(trace) as f:
                        for line in f:
                            t, _, event = line.rstrip("\n").partition(" ")
                            events.setdefault(event.split(":")[0], float(t))
                    for step in STEPS:
                        res[label][step].append((events[step] - wall0) * 1e3)
        a = builds[0][0]
        for key in ("cpu",) + STEPS:
            row = f"{key + (' (ms)' if key == 'cpu' else ''):<16}"
            row += "".join(f"{lbl} {statistics.median(res[lbl][key]):7.1f}   " for lbl, _ in builds)
            for lbl, _ in builds[1:]:
                d = [y - x for x, y in zip(res[a][key], res[lbl][key])]
                row += (f"{lbl} - {a}: {statistics.median(d):+.1f} ms paired median, lower in "
                        f"{sum(x < 0 for x in d)} of {len(d)}")
            print(row)
        with open("/proc/loadavg") as f:
            print("load average:", " ".join(f.read().split()[:3]))
    finally:
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
