#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# cfs digest vs fsverity digest, side by side, on (1) one 2 GiB random file in the page cache
# and (2) 100,000 random 4 KiB files digested in one invocation. Prints seconds (best of N
# runs), GB/s or files/s, and the ratio; checks that both tools print the same digests. With
# BUILD_DIR/bench/verity_bench built, also the engine's hashing limit without I/O (1 and 2
# threads) and the large-file rate as a share of it.
#
# usage: bench/digest.sh [BUILD_DIR]     (default build)
#   CFS_BENCH_DIR   where test data lives (default /dev/shm/cfs-bench-digest, kept for reuse)
#   RUNS            repetitions per measurement (default 3)
#   BIG_MB / SMALL_FILES   data set sizes (default 2048 / 100000)
# Other load on the machine skews the numbers: run it on an idle machine and say if it wasn't.
set -euo pipefail
BUILD=$(realpath "${1:-build}")
CFS=$BUILD/bin/cfs
DIR=${CFS_BENCH_DIR:-/dev/shm/cfs-bench-digest}
RUNS=${RUNS:-3}
BIG_MB=${BIG_MB:-2048}
SMALL_FILES=${SMALL_FILES:-100000}
command -v fsverity >/dev/null || { echo "fsverity not installed (apt install fsverity)" >&2; exit 1; }
[ -x "$CFS" ] || { echo "$CFS not built" >&2; exit 1; }

mkdir -p "$DIR"
big=$DIR/big-$BIG_MB.bin
if [ ! -f "$big" ]; then
  echo "creating $big ($BIG_MB MiB random)" >&2
  head -c "$((BIG_MB << 20))" /dev/urandom > "$big.tmp" && mv "$big.tmp" "$big"
fi
small=$DIR/small-$SMALL_FILES
if [ ! -d "$small" ]; then
  echo "creating $SMALL_FILES files of 4 KiB in $small" >&2
  python3 - "$small.tmp" "$SMALL_FILES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, f"{i:06d}"), "wb") as f:
        f.write(os.urandom(4096))
PY
  mv "$small.tmp" "$small"
fi
cat "$big" > /dev/null  # into the page cache

# best_of CMD...: runs CMD RUNS times (stdout discarded), prints the best wall time in seconds.
best_of() {
  local best="" t0 t1 dt
  for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    "$@" > /dev/null
    t1=$(date +%s.%N)
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    if [ -z "$best" ] || awk -v d="$dt" -v b="$best" 'BEGIN { exit !(d < b) }'; then best=$dt; fi
  done
  echo "$best"
}
rate() { awk "BEGIN { printf \"%.2f\", ($1) / ($2) }"; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cfs engine: ${CFS_VERITY_ENGINE:-auto}; runs: best of $RUNS"
echo

# Correctness first: identical output.
if ! cmp -s <("$CFS" digest "$big") <(fsverity digest "$big"); then
  echo "MISMATCH on $big" >&2; exit 1
fi
(cd "$small" && cmp -s <(ls | head -2000 | xargs "$CFS" digest) <(ls | head -2000 | xargs fsverity digest)) ||
  { echo "MISMATCH on small files" >&2; exit 1; }

bytes=$(stat -c %s "$big")
t_fsv=$(best_of fsverity digest "$big")
t_cfs=$(best_of "$CFS" digest "$big")
t_cfs1=$(best_of "$CFS" digest --threads=1 "$big")
printf '%-44s %8s %10s\n' "large file ($BIG_MB MiB, page cache)" "seconds" "GB/s"
printf '%-44s %8.3f %10.2f\n' "fsverity digest" "$t_fsv" "$(rate "$bytes / 1000000000" "$t_fsv")"
printf '%-44s %8.3f %10.2f\n' "cfs digest --threads=1" "$t_cfs1" "$(rate "$bytes / 1000000000" "$t_cfs1")"
printf '%-44s %8.3f %10.2f\n' "cfs digest (all CPUs)" "$t_cfs" "$(rate "$bytes / 1000000000" "$t_cfs")"
printf 'ratio cfs/fsverity: %sx (1 thread: %sx)\n' "$(rate "$t_fsv" "$t_cfs")" "$(rate "$t_fsv" "$t_cfs1")"

# The hashing limit of the engine alone (64 MiB Merkle tree in memory, no I/O), for the engine
# `cfs digest` used: what the file path is measured against.
VBENCH=$BUILD/bench/verity_bench
if [ -x "$VBENCH" ]; then
  declare -A engine_index=([portable]=1 [sha-ni-1]=2 [sha-ni-2]=3 [sha-ni-3]=4 [sha-ni-4]=5
                           [sha-ni-6]=6 [sha-ni-8]=7 [avx512-16]=8)
  # Engine 0 is the default (auto), labelled with the engine it resolves to on this host.
  filter="BM_Tree/${engine_index[${CFS_VERITY_ENGINE:-auto}]:-0}/"
  "$VBENCH" --benchmark_filter="$filter" --benchmark_min_time=0.5 --benchmark_format=json 2>/dev/null |
    python3 -c '
import json, sys
gb, t1, t2 = float(sys.argv[1]) / 1e9, float(sys.argv[2]), float(sys.argv[3])
rows = [b for b in json.load(sys.stdin)["benchmarks"] if "error_occurred" not in b]
label = rows[0]["label"]
limit = {int(b["name"].split("/")[2]): b["bytes_per_second"] / 1e9 for b in rows if b["label"] == label}
print(f"engine limit ({label}, in memory): 1 thread {limit[1]:.2f} GB/s, 2 threads {limit[2]:.2f} GB/s")
print(f"cfs digest: 1 thread {gb / t1:.2f} GB/s = {100 * gb / t1 / limit[1]:.0f} % of it, "
      f"all CPUs {gb / t2:.2f} GB/s = {100 * gb / t2 / limit[2]:.0f} % of the 2-thread limit")
' "$bytes" "$t_cfs1" "$t_cfs"
fi
echo

cd "$small"
t_fsv=$(best_of fsverity digest -- *)
t_cfs=$(best_of "$CFS" digest -- *)
t_cfs1=$(best_of "$CFS" digest --threads=1 -- *)
printf '%-44s %8s %10s\n' "$SMALL_FILES files of 4 KiB, one invocation" "seconds" "files/s"
printf '%-44s %8.3f %10.0f\n' "fsverity digest" "$t_fsv" "$(rate "$SMALL_FILES" "$t_fsv")"
printf '%-44s %8.3f %10.0f\n' "cfs digest --threads=1" "$t_cfs1" "$(rate "$SMALL_FILES" "$t_cfs1")"
printf '%-44s %8.3f %10.0f\n' "cfs digest (all CPUs)" "$t_cfs" "$(rate "$SMALL_FILES" "$t_cfs")"
printf 'ratio cfs/fsverity: %sx (1 thread: %sx)\n' "$(rate "$t_fsv" "$t_cfs")" "$(rate "$t_fsv" "$t_cfs1")"
