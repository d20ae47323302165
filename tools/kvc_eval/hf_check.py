"""Checks kvc-eval's fp16-KV baseline against transformers' own
LlamaForCausalLM on the same checkpoint, text and windows.

    python3 -m kvc_eval.hf_check --model DIR --text FILE [--tokens 1024]
                                 [--windows 4] [--device cuda]

(from tools/). Prints one JSON object: kvc-eval's base_bpb (numpy), and
transformers' bits per byte with the model in float32 (the arithmetic
kvc-eval does; its cache is not rounded to fp16, a difference far below
1e-3) and in float16 (what an engine runs). Needs torch and transformers;
kvcodec is not used.
"""
import argparse
import json
import math
import sys

import numpy as np

from .evaluate import Baseline, windows_of
from .model import Model
from .text import tokenize


def transformers_bpb(model_dir, data, dtype, device):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    bits = 0.0
    nbytes = 0
    with torch.no_grad():
        for inputs, targets, target_bytes in data:
            ids = torch.as_tensor(np.asarray(inputs), device=device)[None]
            logits = model(ids).logits[0].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            picked = log_probs[torch.arange(len(targets), device=device),
                               torch.as_tensor(np.asarray(targets), device=device)]
            bits -= float(picked.double().sum()) / math.log(2)
            nbytes += target_bytes
    return bits / nbytes


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    import torch
    model = Model(a.model)
    ids, lengths = tokenize(model, a.text)
    data = windows_of(ids, lengths, a.tokens, a.windows)
    ours = Baseline(model, data).bpb
    result = {"kvc_eval_base_bpb": ours}
    for name, dtype in (("float32", torch.float32), ("float16", torch.float16)):
        theirs = transformers_bpb(a.model, data, dtype, a.device)
        result[f"transformers_{name}_bpb"] = theirs
        result[f"difference_{name}"] = theirs - ours
    import transformers
    result["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
