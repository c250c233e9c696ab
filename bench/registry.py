#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Registry transport benchmark: cfs's client against skopeo, side by side in one run, on a
loopback docker-registry (started and stopped here, as the tests do).

  bench/registry.py [--build-dir build] [--size-mib 256] [--layers 4] [--runs 3]

Builds an image of LAYERS incompressible layers (SIZE_MIB in total, one layer half of it) with
umoci, pushes it with skopeo, then times, alternating the tools run by run:
  pull:  cfs registry fetch REF DIR             vs  skopeo copy docker://REF oci:DIR
  push:  cfs registry put-blob (each blob, in parallel) + put-manifest
                                                vs  skopeo copy oci:DIR docker://REF2
Every pull is checked (the manifest digest equals the pushed one). Prints medians and the
ratio skopeo / cfs (> 1: cfs is faster)."""
import argparse
import concurrent.futures
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cfs = os.path.join(args.build_dir, "bin", "cfs")
    for tool in ("skopeo", "umoci", "docker-registry"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not installed")
    work = tempfile.mkdtemp(prefix="cfs-bench-registry-")
    try:
        rng = random.Random(1)
        total = args.size_mib << 20
        sizes = [total // 2] + [total // 2 // (args.layers - 1)] * (args.layers - 1)
        layout = os.path.join(work, "img")
        print(f"building {args.layers} layers, {args.size_mib} MiB ...", flush=True)
        r.build_image(layout, "v1", [{f"data/f{i}": rng.randbytes(n)} for i, n in enumerate(sizes)])
        with r.Registry() as reg:
            ref = reg.ref("bench/img:v1")
            r.push(layout, "v1", ref, "--dest-tls-verify=false")
            want = r.sha256_bytes(r.inspect_raw(ref, "--tls-verify=false"))
            manifest = json.loads(r.inspect_raw(ref, "--tls-verify=false"))
            blobs = [manifest["config"]] + manifest["layers"]
            times = {"pull cfs": [], "pull skopeo": [], "push cfs": [], "push skopeo": []}
            for run in range(args.runs):
                for tool in (["cfs", "skopeo"] if run % 2 == 0 else ["skopeo", "cfs"]):
                    dest = os.path.join(work, f"pull-{tool}-{run}")
                    if tool == "cfs":
                        cmd = [cfs, "registry", "fetch", "--tls-verify=false", ref, dest]
                    else:
                        cmd = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref,
                               f"oci:{dest}:v1"]
                    times[f"pull {tool}"].append(timed(lambda: subprocess.run(cmd, check=True,
                                                                              stdout=subprocess.DEVNULL)))
                    got = r.sha256_bytes(r.inspect_raw(f"oci:{dest}:v1"))
                    assert got == want, (tool, got, want)
                    shutil.rmtree(dest)
                    target = reg.ref(f"bench/push-{tool}-{run}:v1")
                    if tool == "cfs":
                        def push():
                            paths = [os.path.join(layout, "blobs", "sha256", b["digest"].split(":")[1])
                                     for b in blobs]
                            with concurrent.futures.ThreadPoolExecutor(4) as ex:
                                list(ex.map(lambda p: subprocess.run(
                                    [cfs, "registry", "put-blob", "--tls-verify=false", target, p],
                                    check=True, stdout=subprocess.DEVNULL), paths))
                            mf = os.path.join(work, "manifest.json")
                            with open(mf, "wb") as f:
                                f.write(r.inspect_raw(ref, "--tls-verify=false"))
                            subprocess.run([cfs, "registry", "put-manifest", "--tls-verify=false",
                                            "--media-type", "application/vnd.oci.image.manifest.v1+json",
                                            target, mf], check=True, stdout=subprocess.DEVNULL)
                    else:
                        def push():
                            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                            f"oci:{layout}:v1", target], check=True)
                    times[f"push {tool}"].append(timed(push))
        print(f"\n{args.size_mib} MiB in {args.layers} layers, loopback docker-registry 2.8, "
              f"{args.runs} runs each, medians:")
        for op in ("pull", "push"):
            c, s = statistics.median(times[f"{op} cfs"]), statistics.median(times[f"{op} skopeo"])
            print(f"  {op}: cfs {c:.2f} s ({args.size_mib / c:.0f} MiB/s), skopeo {s:.2f} s "
                  f"({args.size_mib / s:.0f} MiB/s), skopeo/cfs {s / c:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
