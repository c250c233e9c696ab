#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Finishing a lazy image: `cfs oci pull` of an image `cfs oci mount --lazy` registered (after
the workload fetched what it needed) against a full `cfs oci pull` of the same image into an
empty repository, side by side in one run, over the loopback fault proxy at a link speed.

  bench/lazy_pull.py [--build-dir build] [--image oci:DIR:TAG] [--rate 1e9]
                     [--compression zstd-chunked,none]

IMAGE (default: the Debian image tests/integration/test_oci_debian.py caches in
/var/cache/cfs-oci-debian) is pushed with its lazy metadata to a docker-registry started here.
Per compression:
  finish  cfs oci mount --lazy --no-fill; chroot MNT dpkg --version; umount; cfs oci pull
  full    cfs oci pull (an empty repository)
Prints the pull's wall time, the response bytes the proxy sent for it (the lazy mount's before
excluded: they are the workload's), and its requests (all, and with a Range header)."""
import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
sys.path.insert(0, HERE)
import cfs_registry as r  # noqa: E402
from lazy import first_byte, umount  # noqa: E402

NOTLS = "--tls-verify=false"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
    ap.add_argument("--rate", type=float, default=1e9, help="link speed in bit/s")
    ap.add_argument("--compression", default="zstd-chunked,none")
    args = ap.parse_args()
    cfs = os.path.join(os.path.abspath(args.build_dir), "bin", "cfs")

    def run(*a):
        return subprocess.run([cfs, *a], check=True, capture_output=True)

    work = tempfile.mkdtemp(prefix="cfs-bench-lazy-pull-")
    reg = r.Registry()
    reg.start()
    proxy = r.FaultProxy(reg.host, throttle_bps=args.rate)
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    rows = []
    serial = itertools.count()
    try:
        src = os.path.join(work, "src")
        run("repo", "init", "--repo", src, "--insecure")
        run("oci", "pull", "--repo", src, args.image, "img")
        for comp in args.compression.split(","):
            ref = proxy.ref(f"bench/{comp}:1")
            run("oci", "push", "--repo", src, NOTLS, f"--compression={comp}", "img",
                reg.ref(f"bench/{comp}:1"))
            res = {}
            for mode in ("finish", "full"):
                # A new repository each time, none deleted before the end (see bench/lazy.py).
                repo = os.path.join(work, f"repo-{mode}-{next(serial)}")
                run("repo", "init", "--repo", repo, "--insecure")
                if mode == "finish":
                    run("oci", "mount", "--lazy", "--no-fill", "--repo", repo, NOTLS, ref, mnt)
                    try:
                        first_byte(mnt, ["/usr/bin/dpkg", "--version"])
                    finally:
                        umount(mnt)
                since = time.time()
                t0 = time.monotonic()
                run("oci", "pull", "--repo", repo, NOTLS, ref)
                secs = time.monotonic() - t0
                reqs = proxy.requests(since=since)
                res[mode] = {"s": round(secs, 2), "bytes": sum(e["sent"] for e in reqs),
                             "requests": len(reqs),
                             "range_requests": len([e for e in reqs if e["range"]])}
            rows.append((comp, res))
            print(json.dumps({"compression": comp, "rate_bps": args.rate, **res}), flush=True)
        print(f"\n{'layers':<13} {'finish s':>9} {'full s':>8} {'finish MB':>10} {'full MB':>8} "
              f"{'ratio':>6} {'ranges':>7}")
        for comp, res in rows:
            f, w = res["finish"], res["full"]
            print(f"{comp:<13} {f['s']:>9.2f} {w['s']:>8.2f} {f['bytes'] / 1e6:>10.2f} "
                  f"{w['bytes'] / 1e6:>8.2f} {f['bytes'] / w['bytes']:>6.1%} "
                  f"{f['range_requests']:>7}")
    finally:
        umount(mnt)
        proxy.close()
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
