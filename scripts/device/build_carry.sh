#!/usr/bin/env bash
# Builds the GPU programs on this (CPU) machine for the GPU machine: portable x86-64 code (no
# -march=native), the static CUDA runtime, sm_90a; copies the executables into .device-bin/ (ignored
# by git), which the device tool carries with `carry: [".device-bin"]`.
# The programs are named one by one: a search of the build tree would also pick up binaries that an
# older CMake layout left behind (an old tests/gpu_mask/gpu_mask_check once shadowed the current one).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=build-device scripts/build.sh -DDYNAMICRAD_NATIVE=OFF -DDYNAMICRAD_CUDA=ON
programs=(
  dynamicrad libdynamicrad_c.so
  tests/gpu/gpu_attention_test tests/gpu/gpu_engine_test tests/gpu/gpu_mask_check tests/gpu/gpu_objective_check
  bench/cpu_attention_bench bench/mask_build_bench bench/gpu/libdynamicrad_bench_capi.so
)
rm -rf .device-bin
mkdir -p .device-bin
for p in "${programs[@]}"; do
  [ -f "build-device/$p" ] || { echo "build_carry: build-device/$p was not built" >&2; exit 1; }
  cp "build-device/$p" .device-bin/
done
ls -la .device-bin
