#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Repositories, side by side with what a user would otherwise run, in one run:
#   1. building a tree into a fresh repository (cfs create --repo) versus mkcomposefs
#      --digest-store into a fresh store (cfs and composefs 1.0.8);
#   2. fsck of a repository holding three versions of the tree (5 % of the files changed in
#      each) versus `fsverity digest` of every object (fsverity-utils, all CPUs) and a name
#      comparison: objects/s and GB/s;
#   3. gc of that repository: the live set computed (--dry-run) versus the pipeline that was
#      the only way before (composefs-info objects of the kept images | sort, find | sort,
#      comm), then the real collection after one version is unnamed: wall time, objects/s.
#
#   bench/repo.sh [SRC_DIR]
#
# SRC_DIR   tree (default /work/bench-data/usr, a `cp -a` of /usr)
# Environment:
#   CFS_BIN   directory with cfs and its mkcomposefs (default build/bin)
#   REF_BIN   composefs 1.0.8 tools (default /work/ref/composefs/build/tools when present)
#   WORK_DIR  scratch space: about 4x the tree (default ./bench-repo-work, removed afterwards
#             unless KEEP=1)
#   CHURN     percent of the files changed per version (default 5)
# Output: markdown tables and ratios. Timings on a shared machine are "loaded".
set -euo pipefail
SRC=${1:-/work/bench-data/usr}
CFS_BIN=${CFS_BIN:-build/bin}
REF_BIN=${REF_BIN:-/work/ref/composefs/build/tools}
WORK=${WORK_DIR:-./bench-repo-work}
CHURN=${CHURN:-5}

[ -d "$SRC" ] || { echo "no source tree $SRC (cp -a /usr /work/bench-data/usr)" >&2; exit 2; }
[ -x "$CFS_BIN/cfs" ] || { echo "no $CFS_BIN/cfs (build first)" >&2; exit 2; }
command -v fsverity > /dev/null || { echo "fsverity (fsverity-utils) needed" >&2; exit 2; }
[ -x "$REF_BIN/mkcomposefs" ] || { echo "no composefs 1.0.8 in $REF_BIN: cfs only" >&2; REF_BIN=; }
CFS_BIN=$(cd "$CFS_BIN" && pwd)
CFS=$CFS_BIN/cfs
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
need_kb=$(( $(du -sk "$SRC" | cut -f1) * 4 ))
free_kb=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
[ "$free_kb" -ge "$need_kb" ] || { echo "need $((need_kb >> 20)) GiB in $WORK" >&2; exit 2; }
NPROC=$(nproc)

# timed NAME CMD...: wall seconds of CMD (a program or a function) into $WORK/NAME.time,
# its stdout into $WORK/NAME.out
timed() {
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" > "$WORK/$name.out"
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f\n", b - a}' > "$WORK/$name.time"
}
t() { cat "$WORK/$1.time"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
drop_cached() {  # DIR: evict its files' clean pages, so each run starts from the same state
  python3 - "$1" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        try:
            fd = os.open(os.path.join(root, f), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

echo "warming the page cache with $SRC ..." >&2
find "$SRC" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true
sync

echo "1. fresh repository / fresh digest stores ..." >&2
REPO=$WORK/repo
"$CFS" repo init --repo "$REPO" --insecure --algorithm fsverity-sha256-12
timed build-repo "$CFS" create --repo "$REPO" "$SRC" --name v1 --json
sync; drop_cached "$REPO"
timed build-cfs "$CFS_BIN/mkcomposefs" --digest-store="$WORK/store-cfs" "$SRC" "$WORK/cfs.img"
sync; drop_cached "$WORK/store-cfs"
if [ -n "$REF_BIN" ]; then
  timed build-ref "$REF_BIN/mkcomposefs" --digest-store="$WORK/store-ref" "$SRC" "$WORK/ref.img"
  sync; drop_cached "$WORK/store-ref"
fi
rm -rf "$WORK/store-cfs" "$WORK/store-ref"

echo "   versions 2 and 3 ($CHURN % of the files changed in each) ..." >&2
make_version() {  # N FROM: hardlinked copy of FROM with every (100/CHURN)-th file rewritten
  local dst=$WORK/src-v$1
  cp -al "$2" "$dst"
  find "$dst" -type f -size +64c -print0 | sort -z |
    awk -v RS='\0' -v ORS='\0' -v every=$((100 / CHURN)) -v off="$1" 'NR % every == off % every' |
    while IFS= read -r -d '' f; do
      { cat "$f"; printf 'version %s\n' "$1"; } > "$f.new" && mv -f "$f.new" "$f"
    done
}
# Each version derives from the one before, so unnaming v1 leaves v1's old contents as garbage.
prev=$SRC
for v in 2 3; do
  make_version $v "$prev"
  prev=$WORK/src-v$v
  timed "build-v$v" "$CFS" create --repo "$REPO" "$WORK/src-v$v" --name "v$v" --json
done
sync; drop_cached "$REPO"
objects=$(find "$REPO/objects" -type f | wc -l)
bytes=$(du -sb "$REPO/objects" | cut -f1)

echo "2. fsck ..." >&2
timed fsck-cfs "$CFS" repo fsck --repo "$REPO" --json
drop_cached "$REPO"
# The alternative: digest every object with fsverity-utils and compare it with its name.
fsverity_check() (
  # Each batch compares its own digests and prints one count (parallel writers to one pipe
  # would interleave their lines).
  cd "$REPO/objects" && find . -mindepth 2 -type f -printf '%P\0' |
    xargs -0 -n 64 -P "$NPROC" sh -c 'fsverity digest "$@" | awk '"'"'{ d = $1;
        sub("^sha256:", "", d); n = $2; gsub("/", "", n); if (d != n) bad++ }
        END { print bad + 0 }'"'"'' sh |
    awk '{ s += $1 } END { print s + 0 }'
)
timed fsck-fsverity fsverity_check
bad=$(cat "$WORK/fsck-fsverity.out")

echo "3. gc ..." >&2
image_of() { basename "$(readlink "$REPO/images/refs/$1")"; }
live_pipeline() {  # what had to be done by hand: objects of the kept images vs the store
  local info=${REF_BIN:-$CFS_BIN}/composefs-info
  { echo "$(image_of v2)"; echo "$(image_of v3)";
    "$info" objects "$REPO/images/$(image_of v2)" "$REPO/images/$(image_of v3)"; } |
    tr -d '/' | sort -u > "$WORK/live"
  find "$REPO/objects" -mindepth 2 -type f -printf '%h%f\n' | sed 's|.*/objects/||; s|/||' |
    sort > "$WORK/all"
  comm -23 "$WORK/all" "$WORK/live" | wc -l
}
"$CFS" repo untag --repo "$REPO" v1
drop_cached "$REPO"
timed gc-dry "$CFS" repo gc --dry-run --json --repo "$REPO"
timed gc-pipeline live_pipeline
timed gc-cfs "$CFS" repo gc --json --repo "$REPO"
removed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["objects_removed"])' \
  "$WORK/gc-cfs.out")
dry_removed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["objects_removed"])' \
  "$WORK/gc-dry.out")
pipeline_removed=$(cat "$WORK/gc-pipeline.out")
fsck_ok=$("$CFS" repo fsck --repo "$REPO" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')

echo
echo "Tree: $SRC ($(find "$SRC" | wc -l) entries); $NPROC CPUs; $(date -u +%F)."
echo
echo "| build into a fresh store (s) | cfs create --repo | cfs mkcomposefs --digest-store | composefs 1.0.8 --digest-store | 1.0.8 / cfs repo |"
echo "|---|---|---|---|---|"
echo "| $SRC | $(t build-repo) | $(t build-cfs) | ${REF_BIN:+$(t build-ref)} | ${REF_BIN:+$(ratio "$(t build-ref)" "$(t build-repo)")} |"
echo "| version 2 / 3 into the same repository | $(t build-v2) / $(t build-v3) | | | |"
echo
echo "Repository: 3 versions, $objects objects, $((bytes >> 20)) MiB."
echo
echo "| fsck | wall (s) | objects/s | GB/s |"
echo "|---|---|---|---|"
for x in fsck-cfs fsck-fsverity; do
  echo "| $x | $(t $x) | $(awk -v n="$objects" -v s="$(t $x)" 'BEGIN {printf "%.0f", n / s}') | $(awk -v b="$bytes" -v s="$(t $x)" 'BEGIN {printf "%.2f", b / s / 1e9}') |"
done
echo "| ratio fsverity / cfs | $(ratio "$(t fsck-fsverity)" "$(t fsck-cfs)") | | |"
echo
echo "| gc (v1 unnamed) | wall (s) | objects/s | objects to remove |"
echo "|---|---|---|---|"
for x in gc-dry gc-pipeline gc-cfs; do
  echo "| $x | $(t $x) | $(awk -v n="$objects" -v s="$(t $x)" 'BEGIN {printf "%.0f", n / s}') | $([ $x = gc-pipeline ] && echo "$pipeline_removed" || ([ $x = gc-dry ] && echo "$dry_removed" || echo "$removed")) |"
done
echo "| ratio pipeline / cfs --dry-run | $(ratio "$(t gc-pipeline)" "$(t gc-dry)") | | |"
echo
echo "Checks: fsverity found $bad mismatches; gc removed $removed (dry run $dry_removed, pipeline $pipeline_removed); fsck after gc ok: $fsck_ok."
