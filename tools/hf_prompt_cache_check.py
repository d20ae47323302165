#!/usr/bin/env python3
"""Prompt caches with Hugging Face transformers: run a prompt through
LlamaForCausalLM, save its DynamicCache with kvcodec.prompt_cache, restore it
and continue greedy generation; report how many tokens match the
continuation from the uncompressed cache, per preset.

    PYTHONPATH=bindings/python python3 tools/hf_prompt_cache_check.py \
        --model ../shared/kvlab/kvlab-A --text ../shared/kvlab/text/linux-docs-val.txt

Needs torch and transformers (the `device` machine has them); runs on the GPU
when there is one. Prints one JSON object.
"""
import argparse
import copy
import json
import tempfile
import time

import torch
from transformers import DynamicCache, LlamaForCausalLM

from kvcodec import prompt_cache


def greedy(model, cache, token, steps):
    out = []
    for _ in range(steps):
        out.append(token)
        with torch.no_grad():
            logits = model(torch.tensor([[token]], device=model.device), past_key_values=cache,
                           use_cache=True).logits
        token = int(logits[0, -1].argmax())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--prompt-bytes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--presets", default="raw-f16,turboangle,tq-mse-b4,tq-mse-b3,polarquant")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float16).to(device)
    model.eval()
    with open(args.text, "rb") as f:
        prompt = list(f.read()[:args.prompt_bytes])  # byte-level tokenizer
    with torch.no_grad():
        out = model(torch.tensor([prompt], device=device), use_cache=True)
    first = int(out.logits[0, -1].argmax())
    reference = greedy(model, copy.deepcopy(out.past_key_values), first, args.steps)
    # The floor: greedy decoding from a second copy of the same cache (GPU
    # kernels need not be bitwise deterministic), and from the cache rebuilt
    # layer by layer as load_cache does, without kvcodec.
    again = greedy(model, copy.deepcopy(out.past_key_values), first, args.steps)
    rebuilt = DynamicCache()
    for layer, (k, v) in enumerate(prompt_cache._layers(out.past_key_values)):
        rebuilt.update(k.clone(), v.clone(), layer)
    rebuilt_tokens = greedy(model, rebuilt, first, args.steps)

    def matched(tokens):
        return next((i for i, (a, b) in enumerate(zip(reference, tokens)) if a != b),
                    args.steps)

    result = {"device": device, "prompt_tokens": len(prompt), "steps": args.steps,
              "transformers_cache": type(out.past_key_values).__name__,
              "same_cache_again_matched": matched(again),
              "rebuilt_cache_matched": matched(rebuilt_tokens), "presets": {}}
    for preset in args.presets.split(","):
        with tempfile.NamedTemporaryFile(suffix=".kvc") as f:
            start = time.perf_counter()
            size = prompt_cache.save_cache(out.past_key_values, f.name, model.config,
                                           preset=preset)
            restored = prompt_cache.load_cache(f.name, model.config, device=device)
            seconds = time.perf_counter() - start
        assert isinstance(restored, DynamicCache)
        identical = all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(
            prompt_cache._layers(out.past_key_values), prompt_cache._layers(restored)))
        tokens = greedy(model, restored, first, args.steps)
        result["presets"][preset] = {"bytes": size, "matched_tokens": matched(tokens),
                                     "bit_identical_cache": identical,
                                     "save_load_seconds": round(seconds, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
