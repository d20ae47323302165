"""Tests of the Python binding: every entry point, every preset and dtype,
strided views, errors, and block scores against numpy."""

import concurrent.futures
import os
import subprocess
import sys

import numpy as np
import pytest

import kvcodec
from kvcodec import KvcodecError, Status

DTYPES = ["f32", "f16", "bf16"]


def to_bf16_bits(x):
    """f32 -> bfloat16 bits, rounding to nearest even (as the library does)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def sample(shape, dtype="f32", seed=0):
    """(array to pass, its values as float32, dtype argument)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if dtype == "f16":
        x16 = x.astype(np.float16)
        return x16, x16.astype(np.float32), None
    if dtype == "bf16":
        bits = to_bf16_bits(x)
        return bits, from_bf16_bits(bits), "bf16"
    return x, x, None


def rel_mse(x, y):
    x = np.asarray(x, np.float64)
    return float(((x - np.asarray(y, np.float64)) ** 2).sum() / (x ** 2).sum())


def test_version_and_presets():
    assert kvcodec.version().startswith("0.2.")
    assert kvcodec.__version__.split(".")[:2] == kvcodec.version().split(".")[:2]
    names = kvcodec.presets()
    assert "tq-mse-b4" in names and "blockgtq-k3v3" in names
    assert len(set(names)) == len(names)
    assert "TurboQuant" in kvcodec.preset_description("tq-mse-b4")
    with pytest.raises(ValueError, match="tq-mse-b4"):
        kvcodec.preset_description("no-such-preset")
    assert kvcodec.simd_target()


@pytest.mark.parametrize("preset", kvcodec.presets())
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_round_trip_every_preset_and_dtype(preset, dtype):
    x, values, dtype_arg = sample((2, 24, 64), dtype)
    data = kvcodec.encode_block(x, preset, kind="v", layer=2, head_start=4, token_start=100,
                                dtype=dtype_arg)
    # The codec reads every dtype as float32: the same values give the same bytes.
    assert data == kvcodec.encode_block(values, preset, kind="v", layer=2, head_start=4,
                                        token_start=100)
    info = kvcodec.block_info(data)
    assert (info["layer"], info["kind"], info["head_start"], info["token_start"]) == \
        (2, "v", 4, 100)
    assert (info["head_count"], info["token_count"], info["head_dim"]) == (2, 24, 64)
    assert info["method"] == kvcodec.Config.preset(preset).layer(2, "v", 3).text

    decoded = kvcodec.decode_block(data)
    assert decoded.dtype == np.float32 and decoded.shape == x.shape
    if preset == "raw-f16" and dtype == "f16":
        assert np.array_equal(decoded, values)
    assert rel_mse(values, decoded) < 0.7  # tq-prod-b2, the coarsest, measures 0.58
    # Other output dtypes are the float32 result, rounded to nearest even.
    assert np.array_equal(kvcodec.decode_block(data, np.float16), decoded.astype(np.float16))
    assert np.array_equal(kvcodec.decode_block(data, "f16"), decoded.astype(np.float16))
    assert np.array_equal(kvcodec.decode_block(data, "bf16"), to_bf16_bits(decoded))


def test_raw_methods_are_exact():
    x, values, _ = sample((3, 10, 32), "f32")
    assert np.array_equal(kvcodec.decode_block(kvcodec.encode_block(x, method="raw-f32")), x)
    x16 = x.astype(np.float16)
    assert np.array_equal(kvcodec.decode_block(kvcodec.encode_block(x16, "raw-f16"),
                                               np.float16), x16)
    bits = to_bf16_bits(x)
    data = kvcodec.encode_block(bits, method="raw-bf16", dtype="bf16")
    assert np.array_equal(kvcodec.decode_block(data, "bf16"), bits)


def test_strided_views_are_read_in_place():
    rng = np.random.default_rng(1)
    # An engine's layout [tokens, heads, head_dim], seen as [heads, tokens, head_dim].
    engine = rng.standard_normal((40, 4, 64)).astype(np.float32)
    views = [
        engine.transpose(1, 0, 2),
        engine.transpose(1, 0, 2)[:, ::3, :],
        engine.transpose(1, 0, 2)[::-1, 5:30, :],
        np.asfortranarray(engine[:8]).transpose(1, 0, 2),
        engine.transpose(1, 0, 2)[:, :, ::-2],
    ]
    for view in views:
        expected = kvcodec.encode_block(np.ascontiguousarray(view), "tq-mse-b3")
        assert kvcodec.encode_block(view, "tq-mse-b3") == expected
    # Broadcast input (zero strides): the C API reads all-zero strides as
    # "contiguous", so the binding copies it.
    row = rng.standard_normal(64).astype(np.float32)
    broadcast = np.broadcast_to(row, (2, 16, 64))
    assert kvcodec.encode_block(broadcast, "tq-mse-b4") == \
        kvcodec.encode_block(np.ascontiguousarray(broadcast), "tq-mse-b4")
    # Unaligned input: a float16 array at an odd byte offset.
    raw = np.zeros(2 * 16 * 64 * 2 + 1, np.uint8)
    odd = raw[1:].view(np.float16).reshape(2, 16, 64)
    odd[...] = rng.standard_normal((2, 16, 64))
    assert kvcodec.encode_block(odd, "tq-mse-b4") == \
        kvcodec.encode_block(odd.copy(), "tq-mse-b4")


def test_decode_into_strided_out():
    x, _, _ = sample((3, 20, 64))
    data = kvcodec.encode_block(x, "polarquant")
    expected = kvcodec.decode_block(data)
    engine = np.full((20, 3, 64), np.nan, np.float32)  # [tokens, heads, head_dim]
    result = kvcodec.decode_block(data, out=engine.transpose(1, 0, 2))
    assert np.array_equal(engine.transpose(1, 0, 2), expected)
    assert np.shares_memory(result, engine)
    half = np.zeros((3, 20, 64), np.float16)
    kvcodec.decode_block(data, out=half)
    assert np.array_equal(half, expected.astype(np.float16))
    bits = np.zeros((3, 20, 64), np.uint16)
    kvcodec.decode_block(data, "bf16", out=bits)
    assert np.array_equal(bits, to_bf16_bits(expected))
    with pytest.raises(TypeError, match="bf16"):
        kvcodec.decode_block(data, out=bits)
    with pytest.raises(KvcodecError) as e:
        kvcodec.decode_block(data, out=np.zeros((3, 21, 64), np.float32))
    assert e.value.status == Status.SHAPE_MISMATCH
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.zeros((3, 20, 64), np.float32)
        frozen.flags.writeable = False
        kvcodec.decode_block(data, out=frozen)
    with pytest.raises(ValueError, match="zero strides"):
        repeated = np.lib.stride_tricks.as_strided(np.zeros(64, np.float32), (3, 20, 64),
                                                   (0, 0, 4), writeable=True)
        kvcodec.decode_block(data, out=repeated)


@pytest.mark.parametrize("preset", kvcodec.presets())
def test_block_scores_match_numpy(preset):
    x, _, _ = sample((2, 32, 128), seed=3)
    data = kvcodec.encode_block(x, preset)
    decoded = kvcodec.decode_block(data)
    queries = np.random.default_rng(4).standard_normal((2, 3, 128)).astype(np.float32)
    scores = kvcodec.block_scores(data, queries)
    assert scores.shape == (2, 3, 32) and scores.dtype == np.float32
    expected = np.einsum("hqd,htd->hqt", queries.astype(np.float64), decoded)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # One query per head may drop its axis.
    one = kvcodec.block_scores(data, queries[:, 0, :])
    assert np.array_equal(one, kvcodec.block_scores(data, queries[:, :1, :]))
    with pytest.raises(ValueError, match="queries"):
        kvcodec.block_scores(data, queries[:, :, :64])


def test_block_config_choices():
    x, _, _ = sample((1, 8, 64))
    by_preset = kvcodec.encode_block(x, "tq-mse-b3")
    assert kvcodec.encode_block(x, method="tq-mse-b3") == by_preset
    assert kvcodec.encode_block(x, method=kvcodec.TensorConfig("tq-mse-b3")) == by_preset
    text = "kvcodec-config 1\nall kv=tq-mse-b3\nlast 1 k=tq-mse-b4\n"
    assert kvcodec.encode_block(x, config=text, layer=0, num_layers=4) == by_preset
    with kvcodec.Config.from_text(text) as config:
        last = kvcodec.encode_block(x, config=config, layer=3, num_layers=4)
        assert kvcodec.block_info(last)["method"] == "tq-mse-b4"
        # Values have no "last" rule: the number of layers is not needed.
        assert kvcodec.encode_block(x, config=config, kind="v", layer=3) == \
            kvcodec.encode_block(x, "tq-mse-b3", kind="v", layer=3)
        with pytest.raises(ValueError, match="num_layers"):
            kvcodec.encode_block(x, config=config, layer=3)
    with pytest.raises(TypeError, match="exactly one"):
        kvcodec.encode_block(x)
    with pytest.raises(TypeError):
        kvcodec.encode_block(x, "tq-mse-b3", method="tq-mse-b4")


def test_configs():
    text = "kvcodec-config 1\nall k=tq-mse-b3 v=tq-mse-b2\nfirst 1 kv=raw-f16\n"
    config = kvcodec.Config.from_text(text)
    assert kvcodec.Config.from_text(config.text).text == config.text
    assert config.layer(0, "k", 4).text == "raw-f16"
    assert config.layer(2, "v", 4).text == "tq-mse-b2"
    config.set_layer(2, "v", "tq-prod-b3:nc")
    assert config.layer(2, "values", 4) == kvcodec.TensorConfig("tq-prod-b3:nc")
    assert "tq-prod-b3" in config.text
    with pytest.raises(KvcodecError) as e:
        config.layer(4, "k", 4)
    assert e.value.status == Status.INVALID_ARGUMENT
    config.close()
    with pytest.raises(ValueError, match="closed"):
        config.text

    tc = kvcodec.TensorConfig("tq-mse-b4")
    assert (tc.method, tc.bits) == ("tq-mse", 4)
    assert tc.fields()["method"] == 2
    reseeded = tc.replace(seed=tc.seed + 1)
    assert reseeded != tc and reseeded.seed == tc.seed + 1
    x, _, _ = sample((1, 8, 64))
    assert kvcodec.encode_block(x, method=reseeded) != kvcodec.encode_block(x, method=tc)
    with pytest.raises(KvcodecError):
        tc.replace(bits=99)
    with pytest.raises(ValueError, match="no field"):
        tc.replace(colour=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stream_round_trip(dtype):
    keys, k_values, dtype_arg = sample((3, 2, 40, 64), dtype, seed=5)
    values, v_values, _ = sample((3, 2, 40, 64), dtype, seed=6)
    stream = kvcodec.encode_stream(keys, values, "tq-mse-b4", dtype=dtype_arg, threads=2,
                                   block_tokens=16, rope_layout="split-half",
                                   position_offset=7, rope_base=10000.0)
    # Per-layer lists, one thread: the same bytes.
    assert kvcodec.encode_stream(list(keys), list(values), "tq-mse-b4", dtype=dtype_arg,
                                 threads=1, block_tokens=16, rope_layout="split-half",
                                 position_offset=7, rope_base=10000.0) == stream
    info = kvcodec.stream_info(stream)
    assert info["format"] == "1.0" and info["dtype"] == dtype
    assert (info["num_layers"], info["num_kv_heads"], info["num_tokens"], info["head_dim"]) \
        == (3, 2, 40, 64)
    assert (info["rope_layout"], info["position_offset"], info["rope_base"]) == \
        ("split-half", 7, 10000.0)
    assert [layer["k"] for layer in info["layers"]] == ["tq-mse-b4"] * 3
    assert sum(layer["k_bytes"] + layer["v_bytes"] for layer in info["layers"]) < len(stream)
    assert "layers" not in kvcodec.stream_info(stream, layers=False)

    list_k, list_v = kvcodec.decode_stream(stream)
    assert len(list_k) == len(list_v) == 3
    assert list_k[0].shape == (2, 40, 64) and list_k[0].dtype == np.float32
    assert rel_mse(k_values, np.stack(list_k)) < 0.02
    assert rel_mse(v_values, np.stack(list_v)) < 0.02
    half_k, none = kvcodec.decode_stream(stream, np.float16, values=False, threads=1)
    assert none is None
    assert np.array_equal(np.stack(half_k), np.stack(list_k).astype(np.float16))
    none, bits_v = kvcodec.decode_stream(stream, "bf16", keys=False)
    assert np.array_equal(np.stack(bits_v), to_bf16_bits(np.stack(list_v)))


def test_stream_configs_and_queries():
    rng = np.random.default_rng(7)
    keys = rng.standard_normal((4, 2, 32, 128)).astype(np.float16)
    values = rng.standard_normal((4, 2, 32, 128)).astype(np.float16)
    config = kvcodec.Config.preset("blockgtq-k3v3")
    config.set_layer(0, "k", "raw-f16")
    stream = kvcodec.encode_stream(keys, values, config=config)
    layers = kvcodec.stream_info(stream)["layers"]
    assert layers[0]["k"] == "raw-f16" and layers[1]["k"].startswith("gtq-b3")
    list_k, _ = kvcodec.decode_stream(stream, np.float16)
    assert np.array_equal(list_k[0], keys[0])
    queries = rng.standard_normal((4, 4, 32, 128)).astype(np.float32)
    with_queries = kvcodec.encode_stream(keys, values, config=config, queries=queries)
    assert kvcodec.stream_info(with_queries)["num_layers"] == 4
    with pytest.raises(KvcodecError) as e:
        kvcodec.encode_stream(keys, values, config=config, queries=queries[:, :3])
    assert e.value.status in (Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)


def test_errors_carry_status_and_diagnostic():
    x, _, _ = sample((2, 16, 64))
    data = kvcodec.encode_block(x, "tq-mse-b4")
    stream = kvcodec.encode_stream(x[None], x[None], "tq-mse-b4")

    def status_of(call, *args, **kwargs):
        with pytest.raises(KvcodecError) as e:
            call(*args, **kwargs)
        assert isinstance(e.value.status, int)
        assert e.value.status_name == "KVC_ERR_" + Status(e.value.status).name
        assert e.value.status_name in str(e.value)
        return e.value

    assert status_of(kvcodec.decode_block, data[:-3]).status == Status.TRUNCATED
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    assert status_of(kvcodec.decode_block, flipped).status == Status.CHECKSUM
    assert status_of(kvcodec.block_info, b"not kvcodec at all").status == Status.NOT_KVCODEC
    e = status_of(kvcodec.decode_block, stream)
    assert e.status == Status.NOT_KVCODEC and "stream" in e.diagnostic
    assert status_of(kvcodec.decode_stream, data).status == Status.NOT_KVCODEC
    assert status_of(kvcodec.stream_info, stream[:-1]).status in (Status.TRUNCATED,
                                                                  Status.CORRUPT)
    assert status_of(kvcodec.decode_stream, stream[:-1]).status == Status.TRUNCATED
    e = status_of(kvcodec.Config.preset, "tq-mse-b9000")
    assert e.status == Status.INVALID_ARGUMENT and "tq-mse-b4" in e.diagnostic
    assert status_of(kvcodec.Config.from_text, "not a config").diagnostic
    assert status_of(kvcodec.TensorConfig, "tq-mse-b0").status == Status.INVALID_ARGUMENT
    nan = x.copy()
    nan[1, 3, 5] = np.nan
    e = status_of(kvcodec.encode_block, nan, "tq-mse-b4")
    assert e.status == Status.INVALID_VALUE and e.diagnostic
    big = kvcodec.encode_block(np.full((1, 2, 64), 1e6, np.float32), method="raw-f32")
    assert status_of(kvcodec.decode_block, big, np.float16).status == Status.INVALID_VALUE
    assert status_of(kvcodec.encode_block, x[:, :, :5], "tq-mse-b4").status == \
        Status.INVALID_ARGUMENT
    assert status_of(kvcodec.encode_stream, x[None], x[None, :, :8], "tq-mse-b4").status \
        == Status.SHAPE_MISMATCH

    with pytest.raises(TypeError, match="float64"):
        kvcodec.encode_block(x.astype(np.float64), "tq-mse-b4")
    with pytest.raises(TypeError, match="bf16"):
        kvcodec.encode_block(x.view(np.uint16)[:, :, :64], "tq-mse-b4")
    with pytest.raises(TypeError, match="float32"):
        kvcodec.encode_block(x, "tq-mse-b4", dtype="f16")
    with pytest.raises(ValueError, match="3 dimensions"):
        kvcodec.encode_block(x[0], "tq-mse-b4")
    with pytest.raises(ValueError, match="layer"):
        kvcodec.encode_block(x, "tq-mse-b4", layer=-1)
    with pytest.raises(ValueError, match="kind"):
        kvcodec.encode_block(x, "tq-mse-b4", kind="q")
    with pytest.raises(TypeError, match="dtype"):
        kvcodec.decode_block(data, np.int32)
    with pytest.raises(ValueError, match="rope_layout"):
        kvcodec.encode_stream(x[None], x[None], "tq-mse-b4", rope_layout="sideways")
    with pytest.raises(ValueError, match="same dtype and shape"):
        kvcodec.encode_stream([x, x[:, :8]], [x, x], "tq-mse-b4")


def test_inputs_of_any_buffer_type():
    x, _, _ = sample((2, 16, 64))
    data = kvcodec.encode_block(x, "tq-mse-b3")
    expected = kvcodec.decode_block(data)
    for buffer in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert np.array_equal(kvcodec.decode_block(buffer), expected)
    # A block inside a larger buffer, as an engine's page file holds it.
    page = bytearray(b"\0" * 13 + data + b"\0" * 5)
    assert np.array_equal(kvcodec.decode_block(memoryview(page)[13:13 + len(data)]), expected)


def test_threads_share_a_config():
    # ctypes releases the GIL during calls: encodes run in parallel and are
    # deterministic.
    config = kvcodec.Config.preset("tq-3.5")
    blocks = [sample((2, 64, 128), seed=s)[0] for s in range(8)]
    expected = [kvcodec.encode_block(b, config=config) for b in blocks]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: kvcodec.encode_block(b, config=config), blocks))
    assert results == expected


def test_library_search_order(tmp_path):
    env = dict(os.environ, KVCODEC_LIBRARY=str(tmp_path / "libkvcodec.so.0.2"))
    package_dir = os.path.dirname(os.path.dirname(kvcodec.__file__))
    env["PYTHONPATH"] = package_dir
    result = subprocess.run([sys.executable, "-c", "import kvcodec"], env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "KVCODEC_LIBRARY" in result.stderr and str(tmp_path) in result.stderr
    env["KVCODEC_LIBRARY"] = kvcodec.library_path
    result = subprocess.run([sys.executable, "-c", "import kvcodec; print(kvcodec.library_path)"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == kvcodec.library_path


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    x, values, _ = sample((2, 16, 64))
    expected = kvcodec.encode_block(values, "tq-mse-b4")
    assert kvcodec.encode_block(torch.from_numpy(x), "tq-mse-b4") == expected
    assert kvcodec.encode_block(torch.from_numpy(x).transpose(0, 1).contiguous()
                                .transpose(0, 1), "tq-mse-b4") == expected
    bf16 = torch.from_numpy(x).to(torch.bfloat16)
    assert kvcodec.encode_block(bf16, "tq-mse-b4") == \
        kvcodec.encode_block(bf16.float().numpy(), "tq-mse-b4")
