#!/usr/bin/env bash
# One command on a GPU machine (sm_90): builds the CUDA attention test (or uses the binaries carried
# in .device-bin/), runs it against the CPU oracle on every case, then runs the small cases again
# under compute-sanitizer memcheck. Logs go to $OUT (or ./out) as well. Exit status: 0 when all pass.
# TEST_TIMEOUT / SANITIZER_TIMEOUT (seconds) bound each run, so a hung kernel cannot hold the GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}
mkdir -p "$out"
source scripts/device/attention_build.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$out/gpu_test_device.txt"
echo "== gpu_attention_test (all cases)"
set +e
timeout "${TEST_TIMEOUT:-900}" "$ATTENTION_TEST" 2>&1 | tee "$out/gpu_attention_test.txt"
status=${PIPESTATUS[0]}
set -e
echo "== compute-sanitizer memcheck (small cases)"
if timeout "${SANITIZER_TIMEOUT:-600}" compute-sanitizer --tool memcheck --error-exitcode 3 "$ATTENTION_TEST" --quick >"$out/gpu_attention_sanitizer.txt" 2>&1; then
  tail -3 "$out/gpu_attention_sanitizer.txt"
  echo "compute-sanitizer: clean"
else
  tail -40 "$out/gpu_attention_sanitizer.txt"
  echo "compute-sanitizer: FAILED (see gpu_attention_sanitizer.txt)"
  status=1
fi
exit "$status"
