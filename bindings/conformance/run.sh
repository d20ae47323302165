#!/usr/bin/env bash
# Cross-language conformance (README.md here): C, Python, Rust and Go encode
# the same input with the same parameters to byte-identical streams and
# blocks, and each decodes every language's output to bit-identical values.
#
#   bash bindings/conformance/run.sh [PREFIX]
#
# kvcodec is found through pkg-config and the dynamic loader: PREFIX (an
# install prefix) is added to PKG_CONFIG_PATH and LD_LIBRARY_PATH. Python is
# $PYTHON (default /usr/bin/python3), using its installed kvcodec package if
# it has one, else the one in bindings/python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ $# -ge 1 ]; then
  export PKG_CONFIG_PATH="$1/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
python="${PYTHON:-/usr/bin/python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOPATH="${GOPATH:-$work/gopath}" GOCACHE="${GOCACHE:-$work/gocache}"
cargo_target="${CARGO_TARGET_DIR:-$root/bindings/rust/target}"

# Build each language's program.
cc -std=c99 -Wall -Wextra -pedantic -Werror "$here/conformance.c" \
  $(pkg-config --cflags --libs kvcodec) -o "$work/conformance-c"
(cd "$here/rust" && CARGO_TARGET_DIR="$cargo_target" cargo build --offline --quiet)
(cd "$here/go" && go build -o "$work/conformance-go" .)
if ! "$python" -c "import kvcodec" 2>/dev/null; then
  export PYTHONPATH="$root/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
fi

languages=(c python rust go)
program() {  # language, then the program's arguments
  local language="$1"
  shift
  case "$language" in
    c) "$work/conformance-c" "$@" ;;
    python) "$python" "$here/conformance.py" "$@" ;;
    rust) "$cargo_target/debug/kvcodec-conformance" "$@" ;;
    go) "$work/conformance-go" "$@" ;;
  esac
}

failed=0
for language in "${languages[@]}"; do
  mkdir -p "$work/encoded/$language"
  program "$language" encode "$work/encoded/$language"
  if ! diff -rq "$work/encoded/c" "$work/encoded/$language"; then
    echo "conformance: $language encodes differently from C (above)" >&2
    failed=1
  fi
done
encoded="$(ls "$work/encoded/c" | wc -l)"
[ "$encoded" -gt 0 ] || { echo "conformance: nothing encoded" >&2; exit 1; }

mkdir -p "$work/reference"
program c decode "$work/encoded/c" "$work/reference"
decoded="$(ls "$work/reference" | wc -l)"
for source in "${languages[@]}"; do
  for decoder in "${languages[@]}"; do
    out="$work/decoded-$source-by-$decoder"
    mkdir -p "$out"
    program "$decoder" decode "$work/encoded/$source" "$out"
    if ! diff -rq "$work/reference" "$out"; then
      echo "conformance: $decoder decodes $source's output differently from C (above)" >&2
      failed=1
    fi
    rm -rf "$out"
  done
done
if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "conformance: C, Python, Rust and Go wrote the same $encoded streams and blocks;" \
  "each decoded every language's to the same $decoded files"
