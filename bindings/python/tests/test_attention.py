"""Attention on encoded blocks (block_attend, decode_attention) against the
same computation in float64 numpy on the decoded blocks: every preset, GQA,
several blocks in any order, token ranges, lse, and the errors of mismatched
shapes."""

import numpy as np
import pytest

import kvcodec
from kvcodec import KvcodecError, Status

# The library accumulates in float32 (issue 8: within 1e-5 relative of
# decode-then-compute); these bounds leave a margin above that, and are far
# below what a wrong head, token or layout would give.
RTOL = 1e-4


def randn(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def encode(x, method, kind, head_start, token_start):
    return kvcodec.encode_block(x, method=method, kind=kind, layer=1, head_start=head_start,
                                token_start=token_start)


def reference(k_blocks, v_blocks, queries, scale, token_begin=0, token_end=0):
    """(out, lse) in float64 from the decoded blocks, which are placed by
    their headers (heads and tokens) into whole [heads, tokens, dim] arrays."""
    def assemble(blocks):
        infos = [kvcodec.block_info(b) for b in blocks]
        h0 = min(i["head_start"] for i in infos)
        t0 = min(i["token_start"] for i in infos)
        heads = max(i["head_start"] + i["head_count"] for i in infos) - h0
        tokens = max(i["token_start"] + i["token_count"] for i in infos) - t0
        whole = np.full((heads, tokens, infos[0]["head_dim"]), np.nan)
        for block, i in zip(blocks, infos):
            h, t = i["head_start"] - h0, i["token_start"] - t0
            whole[h:h + i["head_count"], t:t + i["token_count"]] = kvcodec.decode_block(block)
        assert not np.isnan(whole).any(), "the test's blocks leave a gap"
        return whole, t0

    k, t0 = assemble(k_blocks)
    v, _ = assemble(v_blocks)
    # The range as the blocks number tokens; token_end 0: through the last.
    lo = max(token_begin, t0) - t0
    hi = (token_end if token_end else t0 + k.shape[1]) - t0
    k, v = k[:, lo:hi], v[:, lo:hi]
    group = queries.shape[0] // k.shape[0]
    q = queries.astype(np.float64).reshape(k.shape[0], group, -1)
    logits = scale * np.einsum("hqd,htd->hqt", q, k)
    top = logits.max(axis=2, keepdims=True)
    weights = np.exp(logits - top)
    total = weights.sum(axis=2, keepdims=True)
    out = np.einsum("hqt,htd->hqd", weights / total, v).reshape(queries.shape)
    lse = (top + np.log(total)).reshape(-1)
    return out, lse, k, v


def assert_attention_close(out, lse, ref_out, ref_lse, k, v, queries, scale):
    # Bounds in the terms of the C tests: a value vector's norm for the
    # outputs (a convex combination of them), the logits' scale for lse.
    v_norm = np.linalg.norm(v, axis=2).max()
    assert np.abs(out - ref_out).max() <= RTOL * v_norm, np.abs(out - ref_out).max()
    logit_scale = abs(scale) * np.linalg.norm(queries, axis=1).max() * \
        np.linalg.norm(k, axis=2).max()
    assert np.abs(lse - ref_lse).max() <= RTOL * (1 + logit_scale)


@pytest.mark.parametrize("preset", kvcodec.presets())
def test_block_attend_matches_numpy(preset):
    data = kvcodec.encode_block(randn((2, 40, 128), 1), preset, kind="v")
    decoded = kvcodec.decode_block(data).astype(np.float64)
    weights = randn((2, 3, 40), 2)
    out = kvcodec.block_attend(data, weights)
    assert out.shape == (2, 3, 128) and out.dtype == np.float32
    expected = np.einsum("hqt,htd->hqd", weights.astype(np.float64), decoded)
    bound = np.einsum("hqt,ht->hq", np.abs(weights), np.linalg.norm(decoded, axis=2))
    assert (np.abs(out - expected) <= RTOL * bound[:, :, None]).all()
    # One weight row per head may drop its axis.
    assert np.array_equal(kvcodec.block_attend(data, weights[:, 0, :]),
                          kvcodec.block_attend(data, weights[:, :1, :]))
    with pytest.raises(ValueError, match="weights"):
        kvcodec.block_attend(data, weights[:, :, :39])
    with pytest.raises(ValueError, match="weights"):
        kvcodec.block_attend(data, weights[:1])


@pytest.mark.parametrize("preset", kvcodec.presets())
def test_decode_attention_one_block_each(preset):
    config = kvcodec.Config.preset(preset)
    k_method, v_method = config.layer(1, "k", 4), config.layer(1, "v", 4)
    keys = [encode(randn((2, 48, 128), 3), k_method, "k", 0, 0)]
    values = [encode(randn((2, 48, 128), 4), v_method, "v", 0, 0)]
    queries = randn((8, 128), 5)  # 4 query heads per KV head
    out, lse = kvcodec.decode_attention(keys, values, queries, return_lse=True)
    assert out.shape == (8, 128) and out.dtype == np.float32
    assert lse.shape == (8,) and lse.dtype == np.float32
    scale = 1 / np.sqrt(128)
    ref_out, ref_lse, k, v = reference(keys, values, queries, scale)
    assert_attention_close(out, lse, ref_out, ref_lse, k, v, queries, scale)
    assert np.array_equal(kvcodec.decode_attention(keys, values, queries), out)


@pytest.mark.parametrize("group", [1, 2, 4])
def test_decode_attention_several_blocks_gqa_and_ranges(group):
    # KV heads 2-4 of layer 1, tokens 100-171: keys split by tokens (given
    # out of order), values split by heads and differently by tokens.
    dim, heads = 64, 3
    k = randn((heads, 72, dim), 6)
    v = randn((heads, 72, dim), 7)
    keys = [encode(k[:, 40:], "tq-mse-b4", "k", 2, 140),
            encode(k[:, :16], "tq-mse-b4", "k", 2, 100),
            encode(k[:, 16:40], "tq-mse-b4", "k", 2, 116)]
    values = [encode(v[:1], "tq-mse-b3", "v", 2, 100),
              encode(v[1:, 50:], "polar-4222", "v", 3, 150),
              encode(v[1:, :50], "tq-mse-b3", "v", 3, 100)]
    queries = randn((heads * group, dim), 8)
    for scale, begin, end in [(None, 0, 0), (0.3, 110, 160), (-0.05, 140, 0), (2.0, 0, 101)]:
        s = 1 / np.sqrt(dim) if scale is None else scale
        out, lse = kvcodec.decode_attention(keys, values, queries, scale=scale, token_begin=begin,
                                            token_end=end, threads=2, return_lse=True)
        ref_out, ref_lse, kk, vv = reference(keys, values, queries, s, begin, end)
        assert_attention_close(out, lse, ref_out, ref_lse, kk, vv, queries, s)
        # Deterministic for a thread count; one thread agrees within the bound.
        assert np.array_equal(out, kvcodec.decode_attention(
            keys, values, queries, scale=scale, token_begin=begin, token_end=end, threads=2))
        single = kvcodec.decode_attention(keys, values, queries, scale=scale, token_begin=begin,
                                          token_end=end, threads=1)
        assert_attention_close(single, lse, ref_out, ref_lse, kk, vv, queries, s)
        # Skipping the checksums changes nothing on intact blocks.
        assert np.array_equal(out, kvcodec.decode_attention(
            keys, values, queries, scale=scale, token_begin=begin, token_end=end, threads=2,
            trusted_blocks=True))


def test_lse_merges_with_a_tail():
    # Attention over blocks A and B equals attention over A merged with
    # attention over B through their lse: what an engine does with an
    # uncompressed tail.
    k, v = randn((1, 64, 128), 9), randn((1, 64, 128), 10)
    a_k, b_k = encode(k[:, :40], "tq-mse-b4", "k", 0, 0), encode(k[:, 40:], "tq-mse-b4", "k", 0, 40)
    a_v, b_v = encode(v[:, :40], "tq-mse-b4", "v", 0, 0), encode(v[:, 40:], "tq-mse-b4", "v", 0, 40)
    q = randn((4, 128), 11)
    out_a, lse_a = kvcodec.decode_attention([a_k], [a_v], q, return_lse=True)
    out_b, lse_b = kvcodec.decode_attention([b_k], [b_v], q, return_lse=True)
    out, lse = kvcodec.decode_attention([a_k, b_k], [a_v, b_v], q, return_lse=True)
    lse_ab = np.logaddexp(lse_a.astype(np.float64), lse_b)
    merged = (np.exp(lse_a - lse_ab)[:, None] * out_a + np.exp(lse_b - lse_ab)[:, None] * out_b)
    np.testing.assert_allclose(lse, lse_ab, rtol=0, atol=1e-4)
    np.testing.assert_allclose(out, merged, rtol=0, atol=1e-4 * np.abs(out).max())


def test_decode_attention_errors():
    k, v = randn((2, 32, 64), 12), randn((2, 32, 64), 13)
    keys = [encode(k[:, :16], "tq-mse-b4", "k", 0, 0), encode(k[:, 16:], "tq-mse-b4", "k", 0, 16)]
    values = [encode(v, "tq-mse-b4", "v", 0, 0)]
    q = randn((4, 64), 14)

    def status_of(key_blocks, value_blocks, queries, **options):
        with pytest.raises(KvcodecError) as e:
            kvcodec.decode_attention(key_blocks, value_blocks, queries, **options)
        assert e.value.diagnostic, "a failure without a message"
        assert e.value.function == "kvc_decode_attention"
        return e.value.status

    # 3 query heads for 2 KV heads.
    assert status_of(keys, values, q[:3]) in (Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)
    # Values cover fewer tokens than keys; a token missing; a token twice.
    short = [encode(v[:, :24], "tq-mse-b4", "v", 0, 0)]
    assert status_of(keys, short, q) in (Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)
    assert status_of(keys[:1] + [encode(k[:, 17:], "tq-mse-b4", "k", 0, 17)], values, q) in \
        (Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)
    assert status_of(keys + keys[:1], values, q) in (Status.INVALID_ARGUMENT,
                                                     Status.SHAPE_MISMATCH)
    # Values given as keys; another layer's block; another head_dim.
    assert status_of(values, values, q) in (Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)
    other_layer = kvcodec.encode_block(v, "tq-mse-b4", kind="v", layer=2)
    assert status_of(keys, [other_layer], q) in (Status.INVALID_ARGUMENT,
                                                 Status.SHAPE_MISMATCH)
    wide = [kvcodec.encode_block(randn((2, 32, 128), 15), "tq-mse-b4", kind="v", layer=1)]
    assert status_of(keys, wide, q) in (Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)
    # Token ranges that are empty or after the blocks' tokens.
    assert status_of(keys, values, q, token_begin=20, token_end=10) == Status.INVALID_ARGUMENT
    assert status_of(keys, values, q, token_begin=40) == Status.INVALID_ARGUMENT
    # No blocks; a damaged block.
    assert status_of([], values, q) == Status.INVALID_ARGUMENT
    damaged = bytearray(keys[1])
    damaged[len(damaged) // 2] ^= 1
    assert status_of([keys[0], damaged], values, q) == Status.CHECKSUM
    # Trusted blocks are not checksummed: the damage is no checksum error.
    try:
        kvcodec.decode_attention([keys[0], damaged], values, q, trusted_blocks=True)
    except KvcodecError as e:
        assert e.status != Status.CHECKSUM
    assert status_of(keys, values, q, scale=float("nan")) == Status.INVALID_ARGUMENT
    bad = q.copy()
    bad[2, 7] = np.inf
    assert status_of(keys, values, bad) == Status.INVALID_VALUE
    weights = np.ones((2, 32), np.float32)
    weights[1, 3] = np.nan
    with pytest.raises(KvcodecError) as e:
        kvcodec.block_attend(values[0], weights)
    assert e.value.status == Status.INVALID_VALUE and e.value.diagnostic

    # What the binding checks itself, before any call.
    with pytest.raises(ValueError, match="head_dim"):
        kvcodec.decode_attention(keys, values, randn((4, 128), 16))
    with pytest.raises(ValueError, match="queries"):
        kvcodec.decode_attention(keys, values, q[0])
    with pytest.raises(ValueError, match="scale"):
        kvcodec.decode_attention(keys, values, q, scale=0.0)
    with pytest.raises(TypeError, match="sequence"):
        kvcodec.decode_attention(keys[0], values, q)
    with pytest.raises(ValueError, match="token_begin"):
        kvcodec.decode_attention(keys, values, q, token_begin=-1)
