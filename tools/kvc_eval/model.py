"""A Llama-family decoder (Llama, Mistral, Qwen2) in numpy, with a hook on
every layer's post-RoPE keys and values: the tensors an inference engine
caches, so the place where a KV codec acts.

Weights come from a Hugging Face checkpoint folder (config.json and one or
more safetensors shards) and are computed with in float32, as the kvlab
reference does: fp16 weights widen exactly, and float32 accumulation keeps the
fp16 baseline within rounding of a PyTorch fp32 forward.
"""
import json
import math
import os

import numpy as np

from .errors import EvalError
from .safetensors import SafetensorsFile

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")


class ModelConfig:
    """The fields of config.json the forward pass needs, checked."""

    def __init__(self, cfg, where):
        def need(key, kind=int):
            if key not in cfg or cfg[key] is None:
                raise EvalError(f"{where}: config.json lacks {key}")
            try:
                return kind(cfg[key])
            except (TypeError, ValueError) as e:
                raise EvalError(f"{where}: config.json {key} = {cfg[key]!r} is not "
                                f"a {kind.__name__}") from e

        self.model_type = cfg.get("model_type", "llama")
        if self.model_type not in SUPPORTED_TYPES:
            raise EvalError(f"{where}: model_type {self.model_type!r} is not supported "
                            f"({', '.join(SUPPORTED_TYPES)})")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise EvalError(f"{where}: hidden_act {act!r} is not supported (silu)")
        self.vocab_size = need("vocab_size")
        self.hidden_size = need("hidden_size")
        self.num_layers = need("num_hidden_layers")
        self.num_heads = need("num_attention_heads")
        self.num_kv_heads = int(cfg.get("num_key_value_heads") or self.num_heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden_size // self.num_heads)
        self.rms_norm_eps = need("rms_norm_eps", float)
        self.rope_theta = float(cfg.get("rope_theta", 10000.0))
        self.rope_scaling = cfg.get("rope_scaling")
        self.tie_word_embeddings = bool(cfg.get("tie_word_embeddings", False))
        # Mistral sets sliding_window; Qwen2 only when use_sliding_window is
        # true (and then from max_window_layers on, which we do not model).
        window = cfg.get("sliding_window")
        if self.model_type == "qwen2" and not cfg.get("use_sliding_window", False):
            window = None
        if self.model_type == "qwen2" and window is not None:
            raise EvalError(f"{where}: Qwen2 sliding-window attention is not supported")
        self.sliding_window = int(window) if window else None
        self.tokenizer = cfg.get("tokenizer")
        for name in ("num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "hidden_size", "vocab_size"):
            if getattr(self, name) <= 0:
                raise EvalError(f"{where}: config.json {name} must be positive")
        if self.num_heads % self.num_kv_heads:
            raise EvalError(f"{where}: {self.num_heads} attention heads are not a "
                            f"multiple of {self.num_kv_heads} KV heads")
        if self.head_dim % 2:
            raise EvalError(f"{where}: head_dim {self.head_dim} is odd; RoPE needs pairs")


def rope_inverse_frequencies(config):
    """theta^(-2i/d) for the d/2 RoPE pairs, with the checkpoint's scaling."""
    d = config.head_dim
    inv = 1.0 / (config.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    scaling = config.rope_scaling
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / float(scaling["factor"])
    if kind == "llama3":
        # Llama 3.1: long wavelengths divided by the factor, short ones kept,
        # a smooth blend between (transformers' _compute_llama3_parameters).
        factor = float(scaling["factor"])
        low = float(scaling["low_freq_factor"])
        high = float(scaling["high_freq_factor"])
        old = float(scaling["original_max_position_embeddings"])
        wavelength = 2 * math.pi / inv
        smooth = (old / wavelength - low) / (high - low)
        blended = (1 - smooth) * inv / factor + smooth * inv
        return np.where(wavelength > old / low, inv / factor,
                        np.where(wavelength < old / high, inv, blended))
    raise EvalError(f"rope_scaling type {kind!r} is not supported "
                    "(default, linear, llama3)")


def rope_tables(config, positions):
    """cos and sin [T, head_dim] in the split-half (rotate_half) layout."""
    angles = np.outer(positions.astype(np.float64), rope_inverse_frequencies(config))
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x, cos, sin):
    """HF Llama's rotate_half: dimension i pairs with i + d/2."""
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def rms_norm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def attention_mask(tokens, window=None):
    """Additive causal mask [T, T] (0 or -inf), limited to the last `window` keys."""
    t = np.arange(tokens)
    allowed = t[None, :] <= t[:, None]
    if window is not None:
        allowed &= t[None, :] > t[:, None] - window
    return np.where(allowed, 0.0, -np.inf).astype(np.float32)


def attention_probs(q, k, mask):
    """Softmax of q·k/sqrt(d) + mask: q [n, T, d], k [T, d] -> [n, T, T]."""
    s = q @ k.T / np.float32(math.sqrt(q.shape[-1])) + mask
    s -= s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v, mask):
    """GQA attention: q [H, T, d], k and v [KV, T, d] -> output [H, T, d].

    Query head h reads KV head h // (H / KV). One KV group at a time keeps
    the score matrices at [H/KV, T, T].
    """
    group = q.shape[0] // k.shape[0]
    out = np.empty_like(q)
    for h in range(k.shape[0]):
        qs = q[h * group:(h + 1) * group]
        out[h * group:(h + 1) * group] = attention_probs(qs, k[h], mask) @ v[h]
    return out


def _weight_files(directory):
    """The checkpoint's safetensors shards, from the index when there is one."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise EvalError(f"{index}: not a safetensors index ({e})") from e
        return sorted(set(os.path.join(directory, f) for f in weight_map.values()))
    single = os.path.join(directory, "model.safetensors")
    if os.path.exists(single):
        return [single]
    shards = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                    if f.endswith(".safetensors"))
    if not shards:
        raise EvalError(f"{directory}: no safetensors weights")
    return shards


class Model:
    """A checkpoint loaded for the forward pass (weights as float32)."""

    def __init__(self, directory):
        self.directory = directory
        path = os.path.join(directory, "config.json")
        try:
            with open(path) as f:
                raw = json.load(f)
        except OSError as e:
            raise EvalError(f"{path}: {e.strerror}") from e
        except ValueError as e:
            raise EvalError(f"{path}: not JSON ({e})") from e
        self.raw_config = raw
        self.config = ModelConfig(raw, path)
        files = {}
        for shard in _weight_files(directory):
            st = SafetensorsFile(shard)
            for name in st.names():
                files[name] = st
        self._files = files
        c = self.config
        self.embed = self._weight("model.embed_tokens.weight", [c.vocab_size, c.hidden_size])
        self.final_norm = self._weight("model.norm.weight", [c.hidden_size])
        if "lm_head.weight" in files:
            self.lm_head = self._weight("lm_head.weight", [c.vocab_size, c.hidden_size])
        elif c.tie_word_embeddings:
            self.lm_head = self.embed
        else:
            raise EvalError(f"{directory}: no lm_head.weight and embeddings are not tied")
        qd, kvd = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        self.layers = []
        for layer in range(c.num_layers):
            p = f"model.layers.{layer}."
            w = {
                "input_norm": self._weight(p + "input_layernorm.weight", [c.hidden_size]),
                "post_norm": self._weight(p + "post_attention_layernorm.weight",
                                          [c.hidden_size]),
                "q": self._weight(p + "self_attn.q_proj.weight", [qd, c.hidden_size]),
                "k": self._weight(p + "self_attn.k_proj.weight", [kvd, c.hidden_size]),
                "v": self._weight(p + "self_attn.v_proj.weight", [kvd, c.hidden_size]),
                "o": self._weight(p + "self_attn.o_proj.weight", [c.hidden_size, qd]),
                "gate": self._weight(p + "mlp.gate_proj.weight", None),
                "up": self._weight(p + "mlp.up_proj.weight", None),
                "down": self._weight(p + "mlp.down_proj.weight", None),
            }
            # Biases: Qwen2 has them on q, k and v; Llama's attention_bias and
            # mlp_bias add them elsewhere. Present in the checkpoint = used.
            for key, name, size in (("q_bias", "self_attn.q_proj.bias", qd),
                                    ("k_bias", "self_attn.k_proj.bias", kvd),
                                    ("v_bias", "self_attn.v_proj.bias", kvd),
                                    ("o_bias", "self_attn.o_proj.bias", c.hidden_size),
                                    ("gate_bias", "mlp.gate_proj.bias", None),
                                    ("up_bias", "mlp.up_proj.bias", None),
                                    ("down_bias", "mlp.down_proj.bias", c.hidden_size)):
                if p + name in files:
                    w[key] = self._weight(p + name, None if size is None else [size])
            self.layers.append(w)

    def _weight(self, name, shape):
        if name not in self._files:
            raise EvalError(f"{self.directory}: checkpoint lacks {name}")
        array = self._files[name].get(name)
        if shape is not None and list(array.shape) != shape:
            raise EvalError(f"{self.directory}: {name} has shape {list(array.shape)}, "
                            f"config.json implies {shape}")
        return array

    def forward(self, tokens, kv_hook=None):
        """Final hidden states [T, hidden] (after the last RMSNorm) of `tokens`.

        kv_hook(layer, q, k, v, mask) -> (k', v'), all [heads, T, head_dim]
        float32 after RoPE, replaces what attention reads (a KV cache).
        """
        c = self.config
        tokens = np.asarray(tokens)
        if tokens.min() < 0 or tokens.max() >= c.vocab_size:
            raise EvalError(f"token ids must be in 0..{c.vocab_size - 1}")
        T = len(tokens)
        cos, sin = rope_tables(c, np.arange(T))
        mask = attention_mask(T, c.sliding_window)
        eps = c.rms_norm_eps
        x = self.embed[tokens]
        for layer, w in enumerate(self.layers):
            h = rms_norm(x, w["input_norm"], eps)

            def project(name, heads):
                y = h @ w[name].T
                if name + "_bias" in w:
                    y = y + w[name + "_bias"]
                return y.reshape(T, heads, c.head_dim).transpose(1, 0, 2)

            q = apply_rope(project("q", c.num_heads), cos, sin)
            k = apply_rope(project("k", c.num_kv_heads), cos, sin)
            v = project("v", c.num_kv_heads)
            if kv_hook is not None:
                k, v = kv_hook(layer, q, k, v, mask)
            o = attention(q, k, v, mask).transpose(1, 0, 2).reshape(T, -1) @ w["o"].T
            x = x + (o + w["o_bias"] if "o_bias" in w else o)
            h = rms_norm(x, w["post_norm"], eps)
            g = h @ w["gate"].T + w.get("gate_bias", 0)
            u = h @ w["up"].T + w.get("up_bias", 0)
            x = x + (g / (1 + np.exp(-g)) * u) @ w["down"].T + w.get("down_bias", 0)
        return rms_norm(x, self.final_norm, eps)

    def _log_probs(self, hidden):
        logits = (hidden @ self.lm_head.T).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    def target_log2_probs(self, hidden, targets, reference=None, chunk=256):
        """log2 p(targets[t] | prefix) from final hidden states, in float64;
        with `reference` (the final hidden states of another run of the same
        tokens) also Σ_t KL(p_reference ‖ p) in bits.

        The vocabulary projection runs `chunk` tokens at a time so that large
        vocabularies (128k) do not need a [T, vocab] matrix at once.
        """
        out = np.empty(len(targets), dtype=np.float64)
        kl = 0.0
        for s in range(0, len(targets), chunk):
            lp = self._log_probs(hidden[s:s + chunk])
            out[s:s + chunk] = lp[np.arange(len(lp)), targets[s:s + chunk]]
            if reference is not None:
                ref = self._log_probs(reference[s:s + chunk])
                kl += float(np.sum(np.exp(ref) * (ref - lp)))
        out /= math.log(2)
        return out if reference is None else (out, kl / math.log(2))
