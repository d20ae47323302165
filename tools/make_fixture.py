#!/usr/bin/env python3
"""Cuts tests/data/kvlab-A-2L-64T.safetensors from a kvlab-A KV dump.

The CLI tests need a small cache with real structure (trained weights, RoPE,
GQA). The full dump (6 layers, 2 KV heads, 4 query heads, 1024 tokens,
head_dim 128, f16) is 15 MB; this keeps
  - layers 0 and 5 (first and last), renamed layer0 and layer1,
  - the first 64 tokens,
  - KV head 0 and the query heads that read it under GQA (0 and 1), so that
    the query-to-KV-head grouping (2 query heads per KV head) is kept,
  - layer{L}.q, layer{L}.k (after RoPE) and layer{L}.v, f16,
and records rope_layout = split-half and rope_theta = 10000 (kvlab-A's RoPE,
from its config) in the metadata. Both KV heads with all four query heads
would take 256 KiB, over the size budget of a test fixture (well under
200 KB); this takes 128 KiB.

  /usr/bin/python3 tools/make_fixture.py \\
      ../shared/kvlab/kv/kvlab-A-linux-1024.safetensors \\
      tests/data/kvlab-A-2L-64T.safetensors

Needs numpy; writes the safetensors format directly (no other packages).
"""
import json
import struct
import sys

import numpy as np

LAYERS = (0, 5)
TOKENS = 64
KV_HEADS = 1
DTYPES = {"F16": np.float16, "F32": np.float32, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    metadata = header.pop("__metadata__", {})
    base = 8 + header_size
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(
            data[base + begin:base + end], dtype=DTYPES[entry["dtype"]]
        ).reshape(entry["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    for name, array in tensors:
        header[name] = {
            "dtype": "F16",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # 8-aligned data, as the format allows
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, array in tensors:
            f.write(np.ascontiguousarray(array).astype("<f2").tobytes())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1], sys.argv[2]
    tensors, metadata = read_safetensors(source)
    kv_heads = tensors["layer0.k"].shape[0]
    group = tensors["layer0.q"].shape[0] // kv_heads
    out = []
    for new, old in enumerate(LAYERS):
        for kind, heads in (("q", KV_HEADS * group), ("k", KV_HEADS), ("v", KV_HEADS)):
            array = tensors[f"layer{old}.{kind}"]
            assert array.dtype == np.float16
            out.append((f"layer{new}.{kind}", array[:heads, :TOKENS, :]))
    write_safetensors(target, out, {
        "model": metadata.get("model", "kvlab-A"),
        "source": f"{source.rsplit('/', 1)[-1]}: layers {LAYERS[0]} and "
                  f"{LAYERS[1]}, tokens 0-{TOKENS - 1}, KV head 0, "
                  f"query heads 0-{group - 1}",
        "rope_layout": "split-half",
        "rope_theta": "10000",
    })


if __name__ == "__main__":
    main()
