#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The main job on the bundled example: fs-verity digests of the sample files, then a composefs
# image of examples/tree built with an object store, and a listing of that image; then the same
# tree as a one-layer OCI image (umoci), pulled into a repository, mounted with the verifying
# FUSE mount, a file read back and compared, unmounted.
set -euo pipefail
BIN=$(cd "${1:-build/bin}" && pwd)
cd "$(dirname "$0")"
if "$BIN/cfs" digest --help > /dev/null 2>&1; then
  echo "== fs-verity digests of examples/files"
  "$BIN/cfs" digest files/*
  echo
fi

WORK=$(mktemp -d)
cleanup() {
  if mountpoint -q "$WORK/mnt" 2> /dev/null; then
    fusermount3 -u "$WORK/mnt" 2> /dev/null || umount -l "$WORK/mnt"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
echo "== mkcomposefs --use-epoch --digest-store: image of examples/tree"
# --use-epoch: mtimes of a git checkout vary, so leave them out of the image.
digest=$("$BIN/mkcomposefs" --use-epoch --digest-store="$WORK/objects" --print-digest tree \
  "$WORK/tree.cfs")
echo "image digest (fs-verity): $digest"
echo "image size: $(stat -c %s "$WORK/tree.cfs") bytes"
echo "objects in the store (two files share one object):"
(cd "$WORK/objects" && find . -type f | sed 's|^\./|  |' | sort)
if "$BIN/composefs-info" ls "$WORK/tree.cfs" > "$WORK/ls.txt" 2> /dev/null; then
  echo
  echo "== composefs-info ls"
  cat "$WORK/ls.txt"
fi

if ! "$BIN/cfs" oci --help > /dev/null 2>&1; then
  exit 0
fi
echo
echo "== OCI: examples/tree as a one-layer image, pulled, mounted verified, read back"
if ! command -v umoci > /dev/null || [ ! -e /dev/fuse ]; then
  echo "skipped: needs umoci (scripts/install-deps.sh) and /dev/fuse" >&2
  exit 1
fi
# The tree goes in as /usr: the merged image takes its root's metadata from /usr
# (composefs-rs' rule), so an image without /usr is refused.
umoci init --layout "$WORK/layout" > /dev/null
umoci new --image "$WORK/layout:example" > /dev/null
umoci insert --image "$WORK/layout:example" tree /usr > /dev/null
"$BIN/cfs" repo init --repo "$WORK/repo" --insecure > /dev/null  # no fs-verity needed here
echo "cfs oci pull oci:layout:example example"
"$BIN/cfs" oci pull --repo "$WORK/repo" "oci:$WORK/layout:example" example | sed 's/^/  /'
mkdir "$WORK/mnt"
# The FUSE mount checks every block it serves against the file's fs-verity digest.
"$BIN/cfs" oci mount --repo "$WORK/repo" --fuse example "$WORK/mnt"
echo "cfs oci mount --fuse example mnt: $(find "$WORK/mnt" | wc -l) entries"
cmp tree/share/doc/README "$WORK/mnt/usr/share/doc/README"
echo "mnt/usr/share/doc/README read back: identical to examples/tree/share/doc/README"
fusermount3 -u "$WORK/mnt"
echo "unmounted"
