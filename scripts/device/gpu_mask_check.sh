#!/usr/bin/env bash
# On a GPU machine: checks the GPU mask builder against the CPU engine (identical layouts), runs the
# small cases again under compute-sanitizer, and times a full Wan 720p / HunyuanVideo 720p layer.
# Uses binaries carried in .device-bin/ when present (built here with scripts/device/build_carry.sh),
# otherwise builds with CMake. Results also go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-.}
bin=.device-bin/gpu_mask_check
if [ ! -x "$bin" ]; then
  BUILD_DIR=build-device scripts/build.sh -DDYNAMICRAD_NATIVE=OFF
  bin=build-device/tests/gpu/gpu_mask_check
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu_mask_device.txt"
"$bin" | tee "$out/gpu_mask_check.txt"
echo "== compute-sanitizer (memcheck), small cases"
compute-sanitizer --tool memcheck --error-exitcode 3 "$bin" --no-timing > "$out/gpu_mask_sanitizer.txt" 2>&1 \
  && echo "compute-sanitizer: clean" || { echo "compute-sanitizer: FAILED (see gpu_mask_sanitizer.txt)"; tail -30 "$out/gpu_mask_sanitizer.txt"; exit 1; }
