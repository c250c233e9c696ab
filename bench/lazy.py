#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Lazy mount benchmark: time from mount to the first byte a workload prints, and the bytes
fetched for it, `cfs oci mount --lazy` against a full `cfs oci pull` + `cfs oci mount --fuse`,
side by side in one run, over the loopback fault proxy throttled to a link speed.

  bench/lazy.py [--build-dir build] [--image oci:DIR:TAG] [--rates 100e6,1e9] [--runs 1]
                [--compression zstd-chunked] [--lazy-option=--no-elf-prefetch ...]

IMAGE (default: the Debian image tests/integration/test_oci_debian.py caches in
/var/cache/cfs-oci-debian) is pulled into a repository and pushed with its lazy metadata
(`cfs oci push --compression=COMPRESSION`) to a docker-registry started here. For each rate and
workload (`chroot MNT /usr/bin/dpkg --version`, `chroot MNT /usr/bin/apt-get --version`), each
in a fresh repository:
  lazy  cfs oci mount --lazy --no-fill docker://PROXY/…  MNT; run the workload
  full  cfs oci pull docker://PROXY/…; cfs oci mount --fuse; run the workload
The time runs from the mount command (the pull, for full) to the workload's first output byte;
the bytes are the response bodies the proxy sent meanwhile (for lazy also the Range requests
alone: file contents, the rest is metadata). Prints both, and lazy / full."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402

NOTLS = "--tls-verify=false"
WORKLOADS = {"dpkg --version": ["/usr/bin/dpkg", "--version"],
             "apt-get --version": ["/usr/bin/apt-get", "--version"]}


def umount(path):
    for _ in range(100):
        with open("/proc/self/mountinfo") as f:
            if not any(line.split()[4] == os.path.realpath(path) for line in f):
                return
        subprocess.run(["umount", "-l", path], capture_output=True)
        time.sleep(0.05)


def first_byte(mnt, argv):
    """Runs argv chrooted in mnt; returns once it printed its first byte (then drains it)."""
    p = subprocess.Popen(["chroot", mnt, *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    b = p.stdout.read(1)
    p.stdout.read()
    rc = p.wait()
    if not b or rc != 0:
        raise RuntimeError(f"{argv} in {mnt}: exit {rc}, no output")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--rates", default="100e6,1e9", help="link speeds in bit/s")
    ap.add_argument("--compression", default="zstd-chunked")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--lazy-option", action="append", default=[],
                    help="passed to cfs oci mount --lazy (e.g. --no-elf-prefetch for an A/B)")
    args = ap.parse_args()
    cfs = os.path.join(os.path.abspath(args.build_dir), "bin", "cfs")

    def run(*a):
        return subprocess.run([cfs, *a], check=True, capture_output=True)

    work = tempfile.mkdtemp(prefix="cfs-bench-lazy-")
    reg = r.Registry()
    reg.start()
    try:
        src = os.path.join(work, "src")
        run("repo", "init", "--repo", src, "--insecure")
        run("oci", "pull", "--repo", src, args.image, "img")
        run("oci", "push", "--repo", src, NOTLS, f"--compression={args.compression}", "img",
            reg.ref("bench/img:1"))
        mnt = os.path.join(work, "mnt")
        os.mkdir(mnt)
        rows = []
        for rate in [float(x) for x in args.rates.split(",")]:
            proxy = r.FaultProxy(reg.host, throttle_bps=rate)
            try:
                for wname, argv in WORKLOADS.items():
                    for _ in range(args.runs):
                        res = {}
                        for mode in ("lazy", "full"):
                            repo = os.path.join(work, f"repo-{mode}")
                            shutil.rmtree(repo, ignore_errors=True)
                            run("repo", "init", "--repo", repo, "--insecure")
                            ref = proxy.ref("bench/img:1")
                            since = time.time()
                            t0 = time.monotonic()
                            if mode == "lazy":
                                run("oci", "mount", "--lazy", "--no-fill", *args.lazy_option,
                                    "--repo", repo, NOTLS, ref, mnt)
                            else:
                                run("oci", "pull", "--repo", repo, NOTLS, ref, "img")
                                run("oci", "mount", "--fuse", "--repo", repo, "img", mnt)
                            try:
                                first_byte(mnt, argv)
                                secs = time.monotonic() - t0
                            finally:
                                umount(mnt)
                            reqs = proxy.requests(since=since)
                            sent = sum(e["sent"] for e in reqs)
                            res[mode] = (secs, sent)
                            if mode == "lazy":  # file contents: the Range requests
                                res["ranges"] = (len([e for e in reqs if e["range"]]),
                                                 sum(e["sent"] for e in reqs if e["range"]))
                        rows.append((rate, wname, res))
                        print(json.dumps({"rate_bps": rate, "workload": wname,
                                          **{f"{m}_s": round(v[0], 3) for m, v in res.items()
                                             if m != "ranges"},
                                          **{f"{m}_bytes": v[1] for m, v in res.items()
                                             if m != "ranges"},
                                          "lazy_range_requests": res["ranges"][0],
                                          "lazy_range_bytes": res["ranges"][1]}),
                              flush=True)
            finally:
                proxy.close()
        print(f"\n{'link':>10} {'workload':<18} {'lazy s':>8} {'full s':>8} {'ratio':>6} "
              f"{'lazy MB':>9} {'full MB':>9} {'ratio':>6} {'ranges':>6}")
        for rate, wname, res in rows:
            (ls, lb), (fs, fb) = res["lazy"], res["full"]
            print(f"{rate / 1e6:>7.0f}Mb/s {wname:<18} {ls:>8.2f} {fs:>8.2f} {ls / fs:>6.1%} "
                  f"{lb / 1e6:>9.2f} {fb / 1e6:>9.2f} {lb / fb:>6.1%} {res['ranges'][0]:>6}")
    finally:
        umount(os.path.join(work, "mnt"))
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
