"""kvc-eval: a model's loss with its KV cache through a kvcodec config.

    kvc-eval --model DIR --text FILE (--preset NAME | --config FILE)
             [--tokens 1024] [--windows 4] [--seeds N] [--json]

Prints bits per byte with an fp16 cache (base_bpb) and through the codec
(bpb), their difference, the bits per element the encoded K and V took, the
KL divergence of the next-token distributions from the fp16 run's, and per
layer the K and V relative errors, attention-logit error, attention KL and
attention-output error. --seeds N repeats the codec run with the rotation
seeds 1 .. N-1 in place of the config's own, and reports the spread: how much
of delta_bpb is the luck of one draw. A config with a zstd stage (config text
"zstd L", the kv-*z presets) counts the bytes a cache file
stores (bits_per_element), with the blocks' fixed rate beside
(fixed_rate_bits_per_element).
"""
import argparse
import json
import math
import sys
import time

from .codec import CacheCodec, load_config
from .errors import EvalError
from .evaluate import Baseline, evaluate, windows_of
from .model import Model
from .text import tokenize


def _parser():
    p = argparse.ArgumentParser(
        prog="kvc-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face checkpoint folder")
    p.add_argument("--text", required=True, help="text file to measure the loss on")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help="a kvcodec preset name (kvc presets)")
    which.add_argument("--config", help="a kvcodec config text file (kvc tune -o)")
    p.add_argument("--tokens", type=int, default=1024, help="tokens per window (1024)")
    p.add_argument("--windows", type=int, default=4, help="number of windows (4)")
    p.add_argument("--seeds", type=int, default=1,
                   help="codec runs: the config's seeds, then seeds 1 .. N-1 (1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def run(args):
    if args.seeds < 1:
        raise EvalError("--seeds must be at least 1")
    start = time.time()
    config, name = load_config(args.preset, args.config)
    model = Model(args.model)
    ids, byte_lengths = tokenize(model, args.text)
    data = windows_of(ids, byte_lengths, args.tokens, args.windows)
    baseline = Baseline(model, data)
    layers = model.config.num_layers
    result = evaluate(model, baseline, CacheCodec(config, layers))
    if args.seeds > 1:
        runs = [result] + [evaluate(model, baseline, CacheCodec(config, layers, seed))
                           for seed in range(1, args.seeds)]
        deltas = [r["delta_bpb"] for r in runs]
        mean = sum(deltas) / len(deltas)
        result["seeds"] = {
            "delta_bpb": deltas,
            "delta_bpb_mean": mean,
            "delta_bpb_std": math.sqrt(sum((d - mean) ** 2 for d in deltas) / len(deltas)),
            "output_kl_bpb_mean": sum(r["output_kl_bpb"] for r in runs) / len(runs),
        }
    head = {
        "model": args.model,
        "text": args.text,
        ("preset" if args.preset else "config"): name,
        "tokens": args.tokens,
        "windows": args.windows,
        "predictions": args.tokens * args.windows,
        "target_bytes": baseline.bytes,
    }
    result = {**head, **result, "seconds": time.time() - start}
    return result


def print_table(r):
    stored = (f" stored with zstd {r['zstd_level']} "
              f"({r['fixed_rate_bits_per_element']:.4f} block by block)"
              if "zstd_level" in r else "")
    print(f"{r.get('preset') or r.get('config')}: {r['bits_per_element']:.4f} bits/element"
          f"{stored}, bpb {r['bpb']:.5f} (fp16 KV {r['base_bpb']:.5f}, "
          f"delta {r['delta_bpb']:+.5f}), output KL {r['output_kl_bpb']:.5f} bits/byte")
    if "seeds" in r:
        s = r["seeds"]
        print(f"over {len(s['delta_bpb'])} seeds: delta {s['delta_bpb_mean']:+.5f} "
              f"+- {s['delta_bpb_std']:.5f}, output KL {s['output_kl_bpb_mean']:.5f}")
    print(f"{'layer':>5}  {'K method':<18} {'V method':<18} {'k_bits':>6} {'v_bits':>6} "
          f"{'k_rel_err':>9} {'v_rel_err':>9} {'logit_err':>9} {'attn_kl':>9} {'out_err':>9}")
    for l in r["layers"]:
        print(f"{l['layer']:>5}  {l['k_method']:<18} {l['v_method']:<18} {l['k_bits']:>6.3f} "
              f"{l['v_bits']:>6.3f} {l['k_rel_err']:>9.2e} {l['v_rel_err']:>9.2e} "
              f"{l['logit_rel_err']:>9.2e} {l['attn_kl']:>9.2e} {l['attn_out_rel_err']:>9.2e}")


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        result = run(args)
    except EvalError as e:
        print(f"kvc-eval: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("kvc-eval: out of memory", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    return 0
