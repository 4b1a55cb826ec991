#!/usr/bin/env bash
# Sourced by gpu_test.sh and gpu_bench.sh: finds or builds the GPU attention programs and sets
#   ATTENTION_TEST  path of gpu_attention_test
#   ATTENTION_CAPI  path of libdynamicrad_bench_capi.so
# Prebuilt binaries in .device-bin/ (scripts/device/build_carry.sh, built on a CPU machine and carried
# to the GPU machine) are used when present; otherwise it configures and builds with CMake
# (-DDYNAMICRAD_CUDA=ON, Release, tests on) into ${BUILD_DIR:-build-gpu}. Where the machine lacks the
# CPU engine's build dependencies and .deps/ holds their Debian packages (apt-get download libpng-dev
# libpng16-16 zlib1g-dev libeigen3-dev nlohmann-json3-dev libgtest-dev), they are unpacked into
# /tmp/dynamicrad-deps and found from there.
set -euo pipefail

if [ -x .device-bin/gpu_attention_test ] && [ -f .device-bin/libdynamicrad_bench_capi.so ]; then
  ATTENTION_TEST=.device-bin/gpu_attention_test
  ATTENTION_CAPI=.device-bin/libdynamicrad_bench_capi.so
  echo "using prebuilt binaries from .device-bin/"
else
  build_dir=${BUILD_DIR:-build-gpu}
  cmake_args=(-DDYNAMICRAD_CUDA=ON -DDYNAMICRAD_TESTS=ON -DDYNAMICRAD_BENCH=ON -DDYNAMICRAD_NATIVE=OFF
              -DCMAKE_BUILD_TYPE=Release)
  command -v ninja >/dev/null 2>&1 && cmake_args+=(-G Ninja)
  if ! dpkg-query -W -f='${Status}' libpng-dev 2>/dev/null | grep -q "install ok installed" \
      && compgen -G ".deps/*.deb" >/dev/null; then
    deps=/tmp/dynamicrad-deps
    for f in .deps/*.deb; do dpkg-deb -x "$f" "$deps"; done
    cmake_args+=(-DCMAKE_PREFIX_PATH="$deps/usr" -DCMAKE_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu"
                 -DCMAKE_INCLUDE_PATH="$deps/usr/include")
    export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null
  cmake --build "$build_dir" -j "$(nproc)" --target gpu_attention_test dynamicrad_bench_capi
  ATTENTION_TEST=$build_dir/tests/gpu/gpu_attention_test
  ATTENTION_CAPI=$build_dir/bench/gpu/libdynamicrad_bench_capi.so
fi
