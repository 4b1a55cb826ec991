#!/usr/bin/env bash
# Builds the GPU programs on this (CPU) machine for the GPU machine: portable x86-64 code (no
# -march=native), the static CUDA runtime, sm_90a; copies the executables into .device-bin/ (ignored
# by git), which the device tool carries with `carry: [".device-bin"]`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=build-device scripts/build.sh -DDYNAMICRAD_NATIVE=OFF -DDYNAMICRAD_CUDA=ON
mkdir -p .device-bin
find build-device -maxdepth 4 -type f \( -name 'gpu_*' -o -name 'dynamicrad' -o -name '*_bench' -o -name 'libdynamicrad_*.so' \) -perm -u+x \
  -exec cp {} .device-bin/ \;
ls -la .device-bin
