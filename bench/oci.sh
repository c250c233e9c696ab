#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# OCI import, side by side with the pipeline a user has today, in one run:
#   cfs oci pull oci:LAYOUT  (layers split into a repository, merged image written)
#   versus umoci unpack + composefs 1.0.8 mkcomposefs --digest-store (a full copy on disk, then
#   an image and an object store from it)
# for one image made from SRC_DIR with `umoci insert` (one gzip layer), and the same image with
# zstd layers (skopeo copy --dest-compress-format zstd; umoci 0.4.7 reads no zstd, so there the
# user's pipeline starts with skopeo recompressing to gzip). Also: gzip inflate with ISA-L versus
# zlib on the gzip layer (cfs-oci-test decompress), and the pull's peak RSS.
#
#   bench/oci.sh [SRC_DIR | oci:LAYOUT:TAG]
#
# SRC_DIR   tree (default /work/bench-data/usr-subset), inserted as /usr of a one-layer image
# oci:LAYOUT:TAG  an existing image with gzip layers instead (copied as is; e.g. the Debian
#           image of tests/testlib/oci_debian.py: oci:/var/cache/cfs-oci-debian/layout:bookworm)
# Environment:
#   CFS_BIN   directory with cfs and cfs-oci-test (default build/bin)
#   REF_BIN   composefs 1.0.8 tools (default /work/ref/composefs/build/tools)
#   WORK_DIR  scratch space, about 5x the tree (default ./bench-oci-work; removed unless KEEP=1)
# Output: a markdown table and ratios. Timings on a shared machine are "loaded".
set -euo pipefail
SRC=${1:-/work/bench-data/usr-subset}
CFS_BIN=${CFS_BIN:-build/bin}
REF_BIN=${REF_BIN:-/work/ref/composefs/build/tools}
WORK=${WORK_DIR:-./bench-oci-work}

case "$SRC" in
  oci:*) ;;
  *) [ -d "$SRC" ] || { echo "no source tree $SRC" >&2; exit 2; } ;;
esac
[ -x "$CFS_BIN/cfs" ] || { echo "no $CFS_BIN/cfs (build first)" >&2; exit 2; }
for p in umoci skopeo; do command -v $p > /dev/null || { echo "$p needed" >&2; exit 2; }; done
[ -x "$REF_BIN/mkcomposefs" ] || { echo "no composefs 1.0.8 mkcomposefs in $REF_BIN" >&2; exit 2; }
CFS_BIN=$(cd "$CFS_BIN" && pwd)
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

timed() {  # NAME CMD...: wall seconds into $WORK/NAME.time
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f\n", b - a}' > "$WORK/$name.time"
}
t() { cat "$WORK/$1.time"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

if [[ "$SRC" == oci:* ]]; then
  echo "copying $SRC (layers as they are) ..." >&2
  skopeo copy -q "$SRC" "oci:$WORK/layout:t"
else
  echo "building the image from $SRC (umoci insert, gzip) ..." >&2
  umoci init --layout "$WORK/layout" > /dev/null
  umoci new --image "$WORK/layout:t" > /dev/null
  umoci insert --image "$WORK/layout:t" "$SRC" /usr > /dev/null
fi
skopeo copy -q --dest-compress-format zstd "oci:$WORK/layout:t" "oci:$WORK/zstd:t"
BLOB=$(python3 -c 'import json,sys; d=sys.argv[1]; i=json.load(open(d+"/index.json"))
m=json.load(open(d+"/blobs/"+i["manifests"][0]["digest"].replace(":","/")))
print(d+"/blobs/"+m["layers"][0]["digest"].replace(":","/"))' "$WORK/layout")
umoci unpack --image "$WORK/layout:t" "$WORK/bundle" > /dev/null
SIZE=$(du -sm "$WORK/bundle/rootfs" | cut -f1)
FILES=$(find "$WORK/bundle/rootfs" | wc -l)
LAYERS=$(python3 -c 'import json,sys; d=sys.argv[1]; i=json.load(open(d+"/index.json"))
m=json.load(open(d+"/blobs/"+i["manifests"][0]["digest"].replace(":","/")))
print(len(m["layers"]))' "$WORK/layout")
rm -rf "$WORK/bundle"
sync

row() {  # LABEL LAYOUT
  local label=$1 layout=$2
  rm -rf "$WORK/repo" "$WORK/bundle" "$WORK/store" "$WORK/img.cfs"
  "$CFS_BIN/cfs" repo init --repo "$WORK/repo" --insecure --algorithm fsverity-sha256-12
  sync
  timed "pull-$label" /usr/bin/time -f "%M" "$CFS_BIN/cfs" oci pull --repo "$WORK/repo" \
    "oci:$layout:t" img
  local rss_kb
  rss_kb=$(tail -1 "$WORK/pull-$label.err")
  sync
  # umoci 0.4.7 (Debian 12) cannot read zstd layers ("blob is not correct mediatype"): the
  # user's pipeline first has skopeo recompress them to gzip, and that time counts.
  local unpack_layout=$layout convert=0.00
  if [ "$label" = zstd ]; then
    rm -rf "$WORK/regzip"
    timed "convert-$label" skopeo copy -q --dest-compress-format gzip "oci:$layout:t" \
      "oci:$WORK/regzip:t"
    convert=$(t "convert-$label")
    unpack_layout=$WORK/regzip
  fi
  timed "unpack-$label" umoci unpack --image "$unpack_layout:t" "$WORK/bundle"
  timed "mkcfs-$label" "$REF_BIN/mkcomposefs" --digest-store="$WORK/store" \
    "$WORK/bundle/rootfs" "$WORK/img.cfs"
  local user
  user=$(awk -v c="$convert" -v a="$(t "unpack-$label")" -v b="$(t "mkcfs-$label")" \
    'BEGIN {printf "%.2f", c + a + b}')
  echo "| $label | $(t "pull-$label") | $((rss_kb / 1024)) | $convert | $(t "unpack-$label") | $(t "mkcfs-$label") | $user | $(ratio "$user" "$(t "pull-$label")") |"
  rm -rf "$WORK/bundle" "$WORK/regzip"
}

echo
echo "Image: $SRC (merged tree $SIZE MB, $FILES entries), $LAYERS layer(s); $(nproc) CPUs; loaded machine."
echo
echo "| layer | cfs oci pull s | peak RSS MB | skopeo to gzip s | umoci unpack s | mkcomposefs 1.0.8 s | user pipeline s | speedup |"
echo "|---|---|---|---|---|---|---|---|"
row gzip "$WORK/layout"
row zstd "$WORK/zstd"
if [ -x "$CFS_BIN/cfs-oci-test" ]; then
  timed isal sh -c "'$CFS_BIN/cfs-oci-test' decompress '$BLOB' > /dev/null"
  timed zlib sh -c "'$CFS_BIN/cfs-oci-test' decompress --zlib '$BLOB' > /dev/null"
  echo
  echo "gzip inflate of the layer: ISA-L $(t isal) s, zlib $(t zlib) s (zlib/ISA-L $(ratio "$(t zlib)" "$(t isal)"))"
fi
