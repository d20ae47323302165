#!/usr/bin/env python3
"""Whole caches through kvc pack / unpack / cat / append / verify, one case
per run (each registered with ctest):

    cache_test.py KVC DATA_DIR WORK_DIR CASE

Standard library only. The stream cases send a cache between two processes
over a pipe and over a loopback TCP socket and bound the receiver's peak
memory: it must stay within 3 layers (K + V, f16) of what the same receiver
needs for a 2-layer cache, while the cache is 16 layers.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

KVC, DATA, WORK, CASE = sys.argv[1:5]
FIXTURE = os.path.join(DATA, "kvlab-A-2L-64T.safetensors")


def fail(message):
    sys.exit(f"FAIL ({CASE}): {message}")


def kvc(*args, ok=True):
    p = subprocess.run([KVC, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        fail(f"kvc {' '.join(args)}: {p.stderr.strip()}")
    if not ok and p.returncode == 0:
        fail(f"kvc {' '.join(args)} succeeded")
    return p


def same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if fa.read() != fb.read():
            fail(f"{a} and {b} differ")


def synthetic_cache(path, layers, heads, tokens, dim):
    """layer{L}.k / .v of random finite f16 values (|x| < 512)."""
    clear = bytes(b & 0xBF for b in range(256))  # exponent < 31: finite
    tensor = heads * tokens * dim * 2
    header, offset = {}, 0
    for layer in range(layers):
        for kv in "kv":
            header[f"layer{layer}.{kv}"] = (offset, offset + tensor)
            offset += tensor
    text = "{" + ",".join(
        f'"{name}":{{"dtype":"F16","shape":[{heads},{tokens},{dim}],'
        f'"data_offsets":[{a},{b}]}}' for name, (a, b) in header.items()) + "}"
    text += " " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode())
        for _ in header:
            f.write(os.urandom(tensor).translate(clear))
    return tensor * 2  # bytes of one layer, K + V


def peak_kib(proc):
    """Waits for proc; returns its peak resident set (KiB), VmHWM of its own
    address space (wait4's ru_maxrss would count the parent's pages the
    child had before exec)."""
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.01)
    return peak


def send(sender_args, receiver_args, via):
    """Runs kvc SENDER | kvc RECEIVER over a pipe or a loopback socket."""
    if via == "pipe":
        sender = subprocess.Popen([KVC, *sender_args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        receiver = subprocess.Popen([KVC, *receiver_args], stdin=sender.stdout,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sender.stdout.close()
    else:
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        receiver = subprocess.Popen([KVC, *receiver_args], stdin=conn,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sender = subprocess.Popen([KVC, *sender_args], stdout=client,
                                  stderr=subprocess.PIPE)
        for s in (conn, client, server):
            s.close()
    peak = peak_kib(receiver)
    sender.wait()
    if sender.returncode != 0 or receiver.returncode != 0:
        fail(f"{via}: sender {sender.returncode} {sender.stderr.read()!r}, "
             f"receiver {receiver.returncode} {receiver.stderr.read()!r}")
    return peak


def case_pack_unpack():
    # The same blocks as kvc encode: bit-identical decoded caches.
    kvc("pack", FIXTURE, "-o", "a.kvc", "--preset", "turboangle", "--block-tokens", "16")
    kvc("unpack", "a.kvc", "-o", "a.safetensors")
    kvc("encode", FIXTURE, "-o", "b.kvc", "--preset", "turboangle", "--block-tokens", "16")
    kvc("decode", "b.kvc", "-o", "b.safetensors")
    same("a.safetensors", "b.safetensors")
    # zstd changes the bytes, not the values; a sealed stream decodes with
    # kvc decode (the whole-stream API) as well.
    kvc("pack", FIXTURE, "-o", "z.kvc", "--preset", "turboangle", "--block-tokens", "16",
        "--zstd", "9", "--sealed")
    kvc("decode", "z.kvc", "-o", "z.safetensors")
    same("a.safetensors", "z.safetensors")
    kvc("verify", "z.kvc")


def case_stream():
    layer_bytes = synthetic_cache("big.safetensors", 16, 4, 2048, 128)
    pack = ["pack", "big.safetensors", "-o", "-", "--preset", "tq-mse-b4", "--threads", "1"]
    kvc("pack", "big.safetensors", "-o", "big.kvc", "--preset", "tq-mse-b4")
    kvc("unpack", "big.kvc", "-o", "file.safetensors")
    # The receiver's footprint for a small cache, then for the big one.
    synthetic_cache("small.safetensors", 2, 4, 2048, 128)
    base = send(["pack", "small.safetensors", "-o", "-", "--preset", "tq-mse-b4"],
                ["unpack", "-", "-o", "small.out.safetensors"], "pipe")
    results = []
    for via in ("pipe", "socket"):
        peak = send(pack, ["unpack", "-", "-o", f"{via}.safetensors"], via)
        same("file.safetensors", f"{via}.safetensors")
        results.append((via, peak))
    limit = base + 3 * layer_bytes // 1024
    for via, peak in results:
        print(f"{via}: receiver peak {peak} KiB; 2-layer receiver {base} KiB; "
              f"one layer {layer_bytes // 1024} KiB; cache {16 * layer_bytes // 1024} KiB")
        if peak > limit:
            fail(f"{via}: receiver peak {peak} KiB exceeds {limit} KiB")


def case_cat():
    kvc("pack", FIXTURE, "-o", "a.kvc", "--preset", "tq-mse-b3", "--block-tokens", "8")
    kvc("unpack", "a.kvc", "-o", "all.safetensors", "--dtype", "f32")
    kvc("cat", "a.kvc", "--layer", "1", "--kv", "v", "--tokens", "5:37", "-o", "part.safetensors",
        "--dtype", "f32")
    def tensor(path, name):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            import json
            header = json.loads(f.read(n))
            a, b = header[name]["data_offsets"]
            f.seek(8 + n + a)
            return header[name]["shape"], f.read(b - a)
    shape, whole = tensor("all.safetensors", "layer1.v")
    part_shape, part = tensor("part.safetensors", "layer1.v")
    row = shape[2] * 4
    if part_shape != [shape[0], 32, shape[2]] or part != whole[5 * row:37 * row]:
        fail("kvc cat differs from the same tokens of kvc unpack")
    p = kvc("cat", "a.kvc", "--layer", "2", "--kv", "k", "-o", "x.safetensors", ok=False)
    if "layer" not in p.stderr:
        fail(f"bad --layer: {p.stderr}")
    kvc("cat", "a.kvc", "--layer", "0", "--kv", "k", "--tokens", "60:70", "-o", "x.safetensors",
        ok=False)


def case_append():
    kvc("pack", FIXTURE, "-o", "base.kvc", "--preset", "tq-mse-b4", "--block-tokens", "16")
    shutil.copy("base.kvc", "clean.kvc")
    kvc("append", "clean.kvc", FIXTURE)
    out = kvc("verify", "clean.kvc").stdout
    if "128 tokens" not in out or "2 segments" not in out:
        fail(f"verify after append: {out}")
    base, appended = os.path.getsize("base.kvc"), os.path.getsize("clean.kvc")
    kvc("unpack", "base.kvc", "-o", "base.safetensors")
    for cut in (base + 1, base + 100, (base + appended) // 2, appended - 1):
        # A crash during the append: the cache reads as before it.
        shutil.copy("clean.kvc", "crashed.kvc")
        os.truncate("crashed.kvc", cut)
        p = kvc("verify", "crashed.kvc", ok=False)
        if "interrupted append" not in p.stdout:
            fail(f"verify of a cut at {cut}: {p.stdout} {p.stderr}")
        kvc("unpack", "crashed.kvc", "-o", "crashed.safetensors")
        same("base.safetensors", "crashed.safetensors")
        # Appending again drops the torn tail: the same bytes as a clean append.
        kvc("append", "crashed.kvc", FIXTURE)
        same("clean.kvc", "crashed.kvc")


def case_verify_damage():
    kvc("pack", FIXTURE, "-o", "a.kvc", "--preset", "tq-mse-b4", "--block-tokens", "16")
    data = bytearray(open("a.kvc", "rb").read())
    data[len(data) // 2] ^= 0x10
    open("bad.kvc", "wb").write(data)
    p = kvc("verify", "bad.kvc", ok=False)
    if "block" not in p.stdout or "checksum" not in p.stdout or "damaged" not in p.stderr:
        fail(f"verify: {p.stdout} {p.stderr}")
    p = kvc("unpack", "bad.kvc", "-o", "x.safetensors", ok=False)
    if "checksum" not in p.stderr or os.path.exists("x.safetensors"):
        fail(f"unpack of a damaged cache: {p.stderr}")


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
globals()["case_" + CASE]()
