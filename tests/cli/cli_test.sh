#!/usr/bin/env bash
# CLI tests of kvc, one case per run (each registered with ctest):
#   cli_test.sh KVC DATA_DIR WORK_DIR PYTHON CASE
# Runs in WORK_DIR (emptied first). Uses only the bundled fixture.
set -euo pipefail

kvc=$1
data=$2
work=$3
python=$4
case=$5
here=$(cd "$(dirname "$0")" && pwd)
fixture=$data/kvlab-A-2L-64T.safetensors

rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() {
  echo "FAIL ($case): $*" >&2
  exit 1
}

check() {
  "$python" "$here/check.py" "$@" || fail "check.py $*"
}

# kvc "$@" must succeed; its stdout goes to out.txt.
run() {
  "$kvc" "$@" >out.txt 2>err.txt || fail "kvc $* failed: $(cat err.txt)"
}

# kvc "${@:2}" must fail with exactly one line on stderr that contains $1.
expect_error() {
  local text=$1
  shift
  if "$kvc" "$@" >out.txt 2>err.txt; then
    fail "kvc $* succeeded"
  fi
  [[ $(wc -l <err.txt) -eq 1 ]] ||
    fail "kvc $*: expected one line on stderr, got: $(cat err.txt)"
  grep -qF -- "$text" err.txt || fail "kvc $*: stderr lacks '$text': $(cat err.txt)"
}

# Encodes and decodes the fixture with preset $1 and checks the result.
roundtrip() {
  local preset=$1
  run encode "$fixture" -o a.kvc --preset "$preset" --threads 2
  grep -qF "2 layers, 1 kv heads, 64 tokens, head_dim 128, F16" out.txt ||
    fail "encode summary: $(cat out.txt)"
  [[ ! -e a.kvc.tmp ]] || fail "a.kvc.tmp left behind"
  run decode a.kvc -o b.safetensors
  check cache b.safetensors F16 2 1,64,128
  run info a.kvc --json
  cp out.txt info.json
  check equal info.json layers.*.k_method "\"$preset\""
  check equal info.json layers.*.v_method "\"$preset\""
  check equal info.json rope_layout '"split-half"'
  check equal info.json rope_theta 10000
  # The decoded file is itself a cache kvc can encode, RoPE metadata included.
  run encode b.safetensors -o c.kvc --preset "$preset"
  run info c.kvc --json
  check equal out.txt rope_layout '"split-half"'
  check equal out.txt rope_theta 10000
}

case $case in
  roundtrip_tq-mse-b4 | roundtrip_tq-prod-b3)
    roundtrip "${case#roundtrip_}"
    run eval "$fixture" --preset "${case#roundtrip_}" --json
    check below out.txt k_rel_mse 0.5  # A scrambled layout gives about 2.
    check below out.txt v_rel_mse 0.5
    ;;
  roundtrip_raw-f16)
    roundtrip raw-f16
    check same-tensors "$fixture" b.safetensors
    run eval "$fixture" --preset raw-f16 --json
    for key in k_rel_mse v_rel_mse logit_rel_mse attn_kl layers.*.k_rel_mse \
      layers.*.v_rel_mse layers.*.logit_rel_mse layers.*.attn_kl; do
      check equal out.txt "$key" 0
    done
    ;;
  roundtrip_dtypes)
    # Several heads and layers in each source dtype, with values that f16
    # holds exactly: raw-f16 must give them back bit for bit, in the source
    # dtype, however the tokens are split into blocks.
    for dtype in F32 BF16 F16; do
      check make-cache in.safetensors "$dtype" 3 3 5 128
      for block_tokens in 0 2; do
        run encode in.safetensors -o a.kvc --preset raw-f16 --block-tokens "$block_tokens"
        run decode a.kvc -o b.safetensors --threads 1
        check cache b.safetensors "$dtype" 3 3,5,128
        check same-tensors in.safetensors b.safetensors
      done
    done
    ;;
  config_file)
    printf 'kvcodec-config 1\n# keys and values apart\nall k=tq-prod-b3 v=tq-mse-b2\nlast 1 kv=raw-f16\n' >mixed.cfg
    run encode "$fixture" -o a.kvc --config mixed.cfg
    run info a.kvc --json
    cp out.txt info.json
    check equal info.json layers.0.k_method '"tq-prod-b3"'
    check equal info.json layers.0.v_method '"tq-mse-b2"'
    check equal info.json layers.1.k_method '"raw-f16"'
    run eval "$fixture" --config mixed.cfg --json
    check equal out.txt config '"mixed.cfg"'
    check equal out.txt layers.1.k_rel_mse 0
    ;;
  info)
    run encode "$fixture" -o a.kvc --preset tq-mse-b4
    run info a.kvc
    grep -qF "cache: 2 layers, 1 kv heads, 64 tokens, head_dim 128" out.txt ||
      fail "info: $(cat out.txt)"
    run info a.kvc --json
    check equal out.txt format_version '"1.0"'
    check equal out.txt num_layers 2
    check equal out.txt num_kv_heads 1
    check equal out.txt num_tokens 64
    check equal out.txt head_dim 128
    check equal out.txt dtype '"F16"'
    check finite out.txt bits_per_element bytes layers.*.k_bytes layers.*.v_bytes
    ;;
  presets)
    run presets --json
    check has out.txt presets.*.name tq-mse-b1 tq-mse-b2 tq-mse-b3 tq-mse-b4 \
      tq-prod-b2 tq-prod-b3 tq-prod-b4 raw-f16
    check finite out.txt presets.*.bits_per_element
    check equal out.txt reference_cache.head_dim 128
    run presets
    grep -qF "tq-prod-b3" out.txt || fail "presets: $(cat out.txt)"
    ;;
  eval)
    run eval "$fixture" --preset tq-mse-b4 --threads 1 --json
    check equal out.txt preset '"tq-mse-b4"'
    check finite out.txt bits_per_element k_rel_mse v_rel_mse logit_rel_mse \
      attn_kl encode_seconds decode_seconds layers.*.k_rel_mse \
      layers.*.v_rel_mse layers.*.logit_rel_mse layers.*.attn_kl
    check equal out.txt layers.1.layer 1
    ;;
  eval_synthetic)
    run eval --synthetic gaussian --dim 128 --count 512 --preset tq-prod-b3 --seed 7 --json
    check equal out.txt count 512
    check finite out.txt rel_mse bits_per_element ip_bias ip_bias_stderr ip_var \
      ip_rel_var ip_scale
    check below out.txt rel_mse 1
    cp out.txt first.json
    run eval --synthetic gaussian --dim 128 --count 512 --preset tq-prod-b3 --seed 7 --json
    check equal out.txt rel_mse "$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["rel_mse"])' first.json)"
    ;;
  help)
    run --help
    grep -qF "kvc encode IN.safetensors" out.txt || fail "help: $(cat out.txt)"
    run help decode
    grep -qF "kvc decode IN.kvc" out.txt || fail "help decode: $(cat out.txt)"
    run eval --help
    grep -qF "kvc eval --synthetic" out.txt || fail "eval --help: $(cat out.txt)"
    ;;
  error_usage)
    expect_error "no command given" 
    expect_error "unknown command frobnicate" frobnicate
    expect_error "encode: unknown option --bogus" encode "$fixture" -o a.kvc --preset raw-f16 --bogus
    expect_error "encode: option -o is required" encode "$fixture" --preset raw-f16
    expect_error "encode: give either --preset NAME or --config FILE" encode "$fixture" -o a.kvc
    expect_error "encode: option --threads needs an integer" encode "$fixture" -o a.kvc --preset raw-f16 --threads x
    expect_error "decode: missing input .kvc file" decode -o a.safetensors
    expect_error "eval prints JSON only" eval "$fixture" --preset raw-f16
    expect_error "eval: --dim needs --synthetic" eval "$fixture" --preset raw-f16 --dim 4 --json
    [[ ! -e a.kvc ]] || fail "a.kvc written by a failed run"
    ;;
  error_missing_file)
    expect_error "missing.safetensors: cannot open: No such file or directory" \
      encode missing.safetensors -o a.kvc --preset raw-f16
    expect_error "missing.kvc: cannot open" decode missing.kvc -o b.safetensors
    expect_error "missing.kvc: cannot open" info missing.kvc
    expect_error "missing.cfg: cannot open" encode "$fixture" -o a.kvc --config missing.cfg
    ;;
  error_truncated_kvc)
    run encode "$fixture" -o a.kvc --preset tq-mse-b4
    head -c "$(($(wc -c <a.kvc) - 100))" a.kvc >short.kvc
    expect_error "short.kvc" decode short.kvc -o b.safetensors
    [[ ! -e b.safetensors && ! -e b.safetensors.tmp ]] || fail "partial output left behind"
    expect_error "short.kvc" info short.kvc
    head -c 20 a.kvc >tiny.kvc
    expect_error "tiny.kvc" decode tiny.kvc -o b.safetensors
    ;;
  error_corrupt_safetensors)
    printf '\x20\0\0\0\0\0\0\0{"layer0.k": {"dtype": "F16",' >bad.safetensors
    printf '                  ' >>bad.safetensors
    expect_error "bad.safetensors: header: JSON:" encode bad.safetensors -o a.kvc --preset raw-f16
    printf '\xff\xff\xff\xff\0\0\0\0{}' >huge.safetensors
    expect_error "huge.safetensors: header length 4294967295 exceeds the file size" \
      encode huge.safetensors -o a.kvc --preset raw-f16
    check make-cache in.safetensors F16 2 1 4 128
    "$python" -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(d[:-10])' \
      in.safetensors cut.safetensors
    expect_error "cut.safetensors: tensor layer1.v: data_offsets" \
      encode cut.safetensors -o a.kvc --preset raw-f16
    [[ ! -e a.kvc && ! -e a.kvc.tmp ]] || fail "output left behind"
    ;;
  error_not_a_cache)
    check make-cache in.safetensors F16 3 1 4 128
    # Variants of a valid cache, each with one fault.
    "$python" - <<'PY'
import json, struct
data = open("in.safetensors", "rb").read()
size = struct.unpack("<Q", data[:8])[0]

def variant(name, edit):
    header = json.loads(data[8:8 + size])
    edit(header)
    text = json.dumps(header).encode()
    open(name, "wb").write(struct.pack("<Q", len(text)) + text + data[8 + size:])

variant("gap.safetensors", lambda h: h.update({"layer1.x": h.pop("layer1.v")}))
variant("ints.safetensors", lambda h: [t.update(dtype="I16") for t in h.values()])
variant("rope.safetensors", lambda h: h.update(__metadata__={"rope_layout": "spiral"}))
variant("none.safetensors", lambda h: h.update({"x" + n: h.pop(n) for n in list(h)}))
variant("empty.safetensors",
        lambda h: [t.update(shape=[0, 4, 128], data_offsets=[0, 0]) for t in h.values()])
PY
    expect_error "gap.safetensors: tensor layer1.v missing" encode gap.safetensors -o a.kvc --preset raw-f16
    expect_error "ints.safetensors: tensor layer0.k has dtype I16" encode ints.safetensors -o a.kvc --preset raw-f16
    expect_error 'rope.safetensors: metadata rope_layout is "spiral"' encode rope.safetensors -o a.kvc --preset raw-f16
    expect_error "none.safetensors: no tensors layer0.k" eval none.safetensors --preset raw-f16 --json
    expect_error "empty.safetensors: tensor layer0.k is not a [heads, tokens, head_dim] tensor" \
      eval empty.safetensors --preset raw-f16 --json
    [[ ! -e a.kvc ]] || fail "a.kvc written by a failed run"
    ;;
  error_unknown_preset)
    expect_error "preset tq-mse-b9:" encode "$fixture" -o a.kvc --preset tq-mse-b9
    expect_error "preset tq-mse-b9:" eval "$fixture" --preset tq-mse-b9 --json
    expect_error "preset nope:" eval --synthetic gaussian --dim 128 --count 4 --preset nope --json
    ;;
  error_not_kvc)
    expect_error "kvlab-A-2L-64T.safetensors:" decode "$fixture" -o b.safetensors
    expect_error "kvlab-A-2L-64T.safetensors:" info "$fixture"
    [[ ! -e b.safetensors ]] || fail "b.safetensors written by a failed decode"
    ;;
  *)
    fail "unknown case"
    ;;
esac
echo "PASS ($case)"
