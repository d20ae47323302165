#!/usr/bin/env bash
# Installs what kvcodec needs to build and test on Debian bookworm (only the
# missing packages, and only when run as root), then configures and builds
# into build/ (or $KVC_BUILD_DIR). Sourced by tools/sample.sh and tools/test.sh.
set -euo pipefail

KVC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVC_BUILD_DIR="${KVC_BUILD_DIR:-$KVC_ROOT/build}"
KVC_PACKAGES=(cmake ninja-build g++ pkg-config libhwy-dev libzstd-dev doctest-dev
              libxxhash-dev python3 python3-numpy python3-pytest)

kvc_install_packages() {
  local missing=()
  for p in "${KVC_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "kvcodec: missing packages: ${missing[*]} (run as root, or install them)" >&2
    return 1
  fi
  echo "kvcodec: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Configures and builds $KVC_BUILD_DIR; extra arguments go to cmake (a later
# -DCMAKE_BUILD_TYPE overrides the default Release).
kvc_build() {
  cmake -S "$KVC_ROOT" -B "$KVC_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DKVC_WARNINGS_AS_ERRORS=ON "$@" >/dev/null
  cmake --build "$KVC_BUILD_DIR" -j "$(nproc)"
}
