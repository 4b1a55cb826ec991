#!/usr/bin/env bash
# Installs DynamicRad's build dependencies from Debian's packages (run as root, or with sudo).
# The CUDA toolkit is optional: with nvcc on PATH the CUDA backend is built too.
set -euo pipefail

packages=(cmake g++ make ninja-build pkg-config libgtest-dev libpng-dev nlohmann-json3-dev libeigen3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all build dependencies are installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
