#!/usr/bin/env bash
# On a GPU machine: every correctness check of the CUDA code, then the one-pass Q/K kernel's timing.
#   0. gpu_test.sh: both attention kernels against the CPU oracle, and under memcheck; then
#      compute-sanitizer racecheck of both kernels (shared-memory hazards), small cases;
#   1. gpu_mask_check.sh: the GPU mask builder against the CPU engine, and under memcheck;
#   2. gpu_engine_test: the CUDA engine against the CPU engine and the oracle (with two GPUs, also an
#      engine and the rotary kernel on device 1 while device 0 is current), then its quick cases and
#      checks under compute-sanitizer memcheck;
#   3. gpu_objective_check: the tuner's objective on the CUDA engine against the CPU's;
#   4. tests/gpu/gpu_torch_check.py: the torch layer on CUDA (operators, rotary bits, small models);
#   5. compute-sanitizer memcheck of the rotary kernels (scripts/device/rotary_memcheck.py);
#   6. bench/gpu/bench_rotary.py: norm + rotary at full Wan / HunyuanVideo shapes against stock.
# Uses .device-bin/ (scripts/device/build_carry.sh) and the diffusers wheels in .pywhl/ when the image
# lacks diffusers. Results go to $OUT/checks/. Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}/checks
mkdir -p "$out"
source scripts/device/python_env.sh
status=0
echo "== attention kernels"
OUT=$out scripts/device/gpu_test.sh > "$out/attention.txt" 2>&1 || status=1
grep -E "^[0-9]+ cases|compute-sanitizer: " "$out/attention.txt"
for kernel in mma-sync wgmma; do
  if timeout "${SANITIZER_TIMEOUT:-600}" compute-sanitizer --tool racecheck --error-exitcode 3 .device-bin/gpu_attention_test --quick \
      --kernel "$kernel" > "$out/racecheck_$kernel.txt" 2>&1; then echo "racecheck $kernel: clean"; else status=1; tail -20 "$out/racecheck_$kernel.txt"; fi
done
echo "== mask builder"
OUT=$out scripts/device/gpu_mask_check.sh > "$out/mask.txt" 2>&1 || status=1
tail -6 "$out/mask.txt"
echo "== engine"
.device-bin/gpu_engine_test > "$out/gpu_engine_test.txt" 2>&1 || status=1
tail -3 "$out/gpu_engine_test.txt"
grep -E "device 1|one CUDA device" "$out/gpu_engine_test.txt" || true
if timeout "${SANITIZER_TIMEOUT:-600}" compute-sanitizer --tool memcheck --error-exitcode 3 .device-bin/gpu_engine_test --quick \
    > "$out/gpu_engine_sanitizer.txt" 2>&1; then echo "engine memcheck: clean"; else status=1; tail -20 "$out/gpu_engine_sanitizer.txt"; fi
echo "== tuner objective"
.device-bin/gpu_objective_check > "$out/gpu_objective_check.txt" 2>&1 || { status=1; grep -v "^ok" "$out/gpu_objective_check.txt" | tail -8; }
tail -1 "$out/gpu_objective_check.txt"
echo "== torch layer"
python3 tests/gpu/gpu_torch_check.py > "$out/gpu_torch_check.txt" 2>&1 || status=1
grep -c "^ok" "$out/gpu_torch_check.txt" || true
grep -v "^ok" "$out/gpu_torch_check.txt" | tail -8
grep -E "cuda:1|second device" "$out/gpu_torch_check.txt" || true
echo "== rotary memcheck"
if compute-sanitizer --tool memcheck --error-exitcode 3 python3 scripts/device/rotary_memcheck.py \
    > "$out/rotary_memcheck.txt" 2>&1; then echo "clean"; else status=1; tail -20 "$out/rotary_memcheck.txt"; fi
echo "== norm + rotary timing"
python3 bench/gpu/bench_rotary.py 2>&1 | tee "$out/bench_rotary.txt" || status=1
exit $status
