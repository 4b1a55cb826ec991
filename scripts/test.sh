#!/usr/bin/env bash
# One command on a fresh machine: install dependencies, build, and pass every test that needs no GPU.
# 1. Release build (the CUDA sources are compiled when nvcc is present) and the full CTest suite.
# 2. The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer (CPU only).
# SANITIZE=0 skips step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build and tests"
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${SANITIZE:-1}" != "0" ]; then
  echo "== address + undefined-behaviour sanitizer build and tests"
  BUILD_DIR=build-sanitize scripts/build.sh -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYNAMICRAD_CUDA=OFF \
    -DDYNAMICRAD_BENCH=OFF -DDYNAMICRAD_SANITIZE=address,undefined
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-sanitize --output-on-failure -j "$jobs"
fi
