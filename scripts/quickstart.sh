#!/usr/bin/env bash
# One command on a fresh machine: install dependencies, build, and run the main job
# (`dynamicrad attend` on its built-in default: dense vs DynamicRad sparse attention on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
./build/dynamicrad attend "$@"
