"""Persistent prompt caches: save a model's KV cache to a .kvc file and restore
it later (another process, another machine) to continue generation.

Works with Hugging Face transformers caches (DynamicCache and its successors,
or the legacy tuple of (key, value) per layer; tensors [batch=1, kv_heads,
tokens, head_dim] after RoPE) and with plain lists of numpy arrays
[kv_heads, tokens, head_dim]:

    from kvcodec import prompt_cache
    out = model(prompt_ids, use_cache=True)
    prompt_cache.save_cache(out.past_key_values, "prompt.kvc", model.config,
                            preset="turboangle")
    ...
    past = prompt_cache.load_cache("prompt.kvc", model.config)   # a DynamicCache
    model.generate(ids, past_key_values=past, ...)

The file records the model's identity (name and a hash of its configuration):
loading it for a model with another configuration raises
KvcodecError(MODEL_MISMATCH) unless allow_model_mismatch=True.
"""

import json
import os

import numpy as np

from .cache import CacheFile, CacheWriter

# Fields of a transformers config that do not change what a cache means.
_VOLATILE = {"_name_or_path", "transformers_version", "torch_dtype", "use_cache",
             "_attn_implementation", "_attn_implementation_autoset", "output_attentions",
             "output_hidden_states", "return_dict", "_commit_hash"}


def model_identity(config):
    """(name, canonical config JSON) of a model configuration: a transformers
    PretrainedConfig, a dict, or the path of a config.json."""
    if isinstance(config, str):
        with open(config) as f:
            config = json.load(f)
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    name = config.get("_name_or_path") or config.get("model_type") or "model"
    fields = {k: v for k, v in config.items() if k not in _VOLATILE}
    return str(name)[-255:], json.dumps(fields, sort_keys=True, default=str)


def _layers(cache):
    """[(k, v)] of a transformers cache or a sequence of pairs."""
    if hasattr(cache, "layers") and cache.layers and hasattr(cache.layers[0], "keys"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    if hasattr(cache, "to_legacy_cache"):
        return list(cache.to_legacy_cache())
    return [tuple(pair) for pair in cache]


def _numpy(x):
    """A [heads, tokens, dim] numpy array (bf16 as uint16 bits) and its dtype
    name for kvcodec."""
    if type(x).__module__.split(".")[0] == "torch":
        import torch
        x = x.detach().cpu()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f"batch size {x.shape[0]}: save one sequence at a time")
            x = x[0]
        if x.dtype == torch.bfloat16:
            return x.contiguous().view(torch.int16).numpy().view(np.uint16), "bf16"
        if x.dtype not in (torch.float16, torch.float32):
            x = x.float()
        return x.numpy(), "f16" if x.dtype == torch.float16 else "f32"
    a = np.asarray(x)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"batch size {a.shape[0]}: save one sequence at a time")
        a = a[0]
    if a.dtype not in (np.float16, np.float32):
        a = a.astype(np.float32)
    return a, "f16" if a.dtype == np.float16 else "f32"


def save_cache(cache, path, model_config=None, *, preset="turboangle", config=None,
               zstd_level=None, block_tokens=4096, position_offset=0, rope_layout="split-half",
               threads=0):
    """Writes a KV cache to `path` (atomically); returns the file's size.
    model_config (a transformers config, dict or config.json path) gives the
    RoPE base and the identity a later load checks. Hugging Face's Llama-family
    models rotate split halves (rope_layout "split-half"). zstd_level: as
    CacheWriter's (None: the config's)."""
    layers = [(_numpy(k), _numpy(v)) for k, v in _layers(cache)]
    if not layers:
        raise ValueError("the cache has no layers")
    (k0, dtype), _ = layers[0]
    heads, tokens, head_dim = k0.shape
    name = identity = None
    rope_base = 0.0
    if model_config is not None:
        name, identity = model_identity(model_config)
        rope_base = float(json.loads(identity).get("rope_theta") or 0.0)
    with CacheWriter(path, layers=len(layers), heads=heads, tokens=tokens, head_dim=head_dim,
                     preset=preset if config is None else None, config=config, dtype=dtype,
                     rope_layout=rope_layout, rope_base=rope_base,
                     position_offset=position_offset, zstd_level=zstd_level,
                     block_tokens=block_tokens, model_name=name, model_config=identity,
                     threads=threads) as writer:
        for (k, k_dtype), (v, _) in layers:
            writer.add_layer(k, v, dtype="bf16" if k_dtype == "bf16" else None)
    return os.path.getsize(path)


def load_kv(path, model_config=None, *, allow_model_mismatch=False, dtype=np.float32):
    """([keys], [values], info): every layer as numpy [heads, tokens, head_dim]."""
    name = identity = None
    if model_config is not None:
        name, identity = model_identity(model_config)
    with CacheFile(path, expect_model_name=name, expect_model_config=identity,
                   allow_model_mismatch=allow_model_mismatch) as c:
        keys, values = [], []
        for layer in range(c.info["layers"]):
            k, v = c.layer(layer, dtype=dtype)
            keys.append(k)
            values.append(v)
        return keys, values, c.info


def load_cache(path, model_config=None, *, allow_model_mismatch=False, dtype=None,
               device=None):
    """A transformers DynamicCache holding the saved cache ([1, heads, tokens,
    head_dim] per layer, in `dtype`: default the saved dtype), on `device`."""
    import torch
    from transformers import DynamicCache
    keys, values, info = load_kv(path, model_config, allow_model_mismatch=allow_model_mismatch)
    if dtype is None:
        dtype = {np.float16: torch.float16, np.float32: torch.float32,
                 "bf16": torch.bfloat16}.get(info["dtype"], torch.float32)
    cache = DynamicCache()
    for layer, (k, v) in enumerate(zip(keys, values)):
        kt = torch.from_numpy(k)[None].to(device=device, dtype=dtype)
        vt = torch.from_numpy(v)[None].to(device=device, dtype=dtype)
        cache.update(kt, vt, layer)
    return cache
