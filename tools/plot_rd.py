#!/usr/bin/env python3
"""Rate-quality of every kvcodec preset on a real model: Δbpb against bits per
element, beside the yardstick quantizers of ../shared/kvlab, as a PNG and a
Markdown table.

    /usr/bin/python3 tools/plot_rd.py -o rd-kvlab-A.png [--table rd-kvlab-A.md]
                                      [--json rd.json] [--from-json rd.json]

Defaults: kvlab-A on text/linux-docs-val.txt, 4 windows of 1024 tokens (the
setting of frontier-kvlab-A.json), every preset the library lists. The fp16
baseline runs once; each preset is one codec run of kvc-eval's harness. Needs
numpy and matplotlib (Debian: python3-numpy python3-matplotlib) and the
shared library (KVCODEC_LIBRARY or KVC_BUILD_DIR, as for kvc-eval).
--from-json redraws from the measurements a --json run saved.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kvc_eval import evaluate as ev  # noqa: E402
from kvc_eval.codec import CacheCodec, import_kvcodec  # noqa: E402
from kvc_eval.errors import EvalError  # noqa: E402
from kvc_eval.model import Model  # noqa: E402
from kvc_eval.text import tokenize  # noqa: E402

KVLAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "kvlab")


def measure(model_dir, text, tokens, windows, presets, log):
    kvcodec = import_kvcodec()
    model = Model(model_dir)
    ids, lengths = tokenize(model, text)
    baseline = ev.Baseline(model, ev.windows_of(ids, lengths, tokens, windows))
    log(f"fp16 KV: {baseline.bpb:.5f} bpb")
    rows = []
    for name in presets:
        try:
            codec = CacheCodec(kvcodec.Config.preset(name), model.config.num_layers)
            r = ev.evaluate(model, baseline, codec)
        except EvalError as e:  # A preset this model's head_dim cannot take.
            log(f"{name}: skipped ({e})")
            continue
        rows.append({"preset": name, "bits_per_element": r["bits_per_element"],
                     "delta_bpb": r["delta_bpb"], "output_kl_bpb": r["output_kl_bpb"]})
        log(f"{name}: {r['bits_per_element']:.4f} bits, delta {r['delta_bpb']:+.5f}, "
            f"output KL {r['output_kl_bpb']:.5f}")
    return baseline.bpb, rows


def yardsticks(frontier):
    """{curve name: [(bits, delta, config)]} from frontier-kvlab-A.json."""
    curves = {}
    for row in frontier["rows"]:
        config = row["config"]
        name = ("q8_0/q4_0-like (absmax per 32)" if "_0-like" in config
                else "TurboQuant-MSE (exact norms)" if config.startswith("tq-mse")
                else "naive pair angles")
        curves.setdefault(name, []).append((row["bits_per_element"], row["delta_bpb"], config))
    return {k: sorted(v) for k, v in curves.items()}


def table(base, rows, curves):
    lines = [f"fp16 KV baseline: {base:.4f} bits per byte.", "",
             "| config | bits/element | Δbpb | output KL (bits/byte) |",
             "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["bits_per_element"]):
        lines.append(f"| `{r['preset']}` | {r['bits_per_element']:.3f} | "
                     f"{r['delta_bpb']:+.4f} | {r['output_kl_bpb']:.4f} |")
    for name, points in curves.items():
        for bits, delta, config in points:
            lines.append(f"| yardstick: {config} ({name}) | {bits:.3f} | {delta:+.4f} | |")
    return "\n".join(lines) + "\n"


# Issue 7's targets: (budget in bits per element, largest Δbpb on kvlab-A).
TARGETS = [(2.6, 0.10), (3.25, 0.05), (4.25, 0.012), (5.1, 0.005), (6.6, 0.002)]
MAX_BITS = 9  # Uncompressed and near-uncompressed configs would squash the plot.


def plot(path, base, rows, curves, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    for (name, points), style in zip(curves.items(), ("s--", "o--", "^:")):
        ax.plot([p[0] for p in points], [p[1] for p in points], style, color="grey",
                alpha=0.8, label=f"yardstick: {name}")
    ax.plot([t[0] for t in TARGETS], [t[1] for t in TARGETS], "x:", color="tab:red",
            label="targets (issue 7): at most this Δbpb at this many bits")
    shown = [r for r in rows if r["bits_per_element"] <= MAX_BITS]
    for tuned, color, label in ((False, "tab:blue", "kvcodec presets"),
                                (True, "tab:orange", "kvcodec tuned presets (kv-*, default)")):
        pick = [r for r in shown if (r["preset"].startswith("kv-") or
                                     r["preset"] == "default") == tuned]
        ax.scatter([r["bits_per_element"] for r in pick], [r["delta_bpb"] for r in pick],
                   color=color, zorder=3, label=label)
    for r in shown:
        ax.annotate(r["preset"], (r["bits_per_element"], r["delta_bpb"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    # Δbpb spans four decades and can be slightly negative (noise at high
    # rates): symmetric log scale, linear within ±1e-3.
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("bits per K/V element (everything in the stream)")
    ax.set_ylabel("Δ bits per byte vs fp16 KV")
    ax.set_title(f"{title} (fp16 KV {base:.4f} bpb)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--table", help="also write the Markdown table here")
    p.add_argument("--json", help="also write the measurements here")
    p.add_argument("--model", default=os.path.join(KVLAB, "kvlab-A"))
    p.add_argument("--text", default=os.path.join(KVLAB, "text", "linux-docs-val.txt"))
    p.add_argument("--frontier", default=os.path.join(KVLAB, "frontier-kvlab-A.json"))
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--presets", help="comma-separated (default: every preset)")
    p.add_argument("--from-json", help="redraw from a --json file instead of measuring")
    a = p.parse_args()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        with open(a.frontier) as f:
            curves = yardsticks(json.load(f))
        if a.from_json:
            with open(a.from_json) as f:
                saved = json.load(f)
            base, rows = saved["base_bpb"], saved["presets"]
        else:
            presets = a.presets.split(",") if a.presets else import_kvcodec().presets()
            base, rows = measure(a.model, a.text, a.tokens, a.windows, presets, log)
    except (OSError, ValueError, KeyError, EvalError) as e:
        print(f"plot_rd: {e}", file=sys.stderr)
        return 1
    text = table(base, rows, curves)
    print(text, end="")
    if a.table:
        with open(a.table, "w") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"base_bpb": base, "presets": rows, "yardsticks": curves}, f, indent=1)
    plot(a.output, base, rows, curves,
         f"{os.path.basename(os.path.normpath(a.model))}, {a.windows} x {a.tokens} tokens of "
         f"{os.path.basename(a.text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
