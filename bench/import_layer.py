#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Uncompressed layer import against the disk's direct-write bandwidth (issue 13: "an
uncompressed layer imported at 1.5 GB/s or more on 2 cores, or within 1.5x of the disk's
direct-write bandwidth where that is lower; print it next to the result").

  bench/import_layer.py TAR --ab LABEL=BUILD_DIR [--ab LABEL=BUILD_DIR ...] [--runs 3]
                        [--work DIR] [--check]

TAR is an uncompressed layer (e.g. `tar -C usr-subset -cf /dev/shm/x.tar .`; keep it in
/dev/shm so reading it costs no disk). Its sha256 is the diff_id. Every run imports it with
`cfs oci import-layer DIFF_ID NAME < TAR` into a fresh insecure SHA-256 repository under
--work (on the disk being measured), each build in turn (the order reversed every other run:
a same-run A/B on a shared machine), timed with wait4 (wall, user and system CPU of the
process). `dd if=/dev/zero bs=1M count=2048 oflag=direct` on the same filesystem runs before
the first and after the last import; the result is printed as MB/s and as the ratio of the
import's time to the time dd needs for the tar's bytes (the target: at most 1.5).

A run's object files are truncated, not deleted, once timed: deleting tens of thousands of
inodes taxes the next run's inode allocation on this host's ext4 for minutes (bench/README.md,
"Session 8"); the emptied repositories are left in place for the same reason (remove --work
when the machine is quiet). With --check, each build's first repository is verified before it
is emptied: `cfs oci layer DIFF_ID` must reproduce the tar's sha256 (the diff_id)."""
import argparse
import hashlib
import os
import re
import stat
import statistics
import subprocess
import sys
import time


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def dd_direct(work):
    """dd's direct-write bandwidth on the filesystem of `work`, bytes per second."""
    target = os.path.join(work, "dd.tmp")
    p = subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=2048",
                        "oflag=direct"], capture_output=True, text=True, check=True)
    os.unlink(target)  # one inode: no allocator tax
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", p.stderr)
    return int(m.group(1)) / float(m.group(2))


def timed(cmd, stdin):
    """Wall, user and system seconds of a command that must succeed."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd} failed ({code}): {err.decode(errors='replace')}")
    return wall, ru.ru_utime, ru.ru_stime


def medians(got):
    """The medians of timed()'s (wall, user, system) triples."""
    return tuple(statistics.median(t[i] for t in got) for i in range(3))


def truncate_tree(d):
    """Empties every regular file below d, leaving the inodes: deleting tens of thousands of them
    taxes the next run's inode allocations on this host's ext4 (the module's docstring)."""
    for dirpath, _, files in os.walk(d):
        for f in files:
            path = os.path.join(dirpath, f)
            # Regular files only: an unpacked rootfs (registry.py --import's C) may hold links,
            # fifos and devices.
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.truncate(path, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tar")
    ap.add_argument("--ab", action="append", required=True, metavar="LABEL=BUILD_DIR")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="bench-import-layer-work")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    builds = []
    for spec in args.ab:
        label, _, build = spec.partition("=")
        cfs = os.path.join(build, "bin", "cfs")
        if not os.access(cfs, os.X_OK):
            sys.exit(f"no {cfs}")
        builds.append((label, os.path.abspath(cfs)))
    size = os.path.getsize(args.tar)
    diff_id = "sha256:" + sha256_file(args.tar)
    os.makedirs(args.work, exist_ok=True)
    work = os.path.abspath(args.work)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    dd_before = dd_direct(work)
    print(f"{args.tar}: {size} bytes, diff_id {diff_id}; dd oflag=direct {dd_before / 1e9:.2f} "
          f"GB/s; load {os.getloadavg()[0]:.1f}", flush=True)
    rows = {label: [] for label, _ in builds}
    for run in range(args.runs):
        order = builds if run % 2 == 0 else builds[::-1]
        for label, cfs in order:
            repo = os.path.join(work, f"{stamp}-{label}-{run}")
            subprocess.run([cfs, "repo", "init", "--repo", repo, "--insecure", "--algorithm",
                            "fsverity-sha256-12"], check=True, stdout=subprocess.DEVNULL)
            with open(args.tar, "rb") as f:
                wall, user, system = timed(
                    [cfs, "oci", "import-layer", "--repo", repo, diff_id, "layer"], f)
            rows[label].append((wall, user, system))
            print(f"  run {run} {label:10} {wall:.2f} s (user {user:.2f} + sys {system:.2f}), "
                  f"{size / wall / 1e6:.0f} MB/s; load {os.getloadavg()[0]:.1f}", flush=True)
            if args.check and run < 2:
                p = subprocess.Popen([cfs, "oci", "layer", "--repo", repo, diff_id],
                                     stdout=subprocess.PIPE)
                h = hashlib.sha256()
                while chunk := p.stdout.read(1 << 20):
                    h.update(chunk)
                if p.wait() != 0 or "sha256:" + h.hexdigest() != diff_id:
                    sys.exit(f"{label}: cfs oci layer does not give back the tar "
                             f"(sha256:{h.hexdigest()})")
            truncate_tree(repo)
    dd_after = dd_direct(work)
    dd_bw = statistics.median([dd_before, dd_after])
    print(f"\ndd oflag=direct before/after: {dd_before / 1e9:.2f} / {dd_after / 1e9:.2f} GB/s; "
          f"the tar's bytes take {size / dd_bw:.2f} s at {dd_bw / 1e9:.2f} GB/s\n")
    print("| build | wall s (median) | user + sys s (median) | MB/s | time / dd's time |")
    print("|---|---|---|---|---|")
    for label, got in rows.items():
        wall, user, system = medians(got)
        print(f"| {label} | {wall:.2f} | {user:.2f} + {system:.2f} | {size / wall / 1e6:.0f} | "
              f"{wall / (size / dd_bw):.2f} |")


if __name__ == "__main__":
    main()
