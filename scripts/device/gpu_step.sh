#!/usr/bin/env bash
# On a GPU machine: the CUDA engine's checks (C++ and Python), then the full-size denoising-step
# benchmark (bench/gpu/bench_step.py). Uses the library and programs carried in .device-bin/
# (scripts/device/build_carry.sh) and diffusers wheels carried in .pywhl/ when the image lacks it.
#   MODEL=wan|hunyuan|both (default both), CHECKS=0 skips the checks, STOCK_ROTARY_AT=0.85 also times
#   that sparsity with the stock Q/K arithmetic (and, for Wan, the one-pass rotary after the stock norm),
#   SPARSITIES=0.85 (default 0.80,0.85,0.90), COMPILE=both also times stock and DynamicRad after compile_repeated_blocks (inductor), PROFILE=1
#   adds the GPU time of one call of each by kind of kernel (attention, selection, GEMM, the rest),
#   LAYERS=2 keeps two blocks of each kind (a quick memory and error check at full width and length),
#   UNFUSED_POOLING_AT=0.85 also times HunyuanVideo at that sparsity with fused_pooling=False,
#   STOCK_DENSE_AT=0.85 also times the warm-up step and that sparsity with dense_backend=stock (the
#   default "auto" runs the dense layers and warm-up steps on DynamicRad's kernel on the GPU).
#   ALL_SPARSE_AT=0.85 also times that sparsity with dense_layers=0 (no dense first layer).
#   Results go to $OUT/step/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}
mkdir -p "$out/step"
source scripts/device/python_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ "${CHECKS:-1}" != "0" ]; then
  echo "== C++ engine check"
  .device-bin/gpu_engine_test 2>&1 | tee "$out/step/gpu_engine_test.txt"
  echo "== Python layer check"
  python3 tests/gpu/gpu_torch_check.py 2>&1 | tee "$out/step/gpu_torch_check.txt"
fi
echo "== denoising step benchmark"
python3 bench/gpu/bench_step.py --model "${MODEL:-both}" --repeats "${REPEATS:-2}" ${STOCK_ROTARY_AT:+--stock-rotary-at $STOCK_ROTARY_AT} \
  --sparsities "${SPARSITIES:-0.80,0.85,0.90}" --compile "${COMPILE:-none}" \
  ${PROFILE:+--profile} ${LAYERS:+--layers $LAYERS} ${UNFUSED_POOLING_AT:+--unfused-pooling-at $UNFUSED_POOLING_AT} ${STOCK_DENSE_AT:+--stock-dense-at $STOCK_DENSE_AT} ${ALL_SPARSE_AT:+--all-sparse-at $ALL_SPARSE_AT} --out "$out/step/results-${MODEL:-both}.json" \
  2>&1 | tee "$out/step/bench-${MODEL:-both}.txt"
