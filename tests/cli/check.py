#!/usr/bin/env python3
"""Checks for the kvc CLI tests; standard library only (no numpy).

JSON paths are dotted; a number indexes an array and '*' stands for every
element, so 'layers.*.k_rel_mse' names the k_rel_mse of every layer.

  check.py finite FILE PATH...            numbers, not NaN or infinite
  check.py below FILE PATH BOUND          numbers < BOUND
  check.py equal FILE PATH VALUE          equal to the JSON literal VALUE
  check.py has FILE PATH NAME...          the values at PATH include NAMEs
  check.py cache FILE DTYPE LAYERS SHAPE  exactly layer{L}.k/.v, L < LAYERS,
                                          of DTYPE and SHAPE ("1,64,128")
  check.py same-tensors A B               B's tensors are in A, byte for byte
  check.py make-cache FILE DTYPE LAYERS HEADS TOKENS DIM
      writes a cache of values exact in F16 and BF16 (k/8, |k| < 128)
"""
import json
import math
import struct
import sys


def fail(message):
    sys.exit("check.py: " + message)


def lookup(value, path):
    """The values at a dotted path, '*' expanding arrays."""
    values = [value]
    for key in path.split("."):
        expanded = []
        for v in values:
            if key == "*":
                if not isinstance(v, list):
                    fail(f"{path}: {key} applied to a non-array")
                expanded.extend(v)
            elif isinstance(v, dict) and key in v:
                expanded.append(v[key])
            elif isinstance(v, list) and key.isdigit() and int(key) < len(v):
                expanded.append(v[int(key)])
            else:
                fail(f"{path}: no key {key!r}")
        values = expanded
    if not values:
        fail(f"{path}: nothing there")
    return values


def load_json(path):
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as e:
        fail(f"{path}: not JSON ({e}): {text[:200]!r}")


def numbers(document, path):
    values = lookup(document, path)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(f"{path}: {v!r} is not a number")
    return values


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    header.pop("__metadata__", None)
    base = 8 + size
    return {name: (entry["dtype"], entry["shape"],
                   data[base + entry["data_offsets"][0]:base + entry["data_offsets"][1]])
            for name, entry in header.items()}


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, _, data in tensors:
            f.write(data)


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    # BF16: the high half of the F32 pattern, exact for these values.
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def main(args):
    command = args[0] if args else ""
    if command in ("finite", "below", "equal", "has"):
        document = load_json(args[1])
        if command == "finite":
            for path in args[2:]:
                for v in numbers(document, path):
                    if not math.isfinite(v):
                        fail(f"{path}: {v!r} is not finite")
        elif command == "below":
            for v in numbers(document, args[2]):
                if not v < float(args[3]):
                    fail(f"{args[2]}: {v!r} is not below {args[3]}")
        elif command == "equal":
            expected = json.loads(args[3])
            for v in lookup(document, args[2]):
                if v != expected:
                    fail(f"{args[2]}: {v!r} != {expected!r}")
        else:
            present = lookup(document, args[2])
            for name in args[3:]:
                if name not in present:
                    fail(f"{args[2]}: {name!r} missing from {present!r}")
    elif command == "cache":
        tensors = read_safetensors(args[1])
        dtype, layers = args[2], int(args[3])
        shape = [int(n) for n in args[4].split(",")]
        expected = {f"layer{l}.{kind}" for l in range(layers) for kind in "kv"}
        if set(tensors) != expected:
            fail(f"{args[1]}: tensors {sorted(tensors)}, expected {sorted(expected)}")
        for name, (got_dtype, got_shape, _) in tensors.items():
            if (got_dtype, got_shape) != (dtype, shape):
                fail(f"{args[1]}: {name} is {got_dtype} {got_shape}")
    elif command == "same-tensors":
        reference, decoded = read_safetensors(args[1]), read_safetensors(args[2])
        for name, tensor in decoded.items():
            if name not in reference:
                fail(f"{args[2]}: {name} is not in {args[1]}")
            if tensor != reference[name]:
                fail(f"{args[2]}: {name} differs from {args[1]}")
    elif command == "make-cache":
        dtype = args[2]
        layers, heads, tokens, dim = (int(n) for n in args[3:7])
        count = heads * tokens * dim
        tensors = []
        for layer in range(layers):
            for kind in "kv":
                seed = 2 * layer + (kind == "v")
                values = [((i * 37 + seed * 11) % 255 - 127) / 8 for i in range(count)]
                tensors.append((f"layer{layer}.{kind}", dtype, [heads, tokens, dim],
                                encode(values, dtype)))
        write_safetensors(args[1], tensors)
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
