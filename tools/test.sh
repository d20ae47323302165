#!/usr/bin/env bash
# Builds kvcodec and runs every test: the README's test command, and CI's.
#  1. GCC, Release, warnings as errors: the whole suite.
#  2. Clang with AddressSanitizer and UndefinedBehaviorSanitizer, warnings
#     as errors: the whole suite again.
#  3. libFuzzer (clang, ASan+UBSan): every fuzz target for KVC_FUZZ_SECONDS
#     (default 60) from a scratch copy of its corpus and regressions; any
#     finding fails, printed with its base64 for fuzz/regressions/<target>/.
#  4. Clang with ThreadSanitizer: the whole suite once more.
#  5. Valgrind memcheck on a kvc encode + decode round trip (GCC build).
#  6. Bindings and packaging (tools/test_bindings.sh): static and shared
#     installs, C consumers through find_package and pkg-config, the Python,
#     Rust and Go tests and the cross-language conformance test against the
#     installed library.
#  7. kvc-eval and kvc tune (tests/eval, pytest): the numpy forward pass on a
#     generated tiny model, and on kvlab-A against reference_forward.py
#     when ../shared is present; kvc tune's budgets.
#  8. aarch64 under qemu-user (tools/cross-test aarch64): the conformance of
#     every preset's streams with this machine's, the whole ctest suite on
#     NEON, then the SIMD, golden and targets-fuzzer tests with SVE at four
#     vector lengths.
# The sanitizer builds (2-4) compile fewer Highway targets than all six:
# the kernels' equality on every target is stage 1's test, and the compile
# time of the SIMD kernels under sanitizers is the largest cost of this
# script. Memory safety does depend on the target where a kernel has a path
# of its own for some register widths (the 16-lane nibble-table dots): the
# ASan+UBSan build (2) keeps AVX2, AVX3 and the portable baseline; the
# fuzzers (3) and ThreadSanitizer (4) keep AVX2 and the baseline.
# Each stage prints its time. KVC_FUZZ_SECONDS=0 skips stage 3;
# KVC_CROSS=0 skips stage 8.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
# libopenblas0-serial: numpy's BLAS for the kvc-eval forward passes (30x the
# reference BLAS).
kvc_install_packages clang libclang-rt-14-dev valgrind libopenblas0-serial
jobs="$(nproc)"
# Disabled: SSSE3, SSE4, AVX3_DL and, but for ASan+UBSan, AVX3
# (hwy/detect_targets.h).
sanitizer_targets="-DHWY_DISABLED_TARGETS=0x1980"
asan_targets="-DHWY_DISABLED_TARGETS=0x1880"
stage_start=$SECONDS
stage_done() {
  echo "== $1: $((SECONDS - stage_start)) s"
  stage_start=$SECONDS
}

echo "== gcc release"
kvc_build
(cd "$KVC_BUILD_DIR" && ctest --output-on-failure -j "$jobs")
stage_done "gcc release"

echo "== clang asan+ubsan"
KVC_BUILD_DIR="$KVC_ROOT/build-asan" CC=clang CXX=clang++ kvc_build \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=all $asan_targets" \
  "-DCMAKE_C_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=all" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"
(cd "$KVC_ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs")
stage_done "clang asan+ubsan"

echo "== libfuzzer"
fuzz_seconds="${KVC_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" -gt 0 ]; then
  # Instrument the library for coverage (fuzzer-no-link); only the fuzz
  # targets link libFuzzer's main.
  fuzz_flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all $sanitizer_targets"
  cmake -S "$KVC_ROOT" -B "$KVC_ROOT/build-fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKVC_WARNINGS_AS_ERRORS=ON -DKVC_BUILD_FUZZERS=ON -DKVC_BUILD_TOOLS=ON -DBUILD_TESTING=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    "-DCMAKE_CXX_FLAGS=$fuzz_flags" "-DCMAKE_C_FLAGS=$fuzz_flags" \
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
  fuzz_targets=()  # every fuzz/<name>_fuzzer.cc (all are in KVC_FUZZ_TARGETS)
  for source in "$KVC_ROOT"/fuzz/*_fuzzer.cc; do
    fuzz_targets+=("$(basename "$source" .cc)")
  done
  cmake --build "$KVC_ROOT/build-fuzz" -j "$jobs" --target "${fuzz_targets[@]}"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  run_fuzzer() {  # target: runs it, logs to $scratch/target.log
    local t="$1" dir="$scratch/$1"
    mkdir -p "$dir/corpus"
    cp "$KVC_ROOT/fuzz/corpus/$t"/* "$dir/corpus/"
    if [ -d "$KVC_ROOT/fuzz/regressions/$t" ]; then
      cp "$KVC_ROOT/fuzz/regressions/$t"/* "$dir/corpus/"
    fi
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "$KVC_ROOT/build-fuzz/fuzz/$t" -max_total_time="$fuzz_seconds" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$dir/" "$dir/corpus" >"$scratch/$t.log" 2>&1
  }
  export -f run_fuzzer
  export KVC_ROOT scratch fuzz_seconds
  failed=0
  printf '%s\n' "${fuzz_targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_fuzzer {}' ||
    failed=1
  for t in "${fuzz_targets[@]}"; do
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" |
             grep -o '[0-9]*$' || echo "?")"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$scratch/$t.log" |
            grep -o '[0-9]*$' || echo "?")"
    echo "$t: $execs runs, $rate/s, corpus $(ls "$scratch/$t/corpus" | wc -l) files"
    for crash in "$scratch/$t"/crash-* "$scratch/$t"/leak-* "$scratch/$t"/timeout-* \
                 "$scratch/$t"/oom-* "$scratch/$t"/slow-unit-*; do
      [ -e "$crash" ] || continue
      failed=1
      tail -n 60 "$scratch/$t.log"
      echo "FINDING $t: $crash; add it as fuzz/regressions/$t/$(basename "$crash"):"
      base64 "$crash"
    done
  done
  if [ "$failed" -ne 0 ]; then
    echo "libfuzzer: findings (or a fuzzer failed), see above" >&2
    exit 1
  fi
fi
stage_done "libfuzzer"

echo "== clang tsan"
KVC_BUILD_DIR="$KVC_ROOT/build-tsan" CC=clang CXX=clang++ kvc_build \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS=-fsanitize=thread $sanitizer_targets" "-DCMAKE_C_FLAGS=-fsanitize=thread" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread"
(cd "$KVC_ROOT/build-tsan" && TSAN_OPTIONS=halt_on_error=1 \
  ctest --output-on-failure -j "$jobs")
stage_done "clang tsan"

echo "== valgrind memcheck: kvc encode + decode"
valgrind_dir="$(mktemp -d)"
for preset in tq-mse-b4 blockgtq-k3v3; do
  for args in "encode $KVC_ROOT/tests/data/kvlab-A-2L-64T.safetensors -o $valgrind_dir/$preset.kvc --preset $preset" \
              "decode $valgrind_dir/$preset.kvc -o $valgrind_dir/$preset.safetensors"; do
    # shellcheck disable=SC2086  # $args: the words of one kvc command line
    valgrind -q --error-exitcode=1 --leak-check=full "$KVC_BUILD_DIR/tools/kvc" $args
  done
done
rm -rf "$valgrind_dir"
stage_done "valgrind"

echo "== bindings and packaging"
bash "$KVC_ROOT/tools/test_bindings.sh"
stage_done "bindings and packaging"

echo "== kvc-eval and kvc tune"
# The shared library of the previous stage; kvc of stage 1.
KVCODEC_LIBRARY="$KVC_ROOT/build-pkg-shared/capi/libkvcodec.so" \
  KVC_BIN="$KVC_BUILD_DIR/tools/kvc" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider "$KVC_ROOT/tests/eval"
stage_done "kvc-eval and kvc tune"

if [ "${KVC_CROSS:-1}" != 0 ]; then
  echo "== aarch64 under qemu"
  # The host kvc of stage 1 is the conformance check's reference.
  KVC_HOST_KVC="$KVC_BUILD_DIR/tools/kvc" "$KVC_ROOT/tools/cross-test" aarch64
  stage_done "aarch64 under qemu"
fi
