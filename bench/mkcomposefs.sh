#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# cfs mkcomposefs versus upstream composefs 1.0.8 on a large tree, side by side in one run:
# warm build, build with a fresh digest store, build from a dump, peak RSS, identical bytes.
#
#   bench/mkcomposefs.sh [SRC_DIR]
#
# SRC_DIR   tree to build from (default /work/bench-data/usr, a `cp -a` of /usr)
# Environment:
#   CFS_BIN      directory with cfs' mkcomposefs and composefs-info (default build/bin)
#   REF_BIN      directory with upstream's mkcomposefs and composefs-info (optional; built
#                outside this repository; without it only cfs is measured)
#   WORK_DIR     scratch space, needs the tree size x STORE_RUNS x 2 (tools) for the store runs
#                (default ./bench-mkcomposefs-work, removed afterwards unless KEEP=1)
#   RUNS         repetitions of the warm and dump builds (default 3); STORE_RUNS for the
#                fresh-store builds (default 1: each writes the whole tree to disk)
#   THREADS      --threads for both tools (default: all CPUs, as both tools default to)
# Output: one markdown table (min and median wall time, user, sys, peak RSS) plus ratios.
set -euo pipefail
SRC=${1:-/work/bench-data/usr}
CFS_BIN=${CFS_BIN:-build/bin}
REF_BIN=${REF_BIN:-}
WORK=${WORK_DIR:-./bench-mkcomposefs-work}
RUNS=${RUNS:-3}
STORE_RUNS=${STORE_RUNS:-1}
THREADS=${THREADS:-}

[ -d "$SRC" ] || { echo "no source tree $SRC" >&2; exit 2; }
[ -x "$CFS_BIN/mkcomposefs" ] || { echo "no $CFS_BIN/mkcomposefs (build first)" >&2; exit 2; }
if [ -n "$REF_BIN" ] && [ ! -x "$REF_BIN/mkcomposefs" ]; then
  echo "REF_BIN=$REF_BIN has no mkcomposefs: measuring cfs only" >&2
  REF_BIN=
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
TOOLS=(cfs)
[ -n "$REF_BIN" ] && TOOLS+=(ref)
bin() { if [ "$1" = cfs ]; then echo "$CFS_BIN/$2"; else echo "$REF_BIN/$2"; fi; }
THREAD_ARGS=()
[ -n "$THREADS" ] && THREAD_ARGS=(--threads="$THREADS")

# timed NAME CMD...: appends "wall user sys rss_kb" to $WORK/NAME.times
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/.t" "$@" > /dev/null
  cat "$WORK/.t" >> "$WORK/$name.times"
}

summary() {  # NAME -> "min median user sys rss" (user/sys/rss of the fastest run)
  sort -n "$WORK/$1.times" | awk '{w[NR]=$1; u[NR]=$2; s[NR]=$3; r[NR]=$4}
    END {m = (w[int((NR + 1) / 2)] + w[int(NR / 2) + 1]) / 2
         printf "%.2f %.2f %.2f %.2f %.0f\n", w[1], m, u[1], s[1], r[1] / 1024}'
}

echo "warming the page cache with $SRC ..." >&2
find "$SRC" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true
sync

echo "warm builds ($RUNS runs each, interleaved) ..." >&2
for i in $(seq "$RUNS"); do
  for tool in "${TOOLS[@]}"; do
    timed "build-$tool" "$(bin "$tool" mkcomposefs)" "${THREAD_ARGS[@]}" "$SRC" "$WORK/$tool.img"
  done
done

DUMP=$WORK/tree.dump
if [ -n "$REF_BIN" ]; then
  "$REF_BIN/composefs-info" dump "$WORK/ref.img" > "$DUMP"
elif [ -x "$CFS_BIN/composefs-info" ]; then
  "$CFS_BIN/composefs-info" dump "$WORK/cfs.img" > "$DUMP"
fi
echo "builds from the dump ($RUNS runs each) ..." >&2
for i in $(seq "$RUNS"); do
  for tool in "${TOOLS[@]}"; do
    timed "dump-$tool" "$(bin "$tool" mkcomposefs)" --from-file "$DUMP" "$WORK/$tool-dump.img"
  done
done

echo "fresh digest stores ($STORE_RUNS runs each; each copies the whole tree) ..." >&2
# Every store run gets its own new directory and nothing is deleted until the end: on ext4
# without a journal (this machine's root), a new inode may not reuse one deleted in the last
# 60 s, or 360 s while its inode-table block is dirty, and the allocator checks every such
# candidate, so a run right after deleting a 124k-object store spends a third of its CPU
# skipping them. A fresh store on a filesystem that did not just delete one is the case to
# measure. Each finished store's clean pages are dropped from the page cache so the next run
# finds the same cache state (source tree warm, nothing else).
need_kb=$(( $(du -sk "$SRC" | cut -f1) * STORE_RUNS * ${#TOOLS[@]} * 11 / 10 ))
free_kb=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if [ "$free_kb" -lt "$need_kb" ]; then
  echo "need $((need_kb >> 20)) GiB free in $WORK for the store runs, have $((free_kb >> 20)) GiB" >&2
  exit 2
fi
drop_cached() {  # DIR: evict its files' (clean) pages from the page cache
  python3 - "$1" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        fd = os.open(os.path.join(root, f), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}
for i in $(seq "$STORE_RUNS"); do
  for tool in "${TOOLS[@]}"; do
    store=$WORK/store-$tool-$i
    timed "store-$tool" "$(bin "$tool" mkcomposefs)" "${THREAD_ARGS[@]}" \
      --digest-store="$store" "$SRC" "$WORK/$tool-store.img"
    # Upstream fsyncs each object; cfs syncs the store once before publishing the image.
    # Neither leaves dirty data behind that the next run would pay for.
    sync
    find "$store" -type f | wc -l > "$WORK/store-$tool.objects"
    drop_cached "$store"
  done
done

same() { cmp -s "$1" "$2" && echo yes || echo NO; }
echo
echo "Source: $SRC ($(find "$SRC" | wc -l) entries, $(du -sh --apparent-size "$SRC" | cut -f1))," \
  "$(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | tool | wall min (s) | wall median (s) | user (s) | sys (s) | peak RSS (MB) |"
echo "|---|---|---|---|---|---|---|"
for run in build store dump; do
  for tool in "${TOOLS[@]}"; do
    read -r mn md us sy rss < <(summary "$run-$tool")
    echo "| $run | $tool | $mn | $md | $us | $sy | $rss |"
  done
done
echo
if [ -n "$REF_BIN" ]; then
  for run in build store dump; do
    read -r cm _ < <(summary "$run-cfs")
    read -r rm_ _ < <(summary "$run-ref")
    echo "$run: cfs is $(awk -v a="$rm_" -v b="$cm" 'BEGIN {printf "%.2f", a / b}')x faster (min wall)"
  done
  echo "objects: cfs $(cat "$WORK/store-cfs.objects"), upstream $(cat "$WORK/store-ref.objects")"
  echo "identical image bytes: build $(same "$WORK/cfs.img" "$WORK/ref.img")," \
    "with store $(same "$WORK/cfs-store.img" "$WORK/ref-store.img")," \
    "from dump $(same "$WORK/cfs-dump.img" "$WORK/ref-dump.img")," \
    "dump round trip $(same "$WORK/cfs-dump.img" "$WORK/cfs.img")"
else
  echo "identical image bytes: with store $(same "$WORK/cfs-store.img" "$WORK/cfs.img")," \
    "from dump $(same "$WORK/cfs-dump.img" "$WORK/cfs.img")"
fi
