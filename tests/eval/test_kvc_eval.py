"""kvc-eval: the model, the text windows, the codec round trip and the CLI."""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import KVLAB, TEXT, needs_kvlab, run_kvc_eval
from kvc_eval import evaluate as ev
from kvc_eval.codec import CacheCodec, load_config
from kvc_eval.errors import EvalError
from kvc_eval.model import Model, apply_rope, rope_tables
from kvc_eval.safetensors import SafetensorsFile, write_safetensors
from kvc_eval.text import tokenize, windows
from tiny_model import make_config, make_weights, write_model


def run(model_dir, preset, tokens=64, num_windows=2):
    model = Model(model_dir)
    ids, lengths = tokenize(model, TEXT)
    baseline = ev.Baseline(model, ev.windows_of(ids, lengths, tokens, num_windows))
    config, _ = load_config(preset=preset)
    return ev.evaluate(model, baseline, CacheCodec(config, model.config.num_layers))


def hidden_states(model_dir, tokens):
    return Model(model_dir).forward(np.asarray(tokens))


def test_raw_f16_is_lossless(tiny_model):
    r = run(tiny_model, "raw-f16")
    assert r["delta_bpb"] == 0 and r["output_kl_bpb"] == 0
    assert 16 < r["bits_per_element"] < 17  # 16 bits plus block headers.
    for layer in r["layers"]:
        assert layer["k_rel_err"] == layer["v_rel_err"] == layer["attn_kl"] == 0
        assert layer["k_method"] == layer["v_method"] == "raw-f16"


def test_fewer_bits_cost_quality(tiny_model):
    r4, r2 = run(tiny_model, "tq-mse-b4"), run(tiny_model, "tq-mse-b2")
    # head_dim 16: B bits per coordinate, 1 for the f16 norm, about 0.22 of
    # block headers (64 tokens x 2 heads per block).
    assert r2["bits_per_element"] == pytest.approx(3.22, abs=0.01)
    assert r4["bits_per_element"] == pytest.approx(5.22, abs=0.01)
    assert 0 < r4["output_kl_bpb"] < r2["output_kl_bpb"]
    for a, b in zip(r4["layers"], r2["layers"]):
        # TurboQuant-MSE's distortion: about 0.009 at 4 bits, 0.12 at 2.
        assert 0.002 < a["k_rel_err"] < 0.03 and 0.05 < b["k_rel_err"] < 0.25
        assert a["attn_out_rel_err"] < b["attn_out_rel_err"]
    assert r2["base_bpb"] == r4["base_bpb"] and r2["bpb"] == r2["base_bpb"] + r2["delta_bpb"]


def test_zstd_stage_counts_stored_bytes(tiny_model):
    """kv-3.25z is its methods through zstd: the same quality, bits counted as
    a cache file stores them (no more than the fixed-rate blocks)."""
    z = run(tiny_model, "kv-3.25z")
    fixed = ev.evaluate(*_baseline_and_codec(tiny_model, "all k=gtq-b4:nc,center "
                                                         "v=tq-mse-b3:nc\n"))
    assert "zstd_level" not in fixed and z["zstd_level"] == 3
    assert z["delta_bpb"] == fixed["delta_bpb"] and z["output_kl_bpb"] == fixed["output_kl_bpb"]
    assert z["fixed_rate_bits_per_element"] == fixed["bits_per_element"]
    # Stored: each section's own header and checksum (12 bytes) beside the
    # payload, and zstd where it saves 1/64 or more.
    assert z["bits_per_element"] <= fixed["bits_per_element"] + 1e-3
    for a, b in zip(z["layers"], fixed["layers"]):
        assert a["k_rel_err"] == b["k_rel_err"] and a["v_rel_err"] == b["v_rel_err"]


def _baseline_and_codec(model_dir, text, tokens=64, num_windows=2):
    import kvcodec
    model = Model(model_dir)
    ids, lengths = tokenize(model, TEXT)
    baseline = ev.Baseline(model, ev.windows_of(ids, lengths, tokens, num_windows))
    return model, baseline, CacheCodec(kvcodec.Config.from_text(text), model.config.num_layers)


def test_gqa_equals_repeated_kv_heads(tmp_path):
    """Query head h reads KV head h // (heads / kv_heads): the same model with
    every KV head's weights repeated for each of its query heads gives the
    same outputs."""
    weights = make_weights(heads=4, kv_heads=2, head_dim=16)
    write_model(str(tmp_path / "gqa"), weights, make_config(heads=4, kv_heads=2))
    mha = dict(weights)
    for name, w in weights.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            mha[name] = np.repeat(w.reshape(2, 16, -1), 2, axis=0).reshape(64, -1)
    write_model(str(tmp_path / "mha"), mha, make_config(heads=4, kv_heads=4))
    tokens = np.frombuffer(b"The quick brown fox jumps over the lazy dog.", np.uint8)
    np.testing.assert_allclose(hidden_states(str(tmp_path / "gqa"), tokens),
                               hidden_states(str(tmp_path / "mha"), tokens), atol=1e-5)


def test_causal(tiny_model):
    a = np.frombuffer(b"attention is causal here", np.uint8).astype(np.int64)
    b = a.copy()
    b[-1] = ord("X")
    ha, hb = hidden_states(tiny_model, a), hidden_states(tiny_model, b)
    np.testing.assert_array_equal(ha[:-1], hb[:-1])
    assert not np.allclose(ha[-1], hb[-1])


def test_rope_is_split_half_and_relative():
    """Dimension i pairs with i + d/2 and turns by pos * theta^(-2i/d), so
    q·k depends only on the distance between positions."""
    config = types.SimpleNamespace(head_dim=8, rope_theta=10000.0, rope_scaling=None)
    cos, sin = rope_tables(config, np.arange(12))
    x = np.random.default_rng(1).standard_normal((12, 8)).astype(np.float32)
    y = apply_rope(x, cos, sin)
    t, i = 7, 1
    angle = t * 10000.0 ** (-2 * i / 8)
    z = complex(x[t, i], x[t, i + 4]) * complex(math.cos(angle), math.sin(angle))
    assert y[t, i] == pytest.approx(z.real, abs=1e-5)
    assert y[t, i + 4] == pytest.approx(z.imag, abs=1e-5)
    q, k = x[0], x[1]
    dots = [apply_rope(q, cos[p + 3], sin[p + 3]) @ apply_rope(k, cos[p], sin[p])
            for p in range(5)]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4)


def test_sliding_window(tmp_path):
    """Mistral: position t attends to the last `sliding_window` positions."""
    d = str(tmp_path / "mistral")
    write_model(d, make_weights("mistral", layers=1),
                make_config("mistral", layers=1, sliding_window=4))
    base = np.frombuffer(b"sliding windows!", np.uint8).astype(np.int64)
    h = hidden_states(d, base)
    outside, inside = base.copy(), base.copy()
    outside[-5] = ord("#")  # 4 before the last: out of its window
    inside[-4] = ord("#")   # 3 before the last: in it
    np.testing.assert_array_equal(h[-1], hidden_states(d, outside)[-1])
    assert not np.allclose(h[-1], hidden_states(d, inside)[-1])


def test_qwen2_biases_and_tied_embeddings(tmp_path):
    weights = make_weights("qwen2", tie=True)
    assert "lm_head.weight" not in weights and "model.layers.0.self_attn.k_proj.bias" in weights
    write_model(str(tmp_path / "q"), weights, make_config("qwen2", tie=True))
    model = Model(str(tmp_path / "q"))
    assert model.lm_head is model.embed
    zero = {n: (np.zeros_like(w) if n.endswith("bias") else w) for n, w in weights.items()}
    write_model(str(tmp_path / "z"), zero, make_config("qwen2", tie=True))
    plain = {n: w for n, w in weights.items() if not n.endswith("bias")}
    write_model(str(tmp_path / "p"), plain, make_config("qwen2", tie=True))
    tokens = np.arange(20)
    np.testing.assert_array_equal(hidden_states(str(tmp_path / "z"), tokens),
                                  hidden_states(str(tmp_path / "p"), tokens))
    assert not np.allclose(hidden_states(str(tmp_path / "q"), tokens),
                           hidden_states(str(tmp_path / "p"), tokens))


def test_bf16_and_sharded_weights(tmp_path, tiny_model):
    """A checkpoint in bf16, split over two shards with an index, loads as the
    same model up to bf16 rounding of its weights."""
    weights = make_weights()
    names = sorted(weights)
    d = tmp_path / "sharded"
    d.mkdir()
    halves = [names[:len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        # bf16 bits: the high half of each f32, rounded to nearest even.
        tensors = []
        for n in part:
            bits = weights[n].astype(np.float32).view(np.uint32)
            bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            tensors.append((n, bits, "BF16"))
            weight_map[n] = fname
        write_safetensors(str(d / fname), tensors)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps(make_config()))
    tokens = np.arange(30)
    np.testing.assert_allclose(hidden_states(str(d), tokens), hidden_states(tiny_model, tokens),
                               atol=0.05)


def test_windows():
    assert windows(100, 10, 4) == [0, 22, 44, 66]  # stride (100 - 10 - 1) // 4
    assert windows(11, 10, 1) == [0]
    with pytest.raises(EvalError, match="needs 11"):
        windows(10, 10, 1)
    with pytest.raises(EvalError, match="too short"):
        windows(12, 10, 4)


def test_cli_json(tiny_model):
    p = run_kvc_eval("--model", tiny_model, "--text", TEXT, "--preset", "tq-mse-b3",
                     "--tokens", "48", "--windows", "2", "--seeds", "2", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    for key in ("base_bpb", "bpb", "delta_bpb", "bits_per_element", "output_kl_bpb",
                "encoded_bytes", "elements", "layers", "seeds"):
        assert key in r
    assert r["preset"] == "tq-mse-b3" and r["predictions"] == 96 and r["target_bytes"] == 96
    assert r["elements"] == 2 * 2 * 2 * 48 * 16 * 2  # K+V, layers, heads, T, d, windows
    assert r["bits_per_element"] == 8 * r["encoded_bytes"] / r["elements"]
    assert len(r["layers"]) == 2 and len(r["seeds"]["delta_bpb"]) == 2
    assert r["seeds"]["delta_bpb"][0] == r["delta_bpb"]


def test_cli_config_file_and_table(tiny_model, tmp_path):
    config = tmp_path / "c.txt"
    config.write_text("kvcodec-config 1\nall kv=tq-mse-b4\nlast 1 k=raw-f16\n")
    p = run_kvc_eval("--model", tiny_model, "--text", TEXT, "--config", str(config),
                     "--tokens", "32", "--windows", "1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.search(r"bits/element, bpb [0-9.]+ \(fp16 KV", lines[0])
    assert "raw-f16" in lines[-1] and "raw-f16" not in lines[-2]  # "last 1" = layer 1


@pytest.mark.parametrize("args,message", [
    (["--preset", "no-such-preset"], "unknown preset"),
    (["--preset", "tq-mse-b4", "--tokens", "10000000"], "a window needs 10000001"),
    (["--config", "/nonexistent/config"], "No such file"),
])
def test_cli_errors(tiny_model, args, message):
    p = run_kvc_eval("--model", tiny_model, "--text", TEXT, *args)
    assert p.returncode == 1 and message in p.stderr and p.stderr.startswith("kvc-eval: ")


def test_bad_models(tmp_path):
    cfg = make_config()
    cfg["model_type"] = "gpt2"
    write_model(str(tmp_path / "a"), make_weights(), cfg)
    with pytest.raises(EvalError, match="model_type 'gpt2' is not supported"):
        Model(str(tmp_path / "a"))
    weights = make_weights()
    del weights["model.layers.1.mlp.up_proj.weight"]
    write_model(str(tmp_path / "b"), weights, make_config())
    with pytest.raises(EvalError, match="lacks model.layers.1.mlp.up_proj.weight"):
        Model(str(tmp_path / "b"))
    write_model(str(tmp_path / "c"), make_weights(head_dim=16), make_config(head_dim=8))
    with pytest.raises(EvalError, match="has shape"):
        Model(str(tmp_path / "c"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{")
    with pytest.raises(EvalError, match="not JSON"):
        Model(str(tmp_path / "d"))
    (tmp_path / "e.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(EvalError, match="not a safetensors file"):
        SafetensorsFile(str(tmp_path / "e.safetensors"))


def test_subword_tokenizer_needs_package(tmp_path):
    cfg = make_config()
    del cfg["tokenizer"]
    write_model(str(tmp_path), make_weights(), cfg)
    model = Model(str(tmp_path))
    with pytest.raises(EvalError, match="no tokenizer.json"):
        tokenize(model, TEXT)
    (tmp_path / "tokenizer.json").write_text("{}")
    if importlib.util.find_spec("tokenizers") is not None:
        pytest.skip("the tokenizers package is installed")
    with pytest.raises(EvalError, match="needs the Python package 'tokenizers'"):
        tokenize(model, TEXT)


def _reference_bpb(tokens, num_windows):
    """bpb fp16 KV from ../shared/kvlab/reference_forward.py."""
    p = subprocess.run([sys.executable, os.path.join(KVLAB, "reference_forward.py"),
                        os.path.join(KVLAB, "kvlab-A"),
                        os.path.join(KVLAB, "text", "linux-docs-val.txt"),
                        "--tokens", str(tokens), "--windows", str(num_windows)],
                       capture_output=True, text=True, check=True)
    return float(p.stdout.split()[-1])


@needs_kvlab
def test_kvlab_base_bpb_matches_reference():
    """The fp16 baseline equals kvlab's reference forward within 1e-3.
    CI checks 2 windows of 256 tokens (numpy's reference BLAS is slow);
    KVC_EVAL_FULL=1 checks the issue's 4 windows of 1024."""
    full = os.environ.get("KVC_EVAL_FULL") == "1"
    tokens, num_windows = (1024, 4) if full else (256, 2)
    model = Model(os.path.join(KVLAB, "kvlab-A"))
    ids, lengths = tokenize(model, os.path.join(KVLAB, "text", "linux-docs-val.txt"))
    base = ev.Baseline(model, ev.windows_of(ids, lengths, tokens, num_windows)).bpb
    assert abs(base - _reference_bpb(tokens, num_windows)) < 1e-3
    if full:
        assert abs(base - 1.8414657959910556) < 1e-3  # frontier-kvlab-A.json
