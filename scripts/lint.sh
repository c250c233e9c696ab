#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Formatting check: clang-format (see .clang-format) must leave every C++ source unchanged.
# With --fix, reformats in place instead.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h' 2>/dev/null)
[ ${#files[@]} -gt 0 ] || { echo "lint: no files"; exit 0; }
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if clang-format --dry-run --Werror "${files[@]}"; then
  echo "lint: ${#files[@]} files formatted"
else
  echo "lint: run scripts/lint.sh --fix" >&2
  exit 1
fi
