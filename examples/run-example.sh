#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The main job on the bundled example: fs-verity digests of the sample files.
set -euo pipefail
BIN=${1:-build/bin}
cd "$(dirname "$0")"
echo "== fs-verity digests of examples/files"
"$BIN/cfs" digest files/*
