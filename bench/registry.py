#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Registry transport benchmark: cfs's client against skopeo, side by side in one run, on a
loopback docker-registry (started and stopped here, as the tests do).

  bench/registry.py [--build-dir build] [--size-mib 256] [--layers 4] [--runs 3]
  bench/registry.py --import [--image oci:DIR:TAG] [--runs 1]

Builds an image of LAYERS incompressible layers (SIZE_MIB in total, one layer half of it) with
umoci, pushes it with skopeo, then times, alternating the tools run by run:
  pull:  cfs registry fetch REF DIR             vs  skopeo copy docker://REF oci:DIR
  push:  cfs registry put-blob (each blob, in parallel) + put-manifest
                                                vs  skopeo copy oci:DIR docker://REF2
Every pull is checked (the manifest digest equals the pushed one). Prints medians and the
ratio skopeo / cfs (> 1: cfs is faster).

With --import, what a user does to get a composefs image from a registry (IMAGE, default the
Debian image tests/integration/test_oci_debian.py caches in /var/cache/cfs-oci-debian, pushed
with skopeo first), each into a fresh repository / directory:
  A  cfs oci pull docker://REF
  B  skopeo copy docker://REF oci:DIR  +  cfs oci pull oci:DIR
  C  skopeo copy docker://REF oci:DIR  +  umoci unpack  +  mkcomposefs --digest-store (1.0.8)
A and B must give the same image id. Then a second image sharing all but one layer is pulled
by A into the same repository: the bytes fetched (blob GETs logged by the fault proxy) must be
that layer's (plus the config). Prints medians, ratios B/A and C/A, and the bytes fetched.
The runs' files are truncated at the end and the tree left in place (as with --ab, below).

  bench/registry.py --import --ab LABEL=BUILD_DIR --ab LABEL=BUILD_DIR [--runs 8] [--trace]

A same-run A/B of builds (e.g. main before and after a change) on one registry: every run
times, for each build in turn (the order reversed every other run), A (R below) and then
S = `skopeo copy docker://REF oci:DIR` and I = `cfs oci pull oci:DIR`, each into a fresh
repository, with the CPU time (user + system, from wait4) and its system part next to the
wall time. Prints every run and, per build, the medians and the ratio (S + I) / R, the target
of issue 14 being 2. System time is what shows a run in ext4's deletion-tax state (see below):
on host C, R and I take 0.3-0.6 s of it normally and 1.2-2.7 s after a large deletion (bench/
README.md, session 17). The runs go under $TMPDIR: a filesystem of their own (a loop-mounted
ext4) keeps other people's deletions out of them.
A run's files are truncated, not deleted, once timed: deleting thousands of inodes taxes the
next run's inode allocation on this host's ext4 (see "Session 8" in bench/README.md), while
truncation frees the space and keeps the inodes (the emptied tree is left in place at the end,
for the same reason: ext4 taxes inode allocations for 1-5 minutes after a deletion). With --trace, each R's CFS_PULL_TRACE steps
(docs/oci.md) are printed in seconds from its start.

  bench/registry.py --push-compression [--image oci:DIR:TAG] [--runs 1]

IMAGE (default the Debian image) imported into a repository, then pushed by `cfs oci push`
with each --compression (none, gzip, zstd, zstd-chunked) to a fresh repository of the
registry. Prints medians of the wall time, the layer bytes pushed, and the lazy metadata (EROFS
and object index) attached for none and zstd-chunked. (No skopeo row: Debian 12's skopeo 1.9.3
does not recompress a gzip layout with --dest-compress-format zstd, it sends the gzip blobs,
and it hangs writing zstd:chunked.)"""
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
from import_layer import truncate_tree  # noqa: E402 (bench/ is the script's own directory)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


MKCOMPOSEFS = "/work/ref/composefs/build/tools/mkcomposefs"


def run_quiet(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def import_bench(args, cfs, work):
    image = args.image or "oci:/var/cache/cfs-oci-debian/layout:bookworm"
    notls = "--tls-verify=false"
    layout, tag = image.removeprefix("oci:").rsplit(":", 1)
    # The second image: IMAGE plus one small layer (umoci on a copy of the layout).
    copy = os.path.join(work, "layout")
    shutil.copytree(layout, copy)
    r.run(["umoci", "tag", "--image", f"{copy}:{tag}", "plus"])
    extra = os.path.join(work, "extra")
    os.makedirs(os.path.join(extra, "etc"))
    with open(os.path.join(extra, "etc", "bench-extra"), "wb") as f:
        f.write(random.Random(2).randbytes(1 << 20))
    r.run(["umoci", "insert", "--image", f"{copy}:plus", extra, "/"])
    times = {"A": [], "B": [], "C": []}
    with r.Registry() as reg:
        ref = reg.ref("bench/import:v1")
        r.push(copy, tag, ref, "--dest-tls-verify=false")
        r.push(copy, "plus", reg.ref("bench/import:plus"), "--dest-tls-verify=false")
        manifest = json.loads(r.inspect_raw(ref, notls))
        size = sum(d["size"] for d in manifest["layers"]) + manifest["config"]["size"]
        ids = {}
        for run in range(args.runs):
            for k in (["A", "B", "C"] if run % 2 == 0 else ["C", "B", "A"]):
                d = os.path.join(work, f"{k}{run}")
                repo = os.path.join(d, "repo")
                os.makedirs(d)
                if k != "C":
                    run_quiet([cfs, "repo", "init", "--repo", repo, "--insecure"])

                def a():
                    out = subprocess.run([cfs, "oci", "pull", "--repo", repo, notls, "--json",
                                          ref, "x"], check=True, capture_output=True).stdout
                    ids["A"] = json.loads(out)["image"]

                def b():
                    run_quiet(["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref,
                               f"oci:{d}/oci:x"])
                    out = subprocess.run([cfs, "oci", "pull", "--repo", repo, "--json",
                                          f"oci:{d}/oci:x", "x"], check=True,
                                         capture_output=True).stdout
                    ids["B"] = json.loads(out)["image"]

                def c():
                    run_quiet(["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref,
                               f"oci:{d}/oci:x"])
                    run_quiet(["umoci", "unpack", "--image", f"{d}/oci:x", f"{d}/bundle"])
                    run_quiet([MKCOMPOSEFS, f"--digest-store={d}/objects", f"{d}/bundle/rootfs",
                               f"{d}/image.cfs"])

                times[k].append(timed({"A": a, "B": b, "C": c}[k]))
                # Nothing is deleted before the end: on ext4 without a journal (this host's
                # root) every new inode is searched past the inodes deleted in the last minute,
                # a tax of seconds on the next run's thousands of objects (bench/README.md).
            assert ids["A"] == ids["B"], ids
        # A second pull of an image sharing all but one layer, through the logging proxy.
        with r.FaultProxy(reg.host) as proxy:
            repo = os.path.join(work, f"A{args.runs - 1}", "repo")
            t0 = time.time()
            second = timed(lambda: run_quiet([cfs, "oci", "pull", "--repo", repo, notls,
                                              proxy.ref("bench/import:plus"), "plus"]))
            fetched = sum(e.get("sent", 0) for e in proxy.requests("GET", "/blobs/", since=t0))
        plus = json.loads(r.inspect_raw(reg.ref("bench/import:plus"), notls))
        new = [d for d in plus["layers"] if d not in manifest["layers"]]
    mib = size / 1048576
    print(f"\n{image}: {len(manifest['layers'])} layers, {mib:.1f} MiB of blobs, loopback "
          f"docker-registry 2.8, {args.runs} run(s) each, medians:")
    a_t = statistics.median(times["A"])
    for k, label in (("A", "cfs oci pull docker://"),
                     ("B", "skopeo copy + cfs oci pull oci:"),
                     ("C", "skopeo copy + umoci unpack + mkcomposefs --digest-store")):
        m = statistics.median(times[k])
        print(f"  {k} {label}: {m:.2f} s ({mib / m:.0f} MiB/s), {k}/A {m / a_t:.2f}")
    print(f"  second pull (all but one layer shared): {second:.2f} s, {fetched} bytes fetched; "
          f"new layer {sum(d['size'] for d in new)} bytes + config {plus['config']['size']}")


def timed_rusage(cmd, env=None):
    """Wall, CPU (user + system) and system seconds of a command that must succeed."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{cmd} failed ({p.returncode}): {err.decode(errors='replace')}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_stime


def import_ab_bench(args, work):
    image = args.image or "oci:/var/cache/cfs-oci-debian/layout:bookworm"
    layout, tag = image.removeprefix("oci:").rsplit(":", 1)
    builds = []
    for spec in args.ab:
        label, _, build = spec.partition("=")
        builds.append((label, os.path.join(build, "bin", "cfs")))
    rows = {}
    with r.Registry() as reg:
        ref = reg.ref("bench/import:v1")
        r.push(layout, tag, ref, "--dest-tls-verify=false")
        for run in range(args.runs):
            for label, cfs in (builds if run % 2 == 0 else builds[::-1]):
                d = os.path.join(work, f"{label}{run}")
                os.makedirs(d)
                for k in ("R", "I"):
                    run_quiet([cfs, "repo", "init", "--repo", f"{d}/{k}", "--insecure"])
                trace = f"{d}/trace"
                env = dict(os.environ, CFS_PULL_TRACE=trace)
                start = time.time()
                got = {"R": timed_rusage([cfs, "oci", "pull", "--repo", f"{d}/R",
                                          "--tls-verify=false", ref, "x"], env)}
                got["S"] = timed_rusage(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                         ref, f"oci:{d}/oci:x"])
                got["I"] = timed_rusage([cfs, "oci", "pull", "--repo", f"{d}/I",
                                         f"oci:{d}/oci:x", "x"])
                for k, v in got.items():
                    rows.setdefault(label, {}).setdefault(k, []).append(v)
                print(f"run {run} {label:10} " + "  ".join(
                    f"{k} {w:.2f} s / {c:.2f} CPU-s (sys {y:.2f})" for k, (w, c, y) in got.items())
                    + f"  load {os.getloadavg()[0]:.1f}", flush=True)
                if args.trace and os.path.exists(trace):
                    with open(trace) as f:
                        steps = [line.split(" ", 1) for line in f.read().splitlines()]
                    print("    " + ", ".join(f"{e} {float(t) - start:.3f}" for t, e in steps))
                truncate_tree(d)
    print(f"\n{image}, loopback docker-registry 2.8, {args.runs} run(s) per build, medians "
          "(wall / CPU):")
    for label, got in rows.items():
        med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3))
               for k, v in got.items()}
        ratio = (med["S"][0] + med["I"][0]) / med["R"][0]
        print(f"  {label:10} " + "  ".join(f"{k} {w:.2f} / {c:.2f} (sys {y:.2f})"
                                          for k, (w, c, y) in med.items())
              + f"  (S + I) / R {ratio:.2f}")


def push_compression_bench(args, cfs, work):
    image = args.image or "oci:/var/cache/cfs-oci-debian/layout:bookworm"
    notls = "--tls-verify=false"
    repo = os.path.join(work, "repo")
    run_quiet([cfs, "repo", "init", "--repo", repo, "--insecure"])
    run_quiet([cfs, "oci", "pull", "--repo", repo, image, "img"])
    rows = {}
    with r.Registry() as reg:
        for run in range(args.runs):
            for comp in ("none", "gzip", "zstd", "zstd-chunked"):
                ref = reg.ref(f"bench/push-{comp}-{run}:v1")
                out = {}

                def push():
                    p = subprocess.run([cfs, "oci", "push", "--repo", repo, notls, "--json",
                                        "--compression", comp, "img", ref], check=True,
                                       capture_output=True)
                    out.update(json.loads(p.stdout.decode().strip().splitlines()[-1]))

                secs = timed(push)
                manifest = json.loads(r.inspect_raw(ref, notls))
                size = sum(d["size"] for d in manifest["layers"])
                lazy = []
                if out.get("lazy_metadata"):
                    base = ref.rsplit(":", 1)[0]
                    art = json.loads(r.inspect_raw(f"{base}@{out['lazy_metadata']}", notls))
                    lazy = [d["size"] for d in art["layers"]]
                row = rows.setdefault(comp, {"t": [], "size": size, "lazy": lazy,
                                             "objects": out.get("indexed_objects", 0)})
                row["t"].append(secs)
    print(f"\n{image} pushed from a repository by cfs oci push, loopback "
          f"docker-registry 2.8, {args.runs} run(s) each, medians:")
    for comp, row in rows.items():
        m = statistics.median(row["t"])
        extra = (f", lazy metadata: EROFS {row['lazy'][0] / 1048576:.2f} MiB + index "
                 f"{row['lazy'][1] / 1048576:.2f} MiB ({row['objects']} objects)"
                 if row["lazy"] else "")
        print(f"  {comp:13} {m:6.2f} s  layers {row['size'] / 1048576:7.1f} MiB{extra}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--import", dest="import_", action="store_true",
                    help="time getting a composefs image from a registry (see above)")
    ap.add_argument("--push-compression", action="store_true",
                    help="time cfs oci push with each --compression (see above)")
    ap.add_argument("--image", help="--import, --push-compression: oci:DIR:TAG to use")
    ap.add_argument("--ab", action="append", metavar="LABEL=BUILD_DIR",
                    help="--import: a same-run A/B of these builds (see above)")
    ap.add_argument("--trace", action="store_true",
                    help="--import --ab: print each registry pull's CFS_PULL_TRACE steps")
    args = ap.parse_args()
    cfs = os.path.join(args.build_dir, "bin", "cfs")
    for tool in ("skopeo", "umoci", "docker-registry"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not installed")
    work = tempfile.mkdtemp(prefix="cfs-bench-registry-")
    if args.import_ and args.ab:
        # Not deleted: the next minutes' inode allocations would pay for it (ext4 skips
        # inodes deleted in the last 1-5 minutes), the next benchmark's included. Its files
        # are empty by now.
        import_ab_bench(args, work)
        print(f"  (the truncated runs are left in {work})")
        return
    if args.import_ or args.push_compression:
        # Truncated and left, as above: a run leaves ~23k inodes (two repositories, an
        # unpacked rootfs, a mkcomposefs store), and deleting them made the next minutes'
        # pulls on host D pay 2-3x their CPU in ext4's recently_deleted scan (bench/README.md,
        # session 18), whatever benchmark came next.
        try:
            (import_bench if args.import_ else push_compression_bench)(args, cfs, work)
        finally:
            truncate_tree(work)
        print(f"  (the truncated runs are left in {work})")
        return
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
