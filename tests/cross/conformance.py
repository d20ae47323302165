#!/usr/bin/env python3
"""Cross-architecture conformance of kvc: streams encoded on the target are
byte-identical to the host's, and the target decodes the host's streams to
byte-identical safetensors.

  conformance.py HOST_KVC WORK_DIR TARGET_COMMAND...

HOST_KVC is a kvc built for this machine (x86-64); TARGET_COMMAND runs the
kvc under test, e.g. `qemu-s390x -L /usr/s390x-linux-gnu build/tools/kvc`.
Every preset of `kvc presets` encodes every input below on both sides:

- the bundled real cache (tests/data/kvlab-A-2L-64T.safetensors) in F16, F32
  and BF16 (F32 holds the F16 values exactly; BF16 rounds them to nearest
  even), one block per head;
- a synthetic cache, several layers and heads, head_dim 96, F32 Gaussian
  values with outlier channels, in blocks of 16 tokens (several per head);
- the real cache again with --queries (Block-GTQ's allocation from the
  dump's queries) for the presets whose method uses them;
- the real F16 and the synthetic cache as whole caches (`kvc pack` with the
  zstd stage and a block index, format 1.1), unpacked to F32.

Safetensors are little-endian and kvcodec streams too, whatever the host:
any difference is a portability bug. Standard library only.
"""
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "kvlab-A-2L-64T.safetensors"


def read_safetensors(path):
    data = Path(path).read_bytes()
    (size,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + size])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], data[8 + size + begin:8 + size + end])
    return metadata, tensors


def write_safetensors(path, metadata, tensors):
    header, offset = {"__metadata__": metadata}, 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, raw in tensors.values():
            f.write(raw)


def f32_to_bf16_bits(bits):
    """Rounds f32 bits to bf16 bits, to nearest even (inputs are finite)."""
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16


def convert(raw, to):
    """F16 tensor bytes as `to` (F16, F32 or BF16), little-endian."""
    values = struct.unpack(f"<{len(raw) // 2}e", raw)
    if to == "F16":
        return raw
    as_f32 = struct.pack(f"<{len(values)}f", *values)
    if to == "F32":
        return as_f32
    bits = struct.unpack(f"<{len(values)}I", as_f32)
    return struct.pack(f"<{len(bits)}H", *(f32_to_bf16_bits(b) for b in bits))


def make_inputs(work):
    """Writes the input caches; returns (name, path, extra encode args)."""
    inputs = []
    metadata, tensors = read_safetensors(FIXTURE)
    for dtype in ("F16", "F32", "BF16"):
        path = work / f"real-{dtype.lower()}.safetensors"
        write_safetensors(path, metadata, {
            name: (dtype, shape, convert(raw, dtype))
            for name, (_, shape, raw) in tensors.items()})
        inputs.append((f"real {dtype}", path, []))

    rng = random.Random(20250520)  # fixed: the same input on every run
    layers, heads, tokens, dim = 3, 3, 40, 96
    synthetic = {}
    for layer in range(layers):
        for kind in ("k", "v"):
            values = [rng.gauss(0.0, 6.0 if j % 13 == 5 else 1.0)
                      for _ in range(heads * tokens) for j in range(dim)]
            synthetic[f"layer{layer}.{kind}"] = (
                "F32", [heads, tokens, dim], struct.pack(f"<{len(values)}f", *values))
    path = work / "synthetic-f32.safetensors"
    write_safetensors(path, {"rope_layout": "interleaved", "rope_theta": "500000"}, synthetic)
    inputs.append(("synthetic F32, blocks of 16 tokens", path, ["--block-tokens", "16"]))
    return inputs


def run(command, what):
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {' '.join(map(str, command))}\n"
                           f"{result.stderr.strip()}")
    return result.stdout


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(host_file, target_file, what):
    """None if the files are identical, else a line that says where they differ."""
    a, b = host_file.read_bytes(), target_file.read_bytes()
    if a == b:
        return None
    return (f"{what}: host {len(a)} bytes, target {len(b)} bytes, "
            f"first difference at byte {first_difference(a, b)}")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    host = [sys.argv[1]]
    work = Path(sys.argv[2])
    target = sys.argv[3:]
    work.mkdir(parents=True, exist_ok=True)

    presets = [p["name"] for p in json.loads(run(host + ["presets", "--json"], "presets"))["presets"]]
    inputs = make_inputs(work)
    # (command, input name, input, its arguments, preset, decode command)
    cases = [("encode", name, path, args, preset, ["decode"])
             for name, path, args in inputs for preset in presets]
    # Only Block-GTQ uses queries; the others must ignore them identically.
    cases += [("encode", "real F16 --queries", work / "real-f16.safetensors", ["--queries"],
               preset, ["decode"]) for preset in presets if "gtq" in preset]
    cases += [("pack", name, path, args + ["--zstd", "3", "--model-name", "kvlab-A"], preset,
               ["unpack", "--dtype", "f32"])
              for name, path, args in inputs if name == "real F16" or name.startswith("synthetic")
              for preset in presets]

    failures = []
    for n, (command, name, path, args, preset, decode) in enumerate(cases):
        what = f"{command} {preset}, {name}"
        files = {side: work / f"{n}-{side}" for side in ("host", "target")}
        try:
            for side, kvc in (("host", host), ("target", target)):
                run(kvc + [command, str(path), "-o", f"{files[side]}.kvc", "--preset", preset]
                    + args, f"{side} {command} ({what})")
            problem = compare(Path(f"{files['host']}.kvc"), Path(f"{files['target']}.kvc"),
                              f"stream ({what})")
            # Both decode the host's stream.
            for side, kvc in (("host", host), ("target", target)):
                run(kvc + [decode[0], f"{files['host']}.kvc", "-o",
                           f"{files[side]}.safetensors"] + decode[1:], f"{side} {decode[0]} ({what})")
            problem = problem or compare(Path(f"{files['host']}.safetensors"),
                                         Path(f"{files['target']}.safetensors"),
                                         f"decoded ({what})")
        except RuntimeError as e:
            problem = str(e)
        if problem:
            failures.append(problem)
            print("FAIL", problem, flush=True)

    print(f"cross conformance: {len(cases) - len(failures)} of {len(cases)} cases "
          f"({len(presets)} presets) byte-identical to the host in stream and decoded output")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
