#!/usr/bin/env bash
# On a GPU machine: the offline tuner on the CUDA engine. First a quick check at a small geometry,
# then the full LUT (3 regimes x 2 modes x 30 trials) at Wan2.1-14B 720p scale, timed. Uses the CLI
# carried in .device-bin/ (scripts/device/build_carry.sh) or builds it. Results go to $OUT/tune/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out}
mkdir -p "$out/tune"
cli=.device-bin/dynamicrad
if [ ! -x "$cli" ]; then
  BUILD_DIR=build-device scripts/build.sh -DDYNAMICRAD_NATIVE=OFF -DDYNAMICRAD_TESTS=OFF
  cli=build-device/dynamicrad
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== quick check: wan2.1-1.3b-480p, 4 trials a cell"
"$cli" tune --device cuda --preset wan2.1-1.3b-480p --trials 4 --random-baseline 0 --out-dir /tmp/tune-quick
echo "== full LUT at wan2.1-14b-720p: 3 regimes x 2 modes x ${TRIALS:-30} trials"
start=$(date +%s)
"$cli" tune --device cuda --preset wan2.1-14b-720p --trials "${TRIALS:-30}" --random-baseline "${RANDOM_TRIALS:-0}" \
  --lut-geometry wan2.1-14b-720p --out-dir "$out/tune" 2>&1 | tee "$out/tune/report.txt"
echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$out/tune/report.txt"
