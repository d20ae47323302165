#!/usr/bin/env bash
# Installs, consumers and bindings: the CI stage of issue 6. Each part prints
# its time.
#  1. Installs into temporary prefixes: the static library from kvcodec's
#     standard build ($KVC_BUILD_DIR, build/ by default: tools/test.sh's first
#     stage has built it, so this is only an install), and the shared library
#     from build-pkg-shared/ (BUILD_SHARED_LIBS=ON, library only). Checks the
#     installed files, the SONAME and that the shared library exports exactly
#     the header's functions.
#  2. For each prefix, a C consumer found through find_package(kvcodec CONFIG)
#     and one through pkg-config, built and run (packaging/consumer/), and the
#     Conan test_package's program; the vcpkg and Conan recipes checked for
#     what can be checked without those tools.
#  3. Against the installed shared library: the Python package installed into
#     a venv and its pytest suite, the Rust workspace's tests (also linked
#     statically), the Go package's tests, and the cross-language conformance
#     test (bindings/conformance/run.sh).
# Standalone: `bash tools/test_bindings.sh` (as root, it installs what is
# missing; without a built $KVC_BUILD_DIR it builds it first).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
packages=(golang-go python3-venv python3-setuptools)
# Rust: rustup's toolchain where there is one, else Debian's.
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || packages+=(cargo)
kvc_install_packages "${packages[@]}"

start=$SECONDS
stage_start=$SECONDS
stage_done() {
  echo "== $1: $((SECONDS - stage_start)) s"
  stage_start=$SECONDS
}
work="$(mktemp -d /tmp/kvc-bindings.XXXXXX)"
trap 'rm -rf "$work"' EXIT
static="$work/prefix-static"
shared="$work/prefix-shared"
export GOPATH="$work/gopath" GOCACHE="$work/gocache" GOFLAGS=""

fail() {
  echo "test_bindings: $*" >&2
  exit 1
}

echo "== install"
kvc_build
cmake --install "$KVC_BUILD_DIR" --prefix "$static" >/dev/null
grep -q "BUILD_SHARED_LIBS:BOOL=OFF" "$KVC_BUILD_DIR/CMakeCache.txt" ||
  fail "$KVC_BUILD_DIR is not a static build"
KVC_BUILD_DIR="$KVC_ROOT/build-pkg-shared" kvc_build -DBUILD_SHARED_LIBS=ON \
  -DBUILD_TESTING=OFF -DKVC_BUILD_TOOLS=OFF -DKVC_WITH_ZSTD=ON
cmake --install "$KVC_ROOT/build-pkg-shared" --prefix "$shared" >/dev/null

version="$(sed -n 's/^Version: //p' "$shared/lib/pkgconfig/kvcodec.pc")"
soname="libkvcodec.so.${version%.*}"  # MAJOR.MINOR: the ABI of a 0.x API
for f in include/kvcodec/kvcodec.h lib/libkvcodec.a lib/pkgconfig/kvcodec.pc \
         lib/cmake/kvcodec/kvcodecConfig.cmake lib/cmake/kvcodec/kvcodecConfigVersion.cmake \
         lib/cmake/kvcodec/kvcodecTargets.cmake; do
  [ -e "$static/$f" ] || fail "static install lacks $f"
done
for f in include/kvcodec/kvcodec.h "lib/$soname" lib/libkvcodec.so lib/pkgconfig/kvcodec.pc \
         lib/cmake/kvcodec/kvcodecConfig.cmake; do
  [ -e "$shared/$f" ] || fail "shared install lacks $f"
done
if grep -q "KVC_BUILD_TOOLS:BOOL=ON" "$KVC_BUILD_DIR/CMakeCache.txt"; then
  "$static/bin/kvc" presets >/dev/null || fail "the installed kvc does not run"
fi
readelf -d "$shared/lib/$soname" | grep -q "SONAME.*\[$soname\]" ||
  fail "SONAME of libkvcodec is not $soname"
# Exports: exactly the header's functions (the version node KVCODEC_0 aside).
nm -D --defined-only "$shared/lib/$soname" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort \
  >"$work/exported"
# Declarations: "KVC_API <type> kvc_name(", the name last before the "(".
grep -o 'KVC_API [^;(]*(' "$shared/include/kvcodec/kvcodec.h" | sed 's/ *($//; s/.*[ *]//' |
  grep '^kvc_' | sort -u >"$work/declared"
diff "$work/declared" "$work/exported" ||
  fail "libkvcodec exports differ from the header's functions (< header, > library)"
echo "installed $version: $soname exports $(wc -l <"$work/exported") functions, all kvc_*"
stage_done "install"

echo "== C consumers, recipes"
for kind in static shared; do
  prefix="$work/prefix-$kind"
  cmake -S "$KVC_ROOT/packaging/consumer" -B "$work/consumer-$kind" -G Ninja \
    -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/consumer-$kind" >/dev/null
  echo "find_package, $kind: $("$work/consumer-$kind/consumer")"
  cmake -S "$KVC_ROOT/packaging/conan/test_package" -B "$work/test_package-$kind" -G Ninja \
    -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$work/test_package-$kind" >/dev/null
  echo "conan test_package, $kind: $("$work/test_package-$kind/test_package")"
  includedir="$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=includedir kvcodec)"
  [ "$(realpath "$includedir")" = "$(realpath "$prefix/include")" ] ||
    fail "kvcodec.pc of the $kind install points to $includedir"
  static_flag=""
  [ "$kind" = static ] && static_flag="--static"
  # shellcheck disable=SC2046  # pkg-config prints separate flags
  PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -std=c99 -Wall -Wextra -pedantic -Werror \
    "$KVC_ROOT/packaging/consumer/consumer.c" \
    $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags kvcodec) \
    $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config $static_flag --libs kvcodec) -lm \
    -o "$work/pkgconfig-$kind"
  echo "pkg-config, $kind: $(LD_LIBRARY_PATH="$prefix/lib" "$work/pkgconfig-$kind")"
  for program in "$work/consumer-$kind/consumer" "$work/pkgconfig-$kind"; do
    linked="$(LD_LIBRARY_PATH="$prefix/lib" ldd "$program" | grep -c libkvcodec || true)"
    if [ "$kind" = static ] && [ "$linked" -ne 0 ]; then
      fail "$program loads a shared libkvcodec"
    fi
    if [ "$kind" = shared ] && [ "$linked" -ne 1 ]; then
      fail "$program does not load libkvcodec"
    fi
  done
done
# The recipes: well-formed, and every kvcodec variable they set is one the
# build reads (vcpkg and Conan themselves are not installable here).
/usr/bin/python3 -c 'import json, sys; json.load(open(sys.argv[1]))' \
  "$KVC_ROOT/packaging/vcpkg/kvcodec/vcpkg.json"
for recipe in "$KVC_ROOT"/packaging/conan/conanfile.py \
              "$KVC_ROOT"/packaging/conan/test_package/conanfile.py; do
  /usr/bin/python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' \
    "$recipe"
done
for var in $(grep -ohE '\bKVC_[A-Z_]+' "$KVC_ROOT/packaging/vcpkg/kvcodec/portfile.cmake" \
               "$KVC_ROOT/packaging/conan/conanfile.py" | sort -u); do
  grep -q "$var" "$KVC_ROOT/CMakeLists.txt" "$KVC_ROOT/capi/CMakeLists.txt" \
    "$KVC_ROOT/capi/include/kvcodec/kvcodec.h" ||
    fail "a recipe sets $var, which kvcodec's build does not read"
done
stage_done "C consumers, recipes"

# The bindings find the installed shared library, as users' programs would.
export PKG_CONFIG_PATH="$shared/lib/pkgconfig" LD_LIBRARY_PATH="$shared/lib"

echo "== python"
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
cp -r "$KVC_ROOT/bindings/python" "$work/python-source"  # pip builds in the source folder
# Leftovers of an earlier in-tree pip run would be installed instead of the tree.
rm -rf "$work/python-source/build" "$work/python-source"/*.egg-info
"$work/venv/bin/pip" install -q --no-build-isolation --no-deps --no-index \
  "$work/python-source"
"$work/venv/bin/python" -c "import kvcodec; print('found by soname:', kvcodec.library_path)"
(cd "$work" && KVCODEC_LIBRARY="$shared/lib/$soname" "$work/venv/bin/python" -m pytest -q \
  -p no:cacheprovider "$KVC_ROOT/bindings/python/tests")
KVCODEC_LIBRARY="$shared/lib/$soname" "$work/venv/bin/python" -c "
import kvcodec, sys
assert kvcodec.__file__.startswith('$work/venv'), kvcodec.__file__
print('tested', kvcodec.__file__, 'over', kvcodec.library_path)"
stage_done "python"

echo "== rust"
(cd "$KVC_ROOT/bindings/rust" && cargo test --offline -q)
# The static library too (kvcodec-sys's KVCODEC_STATIC=1 path).
(cd "$KVC_ROOT/bindings/rust" && PKG_CONFIG_PATH="$static/lib/pkgconfig" KVCODEC_STATIC=1 \
  CARGO_TARGET_DIR="$work/cargo-static" cargo test --offline -q --test api)
echo "rust: tested against $shared (shared) and $static (static)"
stage_done "rust"

echo "== go"
(cd "$KVC_ROOT/bindings/go" && go vet . && GODEBUG=cgocheck=2 go test -count=1 .)
stage_done "go"

echo "== conformance"
PYTHON="$work/venv/bin/python" bash "$KVC_ROOT/bindings/conformance/run.sh"
stage_done "conformance"
echo "== test_bindings: $((SECONDS - start)) s"
