#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The kernel's floor for an import's object files, next to dd and the tools (issues 13, 17).

  bench/object_floor.py TAR --floor BUILD/bench/object_floor [--variant NAME=ARGS ...]
                        [--cfs LABEL=BIN_DIR ...] [--mkcomposefs LABEL=BIN_DIR ...]
                        [--src DIR] [--runs 3] [--work DIR]

TAR is an uncompressed layer in /dev/shm (e.g. usr-subset.tar), SRC the tree it was made from
(for the store fills). In every round, in one process each and the order reversed every other
round (same-run pairs on a shared machine):
  - object_floor (bench/object_floor.cc) once per --variant: the tar's distinct objects written
    from memory by 2 threads, O_TMPFILE + write + linkat by default, with the background and
    final syncfs an import has; its own timing of the writing span (digests and names are
    computed before its clock starts);
  - `cfs oci import-layer` of TAR into a fresh insecure repository, per --cfs build;
  - `mkcomposefs --digest-store` of SRC into a fresh store, per --mkcomposefs build (cfs' or
    composefs 1.0.8's; upstream fsyncs each object, cfs syncs once);
all on the filesystem of --work, next to `dd if=/dev/zero bs=1M count=2048 oflag=direct` there
before the first round and after the last. Wall from the tool's start to its exit (wait4),
user and system CPU from wait4 (object_floor: its own span). Every run's files are truncated,
not deleted, once timed (deleting tens of thousands of inodes taxes later allocations on this
host's ext4 for minutes); remove --work when the machine is quiet.

Prints one markdown table of medians and each row's time against dd's time for the tar's
bytes (issue 13's target: 1.5)."""
import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from import_layer import dd_direct, medians, sha256_file, timed, truncate_tree  # noqa: E402

FLOOR_RE = re.compile(r"objects (\d+) bytes (\d+) written ([\d.]+) s synced ([\d.]+) s "
                      r"user ([\d.]+) sys ([\d.]+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tar")
    ap.add_argument("--floor", required=True, help="the object_floor binary")
    ap.add_argument("--variant", action="append", metavar="NAME=ARGS",
                    help="object_floor arguments (default: tmpfile=)")
    ap.add_argument("--cfs", action="append", default=[], metavar="LABEL=BIN_DIR")
    ap.add_argument("--mkcomposefs", action="append", default=[], metavar="LABEL=BIN_DIR")
    ap.add_argument("--src", help="the tree of TAR, for --mkcomposefs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="bench-object-floor-work")
    args = ap.parse_args()
    if args.mkcomposefs and not args.src:
        sys.exit("--mkcomposefs needs --src")

    size = os.path.getsize(args.tar)
    diff_id = "sha256:" + sha256_file(args.tar) if args.cfs else None
    os.makedirs(args.work, exist_ok=True)
    work = os.path.abspath(args.work)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    # (label, kind, how): kind floor/import/store.
    cases = []
    for spec in args.variant or ["tmpfile="]:
        label, _, rest = spec.partition("=")
        cases.append((f"floor {label}", "floor", shlex.split(rest)))
    for spec in args.cfs:
        label, _, d = spec.partition("=")
        cases.append((f"import {label}", "import", os.path.join(d, "cfs")))
    for spec in args.mkcomposefs:
        label, _, d = spec.partition("=")
        cases.append((f"store {label}", "store", os.path.join(d, "mkcomposefs")))

    dd_before = dd_direct(work)
    print(f"{args.tar}: {size} bytes; dd oflag=direct {dd_before / 1e9:.2f} GB/s; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    rows = {label: [] for label, _, _ in cases}
    objects = None
    for run in range(args.runs):
        order = cases if run % 2 == 0 else cases[::-1]
        for i, (label, kind, how) in enumerate(order):
            dest = os.path.join(work, f"{stamp}-{run}-{i}")
            if kind == "floor":
                p = subprocess.run([args.floor, args.tar, dest, *how], capture_output=True,
                                   text=True)
                m = FLOOR_RE.search(p.stdout)
                if p.returncode != 0 or not m:
                    sys.exit(f"{label}: {p.stdout}{p.stderr}")
                objects = int(m.group(1))
                # The synced span is the one comparable with an import's (it syncs at the end).
                got = (float(m.group(4)), float(m.group(5)), float(m.group(6)))
            elif kind == "import":
                subprocess.run([how, "repo", "init", "--repo", dest, "--insecure", "--algorithm",
                                "fsverity-sha256-12"], check=True, stdout=subprocess.DEVNULL)
                with open(args.tar, "rb") as f:
                    got = timed([how, "oci", "import-layer", "--repo", dest, diff_id, "layer"], f)
            else:
                got = timed([how, f"--digest-store={dest}", args.src, dest + ".img"],
                            subprocess.DEVNULL)
            rows[label].append(got)
            print(f"  run {run} {label:24} {got[0]:.2f} s (user {got[1]:.2f} + sys {got[2]:.2f});"
                  f" load {os.getloadavg()[0]:.1f}", flush=True)
            truncate_tree(dest)
            subprocess.run(["sync"], check=True)
    dd_after = dd_direct(work)
    dd_bw = statistics.median([dd_before, dd_after])
    dd_time = size / dd_bw
    print(f"\ndd oflag=direct before/after: {dd_before / 1e9:.2f} / {dd_after / 1e9:.2f} GB/s; "
          f"the tar's {size} bytes take {dd_time:.2f} s at {dd_bw / 1e9:.2f} GB/s; "
          f"{objects} objects\n")
    print("| case | wall s (median) | user + sys s (median) | time / dd's time |")
    print("|---|---|---|---|")
    for label, got in rows.items():
        wall, user, system = medians(got)
        print(f"| {label} | {wall:.2f} | {user:.2f} + {system:.2f} | {wall / dd_time:.2f} |")


if __name__ == "__main__":
    main()
