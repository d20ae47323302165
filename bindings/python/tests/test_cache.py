"""Whole caches from Python: writer, random access, append, streams over a
socket, prompt caches (kvlab-A greedy continuations, when ../shared is there)."""
import io
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import kvcodec
from kvcodec import prompt_cache

RNG = np.random.default_rng(7)


def layers(n, heads=2, tokens=20, dim=64, dtype=np.float16):
    return ([RNG.standard_normal((heads, tokens, dim)).astype(dtype) for _ in range(n)],
            [RNG.standard_normal((heads, tokens, dim)).astype(dtype) for _ in range(n)])


def write(path_or_file, keys, values, **kw):
    heads, tokens, dim = keys[0].shape
    with kvcodec.CacheWriter(path_or_file, layers=len(keys), heads=heads, tokens=tokens,
                             head_dim=dim, **kw) as w:
        for k, v in zip(keys, values):
            w.add_layer(k, v)


def test_write_read_append(tmp_path):
    path = tmp_path / "c.kvc"
    keys, values = layers(3)
    write(path, keys, values, preset="tq-mse-b4", block_tokens=8, zstd_level=3,
          model_name="m", model_config=b"{}")
    with kvcodec.CacheFile(path) as c:
        assert c.info["tokens"] == 20 and c.info["segments"] == 1
        assert c.info["model_name"] == "m"
        whole = c.read(1, "v")
        part = c.read(1, "v", heads=slice(1, 2), tokens=slice(5, 17))
        np.testing.assert_array_equal(part, whole[1:2, 5:17])
        # Decoded values are close to the input (4-bit TurboQuant).
        err = np.sum((whole - values[1]) ** 2) / np.sum(values[1].astype(np.float32) ** 2)
        assert err < 0.02
        more_k, more_v = layers(3, tokens=5)
        c.append(more_k, more_v, zstd_level=1)
        assert c.info["tokens"] == 25 and c.info["segments"] == 2
        tail = c.read(2, "k", tokens=slice(20, 25))
        assert tail.shape == (2, 5, 64)
    # The whole-stream decoder reads the appended file too.
    k_all, v_all = kvcodec.decode_stream(path.read_bytes())
    assert len(k_all) == 3 and k_all[0].shape == (2, 25, 64)
    with kvcodec.CacheFile(path) as c:
        np.testing.assert_array_equal(k_all[2][:, 20:], c.read(2, "k", tokens=slice(20, 25)))


def test_zstd_level_from_the_config_and_block_sizes():
    keys, values = layers(2, tokens=64)
    config = kvcodec.Config.preset("kv-3.25z")
    assert config.zstd_level == 3
    assert kvcodec.Config.preset("kv-3.25").zstd_level == 0
    assert kvcodec.Config.from_text("all kv=tq-mse-b3\nzstd 9\n").zstd_level == 9
    sizes, decoded = {}, {}
    for level in (None, 0, 5):  # the config's (3), none, chosen
        out = io.BytesIO()
        write(out, keys, values, preset="kv-3.25z", block_tokens=32, zstd_level=level)
        with kvcodec.CacheFile(out.getvalue()) as c:
            blocks = c.blocks()
            assert [(b["layer"], b["kind"], b["token_start"]) for b in blocks] == \
                [(layer, kind, t) for layer in (0, 1) for kind in "kv" for t in (0, 32)]
            assert all(b["token_count"] == 32 for b in blocks)
            # Sections follow each other; zstd stage or not shows in the header.
            assert all(a["offset"] + a["size"] <= b["offset"] for a, b in zip(blocks, blocks[1:]))
            assert bool(c.info["features"] & 2) == (level != 0)
            sizes[level] = sum(b["size"] for b in blocks)
            decoded[level] = c.layer(1)
    assert sizes[None] <= sizes[0] and sizes[5] <= sizes[0]
    for level in (None, 5):  # a lossless stage
        np.testing.assert_array_equal(decoded[level][0], decoded[0][0])
        np.testing.assert_array_equal(decoded[level][1], decoded[0][1])


def test_interrupted_append_and_model_check(tmp_path):
    path = tmp_path / "c.kvc"
    keys, values = layers(2)
    write(path, keys, values, preset="tq-mse-b3", model_name="kvlab-A", model_config=b"{1}")
    clean = path.read_bytes()
    with open(path, "ab") as f:  # a torn append
        f.write(b"\x03\x00\x00\x00\x08\x00\x00\x00garbage")
    with kvcodec.CacheFile(path, expect_model_name="kvlab-A", expect_model_config=b"{1}") as c:
        assert c.info["ignored_bytes"] == 15 and c.info["size"] == len(clean)
    with pytest.raises(kvcodec.KvcodecError) as e:
        kvcodec.CacheFile(path, expect_model_config=b"{2}")
    assert e.value.status == 13 and "kvlab-A" in str(e.value)
    kvcodec.CacheFile(path, expect_model_config=b"{2}", allow_model_mismatch=True).close()


def test_stream_over_a_socket():
    keys, values = layers(4, tokens=33)
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()

    def send():
        with client.makefile("wb") as f:
            write(f, keys, values, preset="turboangle", block_tokens=16)
        client.close()

    sender = threading.Thread(target=send)
    sender.start()
    with conn.makefile("rb") as f:
        runs = list(kvcodec.read_stream(f))
    sender.join()
    conn.close()
    server.close()
    assert [(r.layer, r.token_start, r.keys.shape[1]) for r in runs] == \
        [(i, 0, 33) for i in range(4)]
    buf = io.BytesIO()
    write(buf, keys, values, preset="turboangle", block_tokens=16)
    with kvcodec.CacheFile(buf.getvalue()) as c:
        for r in runs:
            np.testing.assert_array_equal(r.values, c.read(r.layer, "v"))


def test_damage_is_an_error():
    keys, values = layers(1)
    buf = io.BytesIO()
    write(buf, keys, values, preset="tq-mse-b2", appendable=False)
    data = bytearray(buf.getvalue())
    data[len(data) // 2] ^= 1
    with pytest.raises(kvcodec.KvcodecError) as e:
        list(kvcodec.read_stream(io.BytesIO(bytes(data))))
    assert e.value.status == kvcodec.Status.CHECKSUM


# ---------------------------------------------------------------------------
# A prompt cache on the kvlab model (numpy forward of tools/kvc_eval), CPU.

KVLAB = Path(__file__).resolve().parents[3] / ".." / "shared" / "kvlab"
TOOLS = Path(__file__).resolve().parents[3] / "tools"


class Generator:
    """Greedy decoding with a KV cache over kvc_eval's numpy Llama."""

    def __init__(self, model):
        self.m = model
        self.c = model.config

    def _layer_step(self, w, x, positions, k_cache, v_cache):
        from kvc_eval import model as mm
        c = self.c
        h = mm.rms_norm(x, w["input_norm"], c.rms_norm_eps)
        T = len(positions)
        cos, sin = mm.rope_tables(c, positions)

        def project(name, heads):
            return (h @ w[name].T).reshape(T, heads, c.head_dim).transpose(1, 0, 2)
        q = mm.apply_rope(project("q", c.num_heads), cos, sin)
        k = mm.apply_rope(project("k", c.num_kv_heads), cos, sin)
        v = project("v", c.num_kv_heads)
        # The cache holds f16 values, as an engine's does.
        k_all = np.concatenate([k_cache, k.astype(np.float16)], axis=1)
        v_all = np.concatenate([v_cache, v.astype(np.float16)], axis=1)
        total = k_all.shape[1]
        mask = np.where(np.arange(total)[None, :] <= positions[:, None], 0.0, -np.inf)
        o = mm.attention(q, k_all.astype(np.float32), v_all.astype(np.float32),
                         mask.astype(np.float32))
        x = x + o.transpose(1, 0, 2).reshape(T, -1) @ w["o"].T
        h = mm.rms_norm(x, w["post_norm"], c.rms_norm_eps)
        g, u = h @ w["gate"].T, h @ w["up"].T
        return x + (g / (1 + np.exp(-g)) * u) @ w["down"].T, k_all, v_all

    def run(self, tokens, start, keys, values):
        """Feeds tokens at positions start..; returns (next token, keys, values)."""
        x = self.m.embed[np.asarray(tokens)]
        positions = np.arange(start, start + len(tokens))
        out_k, out_v = [], []
        for layer, w in enumerate(self.m.layers):
            x, k, v = self._layer_step(w, x, positions, keys[layer], values[layer])
            out_k.append(k)
            out_v.append(v)
        from kvc_eval import model as mm
        h = mm.rms_norm(x[-1:], self.m.final_norm, self.c.rms_norm_eps)
        return int(np.argmax(h @ self.m.lm_head.T)), out_k, out_v

    def continue_greedy(self, token, start, keys, values, steps):
        out = []
        for i in range(steps):
            out.append(token)
            token, keys, values = self.run([token], start + i, keys, values)
        return out


@pytest.mark.skipif(not (KVLAB / "kvlab-A" / "config.json").exists(),
                    reason="../shared/kvlab is absent")
def test_prompt_cache_continues_generation_on_kvlab(tmp_path):
    sys.path.insert(0, str(TOOLS))
    from kvc_eval.model import Model
    model = Model(str(KVLAB / "kvlab-A"))
    gen = Generator(model)
    text = (KVLAB / "text" / "linux-docs-val.txt").read_bytes()[:300]
    empty = [np.zeros((model.config.num_kv_heads, 0, model.config.head_dim), np.float16)
             for _ in model.layers]
    first, keys, values = gen.run(list(text), 0, empty, list(empty))
    steps = 32
    reference = gen.continue_greedy(first, len(text), keys, values, steps)
    config = str(KVLAB / "kvlab-A" / "config.json")
    matched = {}
    for preset in ("raw-f16", "turboangle", "tq-mse-b4"):
        path = tmp_path / f"{preset}.kvc"
        prompt_cache.save_cache(list(zip(keys, values)), str(path), config, preset=preset)
        k2, v2, info = prompt_cache.load_kv(str(path), config, dtype=np.float16)
        assert info["model_name"] == "llama" and info["tokens"] == len(text)
        restored = gen.continue_greedy(first, len(text), k2, v2, steps)
        n = next((i for i, (a, b) in enumerate(zip(reference, restored)) if a != b), steps)
        matched[preset] = n
    print("greedy tokens matching the uncompressed continuation:", matched)
    assert matched["raw-f16"] == steps  # f16 is what the cache held: lossless
    assert matched["turboangle"] >= 8
    # Another model's config is refused.
    with pytest.raises(kvcodec.KvcodecError):
        prompt_cache.load_kv(str(tmp_path / "raw-f16.kvc"), {"model_type": "other"})
