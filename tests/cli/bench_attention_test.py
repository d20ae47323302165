#!/usr/bin/env python3
"""kvc bench --attention on tiny contexts, one case per run (each registered
with ctest):

    bench_attention_test.py KVC DATA_DIR WORK_DIR CASE

Standard library only. The timings are not judged (their size depends on
the machine), only that they are there and positive; the error figures
are, since both paths compute attention over the same decoded cache.
"""
import json
import math
import os
import shutil
import subprocess
import sys

KVC, DATA, WORK, CASE = sys.argv[1:5]
FIXTURE = os.path.join(DATA, "kvlab-A-2L-64T.safetensors")

KEYS = {
    "preset": str, "target": str, "context": int, "threads": int, "cache": str, "kv_heads": int,
    "group": int, "head_dim": int, "block_tokens": int, "reps": int,
    "bits_per_element": float, "f16_scores_ms": float, "scores_ms": float,
    "scores_speedup_vs_f16": float, "f16_decode_attention_ms": float,
    "decode_attention_ms": float, "decode_attention_speedup_vs_f16": float,
    "trusted_decode_attention_ms": float, "trusted_decode_attention_speedup_vs_f16": float,
    "scores_max_rel_error": float, "decode_attention_max_rel_error": float,
}


def fail(message):
    sys.exit(f"FAIL ({CASE}): {message}")


def kvc(*args, ok=True):
    p = subprocess.run([KVC, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        fail(f"kvc {' '.join(args)}: {p.stderr.strip()}")
    if not ok and p.returncode == 0:
        fail(f"kvc {' '.join(args)} succeeded")
    return p


def bench(*args):
    """The JSON objects of one run, one per line."""
    out = kvc("bench", "--attention", "--kv", FIXTURE, "--reps", "1", "--json", *args).stdout
    try:
        return [json.loads(line) for line in out.splitlines()]
    except ValueError as e:
        fail(f"not JSON lines ({e}): {out[:300]!r}")


def check_result(r):
    for key, kind in KEYS.items():
        if key not in r:
            fail(f"no {key} in {r}")
        value = r[key]
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            fail(f"{key} is {value!r}, not {kind.__name__}")
        if kind is float and not math.isfinite(value):
            fail(f"{key} is {value}")
    for key in ("bits_per_element", "f16_scores_ms", "scores_ms", "scores_speedup_vs_f16",
                "f16_decode_attention_ms", "decode_attention_ms",
                "decode_attention_speedup_vs_f16", "trusted_decode_attention_ms",
                "trusted_decode_attention_speedup_vs_f16"):
        if r[key] <= 0:
            fail(f"{r['preset']}: {key} is {r[key]}, not positive")
    # The baseline runs on the decoded cache rounded to f16: a lossless
    # preset leaves only float rounding, a lossy one also the f16 rounding of
    # its decoded values (about 2^-11 relative per value).
    bound = 1e-4 if r["preset"] == "raw-f16" else 0.05
    for key in ("scores_max_rel_error", "decode_attention_max_rel_error"):
        if not 0 <= r[key] < bound:
            fail(f"{r['preset']}: {key} is {r[key]}, not below {bound}")


def expect_usage_error(text, *args, status=2):
    p = kvc("bench", "--attention", *args, ok=False)
    if p.returncode != status:
        fail(f"kvc bench --attention {' '.join(args)}: exit {p.returncode}, not {status}")
    lines = p.stderr.splitlines()
    if len(lines) != 1 or text not in lines[0]:
        fail(f"kvc bench --attention {' '.join(args)}: stderr {p.stderr!r} lacks {text!r}")


def case_json():
    # 300 tokens in blocks of 128: two whole blocks and a partial one. 5
    # query heads per KV head: a group of 4 and a single one in the kernels.
    results = bench("--preset", "tq-mse-b4", "--preset", "raw-f16", "--context", "300",
                    "--context", "64", "--block-tokens", "128", "--kv-heads", "2",
                    "--group", "5", "--threads", "2")
    got = [(r["context"], r["preset"]) for r in results]
    want = [(300, "tq-mse-b4"), (300, "raw-f16"), (64, "tq-mse-b4"), (64, "raw-f16")]
    if got != want:
        fail(f"results for {got}, not {want}")
    for r in results:
        check_result(r)
        expected = {"threads": 2, "cache": "cold", "kv_heads": 2, "group": 5, "head_dim": 128,
                    "block_tokens": 128, "reps": 1}
        for key, value in expected.items():
            if r[key] != value:
                fail(f"{key} is {r[key]}, not {value}")
    raw = results[1]["bits_per_element"]
    if not 16 <= raw < 16.5:
        fail(f"raw-f16 takes {raw} bits per element")


def case_all():
    presets = [p["name"] for p in json.loads(kvc("presets", "--json").stdout)["presets"]]
    # --warm: no flush of the last-level cache before each of the 5 timed
    # calls of every preset (case_json measures cold).
    results = bench("--all", "--context", "200", "--block-tokens", "64", "--kv-heads", "1",
                    "--warm")
    if [r["preset"] for r in results] != presets:
        fail(f"presets {[r['preset'] for r in results]}, not {presets}")
    for r in results:
        check_result(r)
        if r["cache"] != "warm":
            fail(f"{r['preset']}: cache is {r['cache']}, not warm")


def case_table():
    out = kvc("bench", "--attention", "--kv", FIXTURE, "--preset", "tq-mse-b3", "--context",
              "100", "--reps", "1", "--kv-heads", "1").stdout.splitlines()
    if len(out) != 2 or not out[0].startswith("preset") or not out[1].startswith("tq-mse-b3"):
        fail(f"table: {out}")


def case_errors():
    expect_usage_error("bad option --context", "--preset", "raw-f16", "--context", "0")
    expect_usage_error("bad option --context", "--preset", "raw-f16", "--context")
    expect_usage_error("bad option --threads", "--preset", "raw-f16", "--threads", "-1")
    expect_usage_error("bad option --tokens", "--preset", "raw-f16", "--tokens", "64")
    expect_usage_error("no preset", "--context", "64")
    expect_usage_error("multiple of 16", "--preset", "raw-f16", "--dim", "72")
    expect_usage_error("not --dim 64", "--kv", FIXTURE, "--preset", "raw-f16", "--dim", "64",
                       "--context", "64")
    expect_usage_error("no-such-preset", "--kv", FIXTURE, "--preset", "no-such-preset",
                       "--context", "64", "--reps", "1", status=1)
    expect_usage_error("missing.safetensors", "--kv", os.path.join(WORK, "missing.safetensors"),
                       "--preset", "raw-f16", status=1)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
{"json": case_json, "all": case_all, "table": case_table, "errors": case_errors}[CASE]()
