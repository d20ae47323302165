#!/usr/bin/env bash
# The main job on a real KV cache: builds kvcodec, then encodes and decodes a
# cache of kvlab-A (a small trained Llama-architecture model) with several
# presets and prints bits per element, quality and speed for each.
# Uses ../shared/kvlab's 1024-token dump when present, else the bundled
# 64-token cut of it (tests/data).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
kvc_install_packages
kvc_build
KVC="$KVC_BUILD_DIR/tools/kvc"
SAMPLE="$KVC_ROOT/../shared/kvlab/kv/kvlab-A-linux-1024.safetensors"
[ -f "$SAMPLE" ] || SAMPLE="$KVC_ROOT/tests/data/kvlab-A-2L-64T.safetensors"
echo "sample: $SAMPLE"
"$KVC" help | head -1
printf '%-15s %6s %8s %10s %10s %12s %10s %10s %10s\n' preset bits ratio k_rel_mse \
  v_rel_mse logit_rel_mse attn_kl enc_MB/s dec_MB/s
for preset in tq-mse-b4 tq-3.5 tq-mse-b3 blockgtq-k3v3 polarquant turboangle tq-prod-b3 \
              tq-mse-b2; do
  "$KVC" eval "$SAMPLE" --preset "$preset" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
elements = 2 * r["num_layers"] * r["num_kv_heads"] * r["num_tokens"] * r["head_dim"]
mb = elements * {"f32": 4}.get(r["dtype"], 2) / 1e6
def fmt(key):
    v = r.get(key)
    return "%10.2e" % v if v is not None else "%10s" % "-"
print("%-15s %6.3f %7.2fx %s %s %12s %s %10.0f %10.0f" % (
    sys.argv[1], r["bits_per_element"], 16 / r["bits_per_element"], fmt("k_rel_mse"),
    fmt("v_rel_mse"), fmt("logit_rel_mse").strip(), fmt("attn_kl"),
    mb / r["encode_seconds"], mb / r["decode_seconds"]))' "$preset"
done
