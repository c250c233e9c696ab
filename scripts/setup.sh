#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# From a fresh Debian 12 machine to a working cfs: install dependencies (apt), build, and run
# the main job on the bundled example (examples/run-example.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCFS_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR"
examples/run-example.sh "$BUILD_DIR/bin"
