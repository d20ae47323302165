#!/usr/bin/env python3
"""Writes a tiny random Llama-family checkpoint for kvc-eval's tests.

config.json and model.safetensors (f16), byte vocabulary ("tokenizer":
"bytes ..."), random weights scaled by 1/sqrt(fan-in) so that activations
stay in a realistic range. Deterministic for a seed. Options cover what the
loader must handle: GQA, any head_dim, Qwen2 biases, Mistral's sliding
window, tied embeddings, RoPE scaling.

    /usr/bin/python3 tests/eval/tiny_model.py OUT_DIR [--model-type llama]
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from kvc_eval.safetensors import write_safetensors  # noqa: E402


def make_weights(model_type="llama", layers=2, hidden=32, heads=4, kv_heads=2, head_dim=16,
                 intermediate=64, vocab=256, tie=False, bias=None, seed=0):
    """{name: f16 array} of a checkpoint; Qwen2 gets q/k/v biases by default."""
    rng = np.random.default_rng(seed)
    bias = model_type == "qwen2" if bias is None else bias

    def linear(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float16)

    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)).astype(np.float16),
         "model.norm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float16)}
    if not tie:
        w["lm_head.weight"] = linear(vocab, hidden)
    for layer in range(layers):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float16)
        w[p + "post_attention_layernorm.weight"] = (
            1 + 0.1 * rng.standard_normal(hidden)).astype(np.float16)
        w[p + "self_attn.q_proj.weight"] = linear(heads * head_dim, hidden)
        w[p + "self_attn.k_proj.weight"] = linear(kv_heads * head_dim, hidden)
        w[p + "self_attn.v_proj.weight"] = linear(kv_heads * head_dim, hidden)
        w[p + "self_attn.o_proj.weight"] = linear(hidden, heads * head_dim)
        w[p + "mlp.gate_proj.weight"] = linear(intermediate, hidden)
        w[p + "mlp.up_proj.weight"] = linear(intermediate, hidden)
        w[p + "mlp.down_proj.weight"] = linear(hidden, intermediate)
        if bias:
            for name, size in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
                w[p + f"self_attn.{name}_proj.bias"] = (
                    0.1 * rng.standard_normal(size * head_dim)).astype(np.float16)
    return w


def make_config(model_type="llama", layers=2, hidden=32, heads=4, kv_heads=2, head_dim=16,
                intermediate=64, vocab=256, tie=False, sliding_window=None, rope_scaling=None):
    config = {
        "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                           "qwen2": "Qwen2ForCausalLM"}[model_type]],
        "model_type": model_type, "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": tie, "torch_dtype": "float16",
        "tokenizer": "bytes (token id = byte value)",
    }
    if sliding_window is not None:
        config["sliding_window"] = sliding_window
    if rope_scaling is not None:
        config["rope_scaling"] = rope_scaling
    return config


def write_model(directory, weights, config):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    write_safetensors(os.path.join(directory, "model.safetensors"), sorted(weights.items()),
                      {"format": "pt"})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--model-type", default="llama", choices=["llama", "mistral", "qwen2"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write_model(a.out, make_weights(a.model_type, seed=a.seed), make_config(a.model_type))


if __name__ == "__main__":
    main()
