#!/usr/bin/env bash
# Builds kvcodec and runs every test (the README's test command; CI runs it).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
kvc_install_packages
kvc_build
cd "$KVC_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)"
