"""The Python side of the cross-language conformance test (README.md here):
    python3 conformance.py encode OUT
    python3 conformance.py decode IN OUT
"""

import os
import sys

import numpy as np

import kvcodec

LAYERS, HEADS, TOKENS, DIM, QUERIES_PER_HEAD = 2, 2, 40, 64, 2
DTYPES = ["f32", "f16", "bf16"]
MASK = (1 << 64) - 1


def generate(seed, count):
    """The input of README.md: SplitMix64 draws as k * 2^(e - 8)."""
    state = seed
    out = np.empty(count, np.float32)
    for i in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        k = (z >> 56) - 256 if z >> 63 else z >> 56
        out[i] = k * 2.0 ** (((z >> 53) & 7) - 8)
    return out


def convert(values, dtype):
    """(array, dtype argument) holding the values in dtype; exact for them."""
    if dtype == "f32":
        return values, None
    if dtype == "f16":
        return values.astype(np.float16), None
    return (values.view(np.uint32) >> 16).astype(np.uint16), "bf16"


def encode(out):
    shape = (LAYERS, HEADS, TOKENS, DIM)
    keys = generate(1, LAYERS * HEADS * TOKENS * DIM).reshape(shape)
    values = generate(2, LAYERS * HEADS * TOKENS * DIM).reshape(shape)
    for preset in kvcodec.presets():
        for dtype in DTYPES:
            k, dtype_arg = convert(keys, dtype)
            v, _ = convert(values, dtype)
            stream = kvcodec.encode_stream(k, v, preset, threads=2, block_tokens=16,
                                           dtype=dtype_arg, rope_layout="split-half",
                                           rope_base=10000.0)
            with open(os.path.join(out, f"{preset}.{dtype}.kvc"), "wb") as f:
                f.write(stream)
            block = kvcodec.encode_block(k[1], preset, kind="k", layer=1, num_layers=LAYERS,
                                         dtype=dtype_arg)
            with open(os.path.join(out, f"{preset}.{dtype}.kvcb"), "wb") as f:
                f.write(block)


def decode(source, out):
    queries = generate(3, HEADS * QUERIES_PER_HEAD * DIM).reshape(HEADS, QUERIES_PER_HEAD, DIM)
    for name in sorted(os.listdir(source)):
        with open(os.path.join(source, name), "rb") as f:
            data = f.read()
        base = os.path.join(out, name)
        if name.endswith(".kvc"):
            for dtype in DTYPES:
                keys, values = kvcodec.decode_stream(data, dtype)
                with open(f"{base}.{dtype}.raw", "wb") as f:
                    f.write(np.stack(keys).tobytes() + np.stack(values).tobytes())
        elif name.endswith(".kvcb"):
            for dtype in DTYPES:
                with open(f"{base}.{dtype}.raw", "wb") as f:
                    f.write(kvcodec.decode_block(data, dtype).tobytes())
            with open(f"{base}.scores.raw", "wb") as f:
                f.write(kvcodec.block_scores(data, queries).tobytes())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "encode":
        encode(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "decode":
        decode(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: conformance.py encode OUT | conformance.py decode IN OUT")
