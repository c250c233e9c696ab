#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The FUSE mount (cfs mount --fuse) against the kernel mount of the same image (EROFS +
# overlayfs, no verity: this kernel has no fs-verity) and against Debian's fuse-overlayfs over
# the source tree (which verifies nothing). Needs root, /dev/fuse, loop devices.
#
#   bench/fuse.sh [SRC_DIR] [WORK_DIR]
#
# SRC_DIR (default /work/bench-data/usr) is turned into WORK_DIR/usr.cfs + WORK_DIR/store with
# `mkcomposefs --digest-store` once (reused afterwards). Reported, as seconds and ratios:
#   * `find M` (names) and `find M -printf '%s %m %U %G %T@'` (a stat per entry), cold (caches
#     dropped) and warm (second run, same mount);
#   * sequential reads of the largest files (about 2 GiB) with two readers: cold (caches
#     dropped), objects warm but a fresh mount (Merkle trees built at open, every block
#     verified), the same with trees from a persistent cache (tree_cache=), and warm (pages
#     cached by the kernel: verified data is kept across opens).
set -euo pipefail

SRC=${1:-/work/bench-data/usr}
WORK=${2:-$(pwd)/bench-fuse-work}
BIN=${CFS_BIN_DIR:-$(dirname "$0")/../build/bin}
CFS=$BIN/cfs
READ_BYTES=${READ_BYTES:-$((2 << 30))}

[ "$(id -u)" = 0 ] || { echo "fuse.sh: needs root" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "fuse.sh: /dev/fuse missing" >&2; exit 1; }
[ -x "$CFS" ] || { echo "fuse.sh: $CFS not built" >&2; exit 1; }
mkdir -p "$WORK"
IMG=$WORK/usr.cfs
STORE=$WORK/store
if [ ! -s "$IMG" ]; then
  echo "building $IMG from $SRC ..." >&2
  "$BIN/mkcomposefs" --digest-store="$STORE" "$SRC" "$IMG.tmp"
  mv "$IMG.tmp" "$IMG"
fi

E=$WORK/erofs K=$WORK/kernel F=$WORK/fuse O=$WORK/fuse-overlayfs
mkdir -p "$E" "$K" "$F" "$O" "$WORK/trees"
cleanup() {
  for m in "$K" "$E" "$F" "$O"; do
    mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount "$m"; }
  done
  true
}
trap cleanup EXIT
cleanup

now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
secs() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc -l; }
kernel_mount() {
  mount -t erofs -o ro,loop "$IMG" "$E"
  mount -t overlay overlay -o "ro,metacopy=on,redirect_dir=on,lowerdir=$E::$STORE" "$K"
}
kernel_umount() { umount "$K"; umount "$E"; }
fuse_mount() { "$CFS" mount --fuse "$IMG" "$F" -o "basedir=$STORE,$1"; }
fuse_umount() { fusermount3 -u "$F"; }
fo_mount() { fuse-overlayfs -o "lowerdir=$SRC" "$O"; }
fo_umount() { fusermount3 -u "$O"; }

find_names() { find "$1"; }
find_stat() { find "$1" -printf '%s %m %U %G %T@\n'; }

# The largest regular files of the tree, up to READ_BYTES in total (paths relative to SRC).
LIST=$WORK/read-list
if [ ! -s "$LIST" ]; then
  find "$SRC" -type f -size +1M -printf '%s %P\n' | sort -rn |
    awk -v max="$READ_BYTES" '{ if (t + $1 > max) next; t += $1; sub(/^[0-9]+ /, ""); print }' \
    > "$LIST"
fi
LIST_BYTES=$(cd "$SRC" && tr '\n' '\0' < "$LIST" | xargs -0 stat -c %s | awk '{t+=$1} END {print t}')
read_all() { (cd "$1" && tr '\n' '\0' < "$LIST" | xargs -0 -P2 -n 16 cat > /dev/null); }
gbps() { echo "scale=2; $LIST_BYTES / $1 / 1000000000" | bc -l; }

# CPU seconds (user + system) used so far by the FUSE server on $F: load-independent.
fuse_pid() { pgrep -n -f "mount --fuse $IMG $F" || pgrep -n -f "fuse-mount.*$F"; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
read_cpu() {  # prints "wall_seconds server_cpu_seconds"
  local pid c0 w
  pid=$(fuse_pid); c0=$(cpu_of "$pid")
  w=$(secs read_all "$F")
  echo "$w $(echo "$(cpu_of "$pid") - $c0" | bc -l)"
}

declare -A R
measure_tree() {  # name mount-fn umount-fn dir
  local name=$1 up=$2 down=$3 dir=$4
  drop; $up
  R[$name.find.cold]=$(secs find_names "$dir")
  R[$name.find.warm]=$(secs find_names "$dir")
  $down; drop; $up
  R[$name.stat.cold]=$(secs find_stat "$dir")
  R[$name.stat.warm]=$(secs find_stat "$dir")
  $down
}

echo "image: $IMG ($(du -h "$IMG" | cut -f1)), $(find "$SRC" | wc -l) entries;" \
  "read set: $(wc -l < "$LIST") files, $((LIST_BYTES / 1000000)) MB" >&2
measure_tree kernel kernel_mount kernel_umount "$K"
measure_tree fuse "fuse_mount verity=on" fuse_umount "$F"
measure_tree fo fo_mount fo_umount "$O"

# Sequential reads.
drop; kernel_mount; R[kernel.read.cold]=$(secs read_all "$K"); R[kernel.read.warm]=$(secs read_all "$K"); kernel_umount
drop; fo_mount; R[fo.read.cold]=$(secs read_all "$O"); R[fo.read.warm]=$(secs read_all "$O"); fo_umount
drop; fuse_mount verity=on; R[fuse.read.cold]=$(secs read_all "$F"); fuse_umount
read_all "$K" 2>/dev/null || true  # objects into the page cache (the kernel mount is gone: use the store)
(cd "$STORE" && find . -type f -print0 | xargs -0 -P2 -n 64 cat > /dev/null)
fuse_mount verity=on
read -r R[fuse.read.objwarm] R[fuse.cpu.objwarm] < <(read_cpu)
R[fuse.read.warm]=$(secs read_all "$F")
fuse_umount
rm -rf "$WORK/trees"; mkdir -p "$WORK/trees"
fuse_mount "verity=on,tree_cache=$WORK/trees"; read_all "$F"; fuse_umount
fuse_mount "verity=on,tree_cache=$WORK/trees"
read -r R[fuse.read.treecache] R[fuse.cpu.treecache] < <(read_cpu)
fuse_umount
fuse_mount verity=off
read -r R[fuse_off.read.objwarm] R[fuse_off.cpu.objwarm] < <(read_cpu)
fuse_umount

ratio() { echo "scale=2; $1 / $2" | bc -l; }
printf '\n%-34s %10s %10s %16s %10s\n' "operation" "kernel s" "cfs-fuse s" "fuse-overlayfs s" "fuse/kern"
for op in find.cold find.warm stat.cold stat.warm; do
  printf '%-34s %10.3f %10.3f %16.3f %10s\n' "$op" "${R[kernel.$op]}" "${R[fuse.$op]}" \
    "${R[fo.$op]}" "$(ratio "${R[fuse.$op]}" "${R[kernel.$op]}")"
done
printf '\nsequential read of %d MB, 2 readers (GB/s):\n' $((LIST_BYTES / 1000000))
printf '  kernel mount (no verity)      cold %6s   warm %6s\n' "$(gbps "${R[kernel.read.cold]}")" "$(gbps "${R[kernel.read.warm]}")"
printf '  fuse-overlayfs (no verity)    cold %6s   warm %6s\n' "$(gbps "${R[fo.read.cold]}")" "$(gbps "${R[fo.read.warm]}")"
printf '  cfs fuse verity=on            cold %6s   objects warm, fresh mount %6s   trees cached %6s   warm %6s\n' \
  "$(gbps "${R[fuse.read.cold]}")" "$(gbps "${R[fuse.read.objwarm]}")" \
  "$(gbps "${R[fuse.read.treecache]}")" "$(gbps "${R[fuse.read.warm]}")"
printf '  cfs fuse verity=off           objects warm, fresh mount %6s\n' "$(gbps "${R[fuse_off.read.objwarm]}")"
cpu_per_gb() { echo "scale=3; $1 * 1000000000 / $LIST_BYTES" | bc -l; }
printf '\nFUSE server CPU seconds per GB read (load-independent):\n'
printf '  verity=on, trees built at open   %6s\n' "$(cpu_per_gb "${R[fuse.cpu.objwarm]}")"
printf '  verity=on, trees from the cache  %6s\n' "$(cpu_per_gb "${R[fuse.cpu.treecache]}")"
printf '  verity=off                       %6s\n' "$(cpu_per_gb "${R[fuse_off.cpu.objwarm]}")"
printf 'load average during the run: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
