#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Memory of the FUSE servers over repeated walks of the same tree: cfs mount --fuse read-only,
# cfs mount --fuse with upperdir= (writable), and Debian's fuse-overlayfs over the source tree
# (the userspace overlay a user would otherwise run), side by side in one run. Needs root,
# /dev/fuse.
#
#   bench/fuse_memory.sh [SRC_DIR] [WORK_DIR]
#
# SRC_DIR (default /work/bench-data/usr) becomes WORK_DIR/tree.cfs (mkcomposefs, no object
# store: a walk reads no file data, so the store holds empty placeholders named as the image's
# objects, which the mount checks for). Each server serves PASSES walks (`find M -ls`),
# then the kernel drops its dentries and inodes (drop_caches=2: FORGET for every node) and
# AFTER more walks follow. Reported: VmRSS (KiB, from /proc/PID/status) at the start and after
# every pass, and the growth per entry after the first pass.
set -euo pipefail

SRC=${1:-/work/bench-data/usr}
WORK=${2:-$(pwd)/bench-fuse-memory-work}
BIN=${CFS_BIN_DIR:-$(dirname "$0")/../build/bin}
CFS=$BIN/cfs
PASSES=${PASSES:-8}
AFTER=${AFTER:-3}

[ "$(id -u)" = 0 ] || { echo "fuse_memory.sh: needs root" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "fuse_memory.sh: /dev/fuse missing" >&2; exit 1; }
[ -x "$CFS" ] || { echo "fuse_memory.sh: $CFS not built" >&2; exit 1; }
[ -d "$SRC" ] || { echo "fuse_memory.sh: no source tree $SRC" >&2; exit 1; }
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
IMG=$WORK/tree.cfs
STORE=$WORK/store
M=$WORK/mnt
mkdir -p "$STORE" "$M"
if [ ! -s "$IMG" ]; then
  echo "building $IMG from $SRC ..." >&2
  "$BIN/mkcomposefs" "$SRC" "$IMG.tmp"
  mv "$IMG.tmp" "$IMG"
fi
if [ ! -e "$STORE/.planted" ]; then
  "$BIN/composefs-info" objects "$IMG" | python3 -c '
import os, sys
for o in sys.stdin.read().split():
    os.makedirs(os.path.join(sys.argv[1], o[:2]), exist_ok=True)
    open(os.path.join(sys.argv[1], o), "w").close()' "$STORE"
  : > "$STORE/.planted"
fi
ENTRIES=$(find "$SRC" | wc -l)

PID=
cleanup() {
  mountpoint -q "$M" && { fusermount3 -u "$M" 2> /dev/null || umount -l "$M"; }
  [ -n "$PID" ] && wait "$PID" 2> /dev/null || true
  rm -rf "$WORK/upper" "$WORK/work" "$WORK/fo-upper" "$WORK/fo-work"
}
trap cleanup EXIT

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# measure LABEL CMD...: starts the server in the foreground, walks, prints one table row.
measure() {
  local label=$1 i row first
  shift
  "$@" &
  PID=$!
  for i in $(seq 200); do mountpoint -q "$M" && break; sleep 0.05; done
  mountpoint -q "$M" || { echo "$label: mount did not appear" >&2; exit 1; }
  row="| $label | $(rss $PID)"
  for i in $(seq "$PASSES"); do
    find "$M" -ls > /dev/null
    row="$row | $(rss $PID)"
    [ "$i" = 1 ] && first=$(rss $PID)
  done
  local last
  last=$(rss $PID)
  echo 2 > /proc/sys/vm/drop_caches
  for i in $(seq "$AFTER"); do
    find "$M" -ls > /dev/null
    row="$row | $(rss $PID)"
    last=$(rss $PID)
  done
  row="$row | $(awk -v a="$first" -v b="$last" -v n="$ENTRIES" \
      'BEGIN {printf "%.1f", (b - a) * 1024 / n}') |"
  echo "$row"
  fusermount3 -u "$M"
  wait "$PID" || true
  PID=
}

header="| server | start"
sep="|---|---"
for i in $(seq "$PASSES"); do header="$header | pass $i"; sep="$sep|---"; done
for i in $(seq "$AFTER"); do header="$header | after drop $i"; sep="$sep|---"; done
echo "VmRSS in KiB, $ENTRIES entries in $SRC, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "$header | growth after pass 1 (bytes/entry) |"
echo "$sep|---|"
measure "cfs fuse, read-only" "$CFS" mount --fuse -f "$IMG" "$M" -o "basedir=$STORE,verity=on"
mkdir -p "$WORK/upper" "$WORK/work"
measure "cfs fuse, upperdir=" "$CFS" mount --fuse -f "$IMG" "$M" \
  -o "basedir=$STORE,verity=on,upperdir=$WORK/upper,workdir=$WORK/work"
if command -v fuse-overlayfs > /dev/null; then
  mkdir -p "$WORK/fo-upper" "$WORK/fo-work"
  measure "fuse-overlayfs" fuse-overlayfs -f \
    -o "lowerdir=$SRC,upperdir=$WORK/fo-upper,workdir=$WORK/fo-work" "$M"
fi
