#!/usr/bin/env bash
# One command on a GPU machine (sm_90): times our block-sparse attention, cuDNN dense (torch SDPA),
# FlexAttention and FlashInfer on the Wan2.1-14B 480p / 720p and HunyuanVideo 720p shapes at block
# densities 10, 15, 25, 40 and 100% (plus each preset's radial prior) with identical masks, and prints
# effective TFLOP/s on computed blocks and the ratios (bench/gpu/bench_attention.py).
# FlashInfer is not installed on the GPU machines: its wheels travel in .whl/ (see the README of the
# device tool) and are installed into /tmp/site here. Extra arguments go to bench_attention.py, e.g.
# --shapes wan2.1-14b-720p --densities 0.15 --no-flashinfer.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}
mkdir -p "$out"
source scripts/device/attention_build.sh
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv \
  | tee "$out/gpu_bench_device.txt"
set +e
PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-1800}" python3 bench/gpu/bench_attention.py --capi "$ATTENTION_CAPI" --json "$out/gpu_bench.json" "$@" \
  2>&1 | tee "$out/gpu_bench.txt"
status=${PIPESTATUS[0]}
set -e
exit "$status"
