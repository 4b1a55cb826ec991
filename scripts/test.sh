#!/usr/bin/env bash
# One command on a fresh machine: install dependencies, build, and pass every test that needs no GPU.
# 1. Release build (the CUDA sources are compiled when nvcc is present) and the full CTest suite.
# 2. The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer (CPU only).
# 3. The Python package: a virtual environment (build-python/venv) with torch, diffusers and pytest
#    from PyPI (requirements-python.txt), `pip install .` (scikit-build-core builds the C library),
#    then the CPU test suite tests/python with tiny random diffusers models.
# SANITIZE=0 skips step 2, PYTHON_TESTS=0 skips step 3.
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

if [ "${PYTHON_TESTS:-1}" != "0" ]; then
  echo "== python package: pip install . and tests/python"
  venv=build-python/venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-python.txt
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
    -C build-dir=build-python/wheel .
  (cd build-python && ./venv/bin/python -m pytest -q ../tests/python)
fi
