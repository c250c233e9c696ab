#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The main job on the bundled example: fs-verity digests of the sample files, then a composefs
# image of examples/tree built with an object store, and a listing of that image.
set -euo pipefail
BIN=$(cd "${1:-build/bin}" && pwd)
cd "$(dirname "$0")"
if "$BIN/cfs" digest --help > /dev/null 2>&1; then
  echo "== fs-verity digests of examples/files"
  "$BIN/cfs" digest files/*
  echo
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
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
