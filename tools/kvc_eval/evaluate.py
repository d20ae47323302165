"""Bits per byte of a model on a text with its KV cache passed through a
kvcodec config, against the same model with an fp16 cache.

Every window runs twice: once with K and V rounded to fp16 (the baseline an
fp16 cache gives), once with K and V rounded to fp16 and then encoded and
decoded by the codec, one block per layer and kind holding the whole window
(as a cache holds a prefilled sequence). The second run also measures, at each
layer, how far the decoded K and V are from the ones that layer computed and
how much that moves attention.
"""
import math
import time

import numpy as np

from .errors import EvalError
from .model import attention
from .text import windows


def f16(x):
    """What an fp16 cache holds of x, back in float32."""
    return x.astype(np.float16).astype(np.float32)


def _log_softmax(scores):
    m = scores.max(-1, keepdims=True)
    return scores - m - np.log(np.exp(scores - m).sum(-1, keepdims=True))


class LayerStats:
    """Sums over windows for one layer; ratios are taken at the end."""

    def __init__(self):
        self.k_err = self.k_ref = self.v_err = self.v_ref = 0.0
        self.logit_err = self.logit_ref = 0.0
        self.out_err = self.out_ref = 0.0
        self.kl_sum = 0.0
        self.kl_count = 0
        self.k_bytes = self.v_bytes = 0  # as stored (after zstd, if any)
        self.fixed_bytes = 0  # of the K and V blocks, before any zstd
        self.elements = 0  # Of K (= of V).

    def add(self, q, k, v, k_hat, v_hat, mask):
        self.k_err += float(np.sum((k - k_hat) ** 2, dtype=np.float64))
        self.k_ref += float(np.sum(k * k, dtype=np.float64))
        self.v_err += float(np.sum((v - v_hat) ** 2, dtype=np.float64))
        self.v_ref += float(np.sum(v * v, dtype=np.float64))
        allowed = np.isfinite(mask)
        scale = np.float32(1 / math.sqrt(q.shape[-1]))
        group = q.shape[0] // k.shape[0]
        for h in range(k.shape[0]):
            qs = q[h * group:(h + 1) * group]
            exact = qs @ k[h].T
            approx = qs @ k_hat[h].T
            d = np.where(allowed, exact - approx, 0)
            self.logit_err += float(np.sum(d.astype(np.float64) ** 2))
            self.logit_ref += float(np.sum(np.where(allowed, exact, 0).astype(np.float64) ** 2))
            # Masked entries are -inf in both: zero them before subtracting.
            lp = np.where(allowed, _log_softmax(exact * scale + mask), 0).astype(np.float64)
            lq = np.where(allowed, _log_softmax(approx * scale + mask), 0).astype(np.float64)
            self.kl_sum += float(np.sum(np.where(allowed, np.exp(lp), 0) * (lp - lq)))
            self.kl_count += qs.shape[0] * qs.shape[1]
        o = attention(q, k, v, mask)
        o_hat = attention(q, k_hat, v_hat, mask)
        self.out_err += float(np.sum((o - o_hat) ** 2, dtype=np.float64))
        self.out_ref += float(np.sum(o * o, dtype=np.float64))

    def report(self, layer, methods):
        def ratio(a, b):
            return a / b if b > 0 else 0.0
        return {
            "layer": layer,
            "k_method": methods[0],
            "v_method": methods[1],
            "k_bits": 8 * self.k_bytes / self.elements,
            "v_bits": 8 * self.v_bytes / self.elements,
            "k_rel_err": ratio(self.k_err, self.k_ref),
            "v_rel_err": ratio(self.v_err, self.v_ref),
            "logit_rel_err": ratio(self.logit_err, self.logit_ref),
            "attn_kl": ratio(self.kl_sum, self.kl_count),
            "attn_out_rel_err": ratio(self.out_err, self.out_ref),
        }


def windows_of(ids, byte_lengths, tokens, num_windows):
    """[(input ids, target ids, bytes of the targets)] of every window."""
    out = []
    for start in windows(len(ids), tokens, num_windows):
        seq = ids[start:start + tokens + 1]
        out.append((seq[:-1], seq[1:], int(byte_lengths[start + 1:start + tokens + 1].sum())))
    return out


class Baseline:
    """The fp16-cache run of every window: its bits per byte, and its final
    hidden states, from which each codec run's output KL is measured."""

    def __init__(self, model, data):
        self.data = data
        self.hidden = []
        bits = 0.0
        nbytes = 0
        for inputs, targets, target_bytes in data:
            hidden = model.forward(inputs, lambda layer, q, k, v, mask: (f16(k), f16(v)))
            self.hidden.append(hidden)
            bits -= float(model.target_log2_probs(hidden, targets).sum())
            nbytes += target_bytes
        self.bpb = bits / nbytes
        self.bytes = nbytes


def codec_run(model, baseline, codec):
    """(bpb, output KL in bits per byte, per-layer statistics) with the cache
    through `codec`.

    codec.roundtrip(layer, kind, x) encodes x (float32 holding fp16 values,
    [kv_heads, tokens, head_dim]) as one block and returns (decoded float32,
    encoded bytes); kind is "k" or "v".

    The output KL, Σ KL(p_fp16 ‖ p_codec) over the predictions, is the
    expected loss increase without the first-order term whose sign depends
    on the particular quantization noise: a steadier measure of harm than
    the bpb difference on one text.
    """
    stats = [LayerStats() for _ in range(model.config.num_layers)]
    window = []  # (k, v, k_hat, v_hat) of every layer of the window

    def hook(layer, q, k, v, mask):
        k, v = f16(k), f16(v)
        k_hat, k_bytes = codec.roundtrip(layer, "k", k)
        v_hat, v_bytes = codec.roundtrip(layer, "v", v)
        s = stats[layer]
        s.add(q, k, v, k_hat, v_hat, mask)
        s.fixed_bytes += k_bytes + v_bytes
        s.elements += k.size
        if codec.zstd_level:  # sizes once the window's cache is stored
            window.append((k, v, k_hat, v_hat))
        else:
            s.k_bytes += k_bytes
            s.v_bytes += v_bytes
        return k_hat, v_hat

    bits = kl = 0.0
    for (inputs, targets, _), base_hidden in zip(baseline.data, baseline.hidden):
        window.clear()
        hidden = model.forward(inputs, hook)
        if codec.zstd_level:  # the bytes a cache file stores, in place of the blocks'
            stored = codec.stored([(k, v) for k, v, _, _ in window])
            for layer, (_, _, k_hat, v_hat) in enumerate(window):
                for kind, x_hat in (("k", k_hat), ("v", v_hat)):
                    if not np.array_equal(stored[(layer, kind)][0], x_hat):
                        raise EvalError(f"layer {layer} {kind.upper()}: the stored cache "
                                        "decodes otherwise than the block")
                stats[layer].k_bytes += stored[(layer, "k")][1]
                stats[layer].v_bytes += stored[(layer, "v")][1]
        log2p, window_kl = model.target_log2_probs(hidden, targets, reference=base_hidden)
        bits -= float(log2p.sum())
        kl += window_kl
    return bits / baseline.bytes, kl / baseline.bytes, stats


def evaluate(model, baseline, codec):
    """The JSON-ready result of one codec config against `baseline`."""
    start = time.time()
    bpb, kl, stats = codec_run(model, baseline, codec)
    layers = [s.report(layer, codec.methods(layer)) for layer, s in enumerate(stats)]
    total_bytes = sum(s.k_bytes + s.v_bytes for s in stats)
    elements = 2 * sum(s.elements for s in stats)
    result = {
        "base_bpb": baseline.bpb,
        "bpb": bpb,
        "delta_bpb": bpb - baseline.bpb,
        "output_kl_bpb": kl,
        "bits_per_element": 8 * total_bytes / elements,
        "encoded_bytes": total_bytes,
        "elements": elements,
        "layers": layers,
        "seconds": time.time() - start,
    }
    if codec.zstd_level:  # bits_per_element as stored; in memory, block by block:
        result["zstd_level"] = codec.zstd_level
        result["fixed_rate_bits_per_element"] = 8 * sum(s.fixed_bytes for s in stats) / elements
    return result
