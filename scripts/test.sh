#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite, as CI runs it:
#   1. g++ build with -Werror, every CTest (unit, integration, compat, root, fuse, vm);
#   2. clang build with AddressSanitizer + UBSan, unit tests and fuzz-corpus replays again;
#   3. clang build with ThreadSanitizer, the unit tests of the modules that run worker pools
#      (util's parallel_for, the digests, the scan, the store, the splitstream writer);
#   4. clang-format check of every C++ source.
# The builds of steps 2 and 3 run in the background, at nice 19, while step 1's tests run.
# Set CFS_TEST_QUICK=1 to skip steps 2-4, CFS_TEST_TSAN=0 to skip step 3 only.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
failures=0
passed=0
failed=0
skipped=0

stage() {  # a stage banner with the time since the start, so CI logs show where time goes
  echo "== [$(printf '%4d' "$SECONDS") s] $*"
}

count() {  # parses ctest's summary out of a log
  local log=$1 total nfail nskip
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log" | tail -1)
  nfail=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  nskip=$(grep -c '\*\*\*Skipped\| Skipped ' "$log" || true)
  total=${total:-0}; nfail=${nfail:-0}
  passed=$((passed + total - nfail - nskip)); failed=$((failed + nfail)); skipped=$((skipped + nskip))
}

stage "build (g++, -Werror)"
cmake -S . -B build -G Ninja -DCFS_WERROR=ON >/dev/null && cmake --build build -j "$JOBS" || exit 1
# The sanitizer builds (steps 2 and 3) run in the background at nice 19 while step 1's tests
# run: those tests mostly wait (registries, mounts, QEMU guests) and use about half of two cores
# (measured on host D: 258 CPU-s in a 282 s stage), so the compilers take the idle half, and the
# tests keep priority whenever they want a core. Its log: build/sanitizer-builds.log.
sanitizer_builds() {
  stage "build (clang, ASan + UBSan)"
  CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCFS_WERROR=ON \
    -DCFS_SANITIZE=address,undefined -DCFS_BUILD_BENCH=OFF >/dev/null || return 1
  # Only what the unit and fuzz labels run: the unit-test binaries and the corpus replayers.
  # The tools are not run under the sanitizers, and building them cost ~2 minutes of CI.
  local asan_targets
  asan_targets=$(ninja -C build-asan -t targets all |
    sed -n 's/^\(unit_[a-z0-9_]*\|[a-z0-9_]*_fuzzer_replay\): phony$/\1/p' | grep -v '^cmake_')
  # shellcheck disable=SC2086
  cmake --build build-asan -j "$JOBS" --target $asan_targets || return 1
  if [ "${CFS_TEST_TSAN:-1}" != 0 ]; then
    stage "build (clang, ThreadSanitizer; unit tests of the threaded modules)"
    CXX=clang++ cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCFS_WERROR=ON \
      -DCFS_SANITIZE=thread -DCFS_BUILD_BENCH=OFF >/dev/null || return 1
    cmake --build build-tsan -j "$JOBS" --target "${tsan_modules[@]/#/unit_}" || return 1
  fi
  stage "sanitizer builds done"
}
# Only these unit-test binaries run under TSan: the other modules run no threads of their own,
# and the tools and fuzzers add build time and no thread coverage. Measured on 2 loaded cores:
# all twelve unit binaries 10 min to build and 7 min to run; these five 3 min to run.
tsan_modules=(util verity scan store splitstream)
if [ "${CFS_TEST_QUICK:-0}" != 1 ]; then
  stage "sanitizer builds start (nice 19, beside the ctest stage; build/sanitizer-builds.log)"
  (renice -n 19 -p "$BASHPID" > /dev/null; sanitizer_builds) > build/sanitizer-builds.log 2>&1 &
  san_pid=$!
fi

stage "ctest (all labels)"
ctest --test-dir build --output-on-failure -j "$JOBS" 2>&1 | tee build/ctest-all.log
[ "${PIPESTATUS[0]}" = 0 ] || failures=$((failures + 1))
count build/ctest-all.log

if [ "${CFS_TEST_QUICK:-0}" != 1 ]; then
  stage "waiting for the sanitizer builds"
  if ! wait "$san_pid"; then
    cat build/sanitizer-builds.log
    exit 1
  fi
  grep '^== ' build/sanitizer-builds.log
  stage "ctest under sanitizers (unit, fuzz replay)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$JOBS" -L 'unit|fuzz' 2>&1 | tee build-asan/ctest-asan.log
  [ "${PIPESTATUS[0]}" = 0 ] || failures=$((failures + 1))
  count build-asan/ctest-asan.log

  if [ "${CFS_TEST_TSAN:-1}" != 0 ]; then
    stage "ctest under ThreadSanitizer (${tsan_modules[*]})"
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      ctest --test-dir build-tsan --output-on-failure -j "$JOBS" -L unit \
      -R "^($(IFS='|'; echo "${tsan_modules[*]}"))\\." 2>&1 | tee build-tsan/ctest-tsan.log
    [ "${PIPESTATUS[0]}" = 0 ] || failures=$((failures + 1))
    count build-tsan/ctest-tsan.log
  fi

  stage "clang-format"
  if scripts/lint.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); failures=$((failures + 1)); fi
fi

echo
stage "done"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failures" = 0 ]
