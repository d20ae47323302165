#!/usr/bin/env bash
# Builds kvcodec and runs every test: the README's test command, and CI's.
#  1. GCC, Release, warnings as errors: the whole suite.
#  2. Clang with AddressSanitizer and UndefinedBehaviorSanitizer, warnings
#     as errors: the whole suite again.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
kvc_install_packages clang libclang-rt-14-dev
jobs="$(nproc)"

echo "== gcc release"
kvc_build
(cd "$KVC_BUILD_DIR" && ctest --output-on-failure -j "$jobs")

echo "== clang asan+ubsan"
KVC_BUILD_DIR="$KVC_ROOT/build-asan" CC=clang CXX=clang++ kvc_build \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=all" \
  "-DCMAKE_C_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=all" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"
(cd "$KVC_ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs")
