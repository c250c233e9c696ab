#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# composefs-info (ls, dump, objects) of cfs versus upstream composefs 1.0.8 on one large image,
# side by side in one run, interleaved so both see the same machine load. Checks that the
# outputs are byte-identical.
#
#   bench/info.sh [IMAGE]
#
# IMAGE     a /usr-sized composefs image (default: built once from SRC_DIR into WORK_DIR with
#           cfs' mkcomposefs, or upstream's when REF_BIN is set)
# Environment:
#   CFS_BIN   directory with cfs' composefs-info and mkcomposefs (default build/bin)
#   REF_BIN   directory with upstream's composefs-info (optional; built outside this repository)
#   SRC_DIR   tree for the default image (default /work/bench-data/usr)
#   WORK_DIR  scratch space (default ./bench-info-work, removed unless KEEP=1)
#   RUNS      repetitions per command and tool (default 5); min and median are reported
# Output: a markdown table (wall min/median, user, sys, peak RSS) and the cfs/ref ratios.
set -euo pipefail
CFS_BIN=${CFS_BIN:-build/bin}
REF_BIN=${REF_BIN:-}
SRC=${SRC_DIR:-/work/bench-data/usr}
WORK=${WORK_DIR:-./bench-info-work}
RUNS=${RUNS:-5}

[ -x "$CFS_BIN/composefs-info" ] || { echo "no $CFS_BIN/composefs-info (build first)" >&2; exit 2; }
if [ -n "$REF_BIN" ] && [ ! -x "$REF_BIN/composefs-info" ]; then
  echo "REF_BIN=$REF_BIN has no composefs-info: measuring cfs only" >&2
  REF_BIN=
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

IMAGE=${1:-}
if [ -z "$IMAGE" ]; then
  [ -d "$SRC" ] || { echo "no image given and no source tree $SRC" >&2; exit 2; }
  IMAGE=$WORK/usr.cfs
  MK=$CFS_BIN/mkcomposefs
  [ -n "$REF_BIN" ] && [ -x "$REF_BIN/mkcomposefs" ] && MK=$REF_BIN/mkcomposefs
  echo "building $IMAGE from $SRC with $MK ..." >&2
  "$MK" "$SRC" "$IMAGE"
fi
echo "image: $IMAGE ($(stat -c %s "$IMAGE") bytes)" >&2
cat "$IMAGE" > /dev/null  # warm: page cache

TOOLS=(cfs)
[ -n "$REF_BIN" ] && TOOLS+=(ref)
bin() { if [ "$1" = cfs ]; then echo "$CFS_BIN/composefs-info"; else echo "$REF_BIN/composefs-info"; fi; }

# run TOOL CMD -> appends "wall user sys rss_kb" to $WORK/TOOL.CMD.times
run() {
  local tool=$1 cmd=$2
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/t" "$(bin "$tool")" "$cmd" "$IMAGE" > "$WORK/$tool.$cmd.out"
  cat "$WORK/t" >> "$WORK/$tool.$cmd.times"
}

for cmd in ls dump objects; do
  for tool in "${TOOLS[@]}"; do rm -f "$WORK/$tool.$cmd.times"; done
  for ((i = 0; i < RUNS; i++)); do
    for tool in "${TOOLS[@]}"; do run "$tool" "$cmd"; done
  done
  if [ -n "$REF_BIN" ] && ! cmp -s "$WORK/cfs.$cmd.out" "$WORK/ref.$cmd.out"; then
    echo "MISMATCH: $cmd output differs between cfs and upstream" >&2
    exit 1
  fi
done

stats() {  # file -> "min median user sys rss_mb" (user/sys/rss of the fastest run)
  sort -n "$1" | awk '{w[NR]=$1; u[NR]=$2; s[NR]=$3; r[NR]=$4}
    END {m=int((NR+1)/2); printf "%.2f %.2f %.2f %.2f %.0f\n", w[1], w[m], u[1], s[1], r[1]/1024}'
}

echo
echo "| command | tool | wall min (median) s | user s | sys s | peak RSS MB | output |"
echo "|---|---|---|---|---|---|---|"
for cmd in ls dump objects; do
  for tool in "${TOOLS[@]}"; do
    read -r mn md us sy rss < <(stats "$WORK/$tool.$cmd.times")
    size=$(stat -c %s "$WORK/$tool.$cmd.out")
    echo "| $cmd | $tool | $mn ($md) | $us | $sy | $rss | $((size / 1000000)) MB |"
  done
done
if [ -n "$REF_BIN" ]; then
  echo
  for cmd in ls dump objects; do
    read -r cmn cmd_med _ _ crss < <(stats "$WORK/cfs.$cmd.times")
    read -r rmn rmd_med _ _ rrss < <(stats "$WORK/ref.$cmd.times")
    awk -v c="$cmn" -v r="$rmn" -v cr="$crss" -v rr="$rrss" -v n="$cmd" \
      'BEGIN {printf "%s: upstream/cfs wall %.2fx, cfs RSS %.0f%% of upstream (outputs identical)\n", n, r/c, 100*cr/rr}'
  done
fi
