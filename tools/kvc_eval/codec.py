"""The KV codec as the evaluation sees it: a kvcodec config resolved per
layer, a round trip of one layer's K or V through an encoded block, and for
configs with a zstd stage, a window's cache as a cache file stores it.

kvcodec's Python binding (bindings/python) is imported from an installed
package, or else from this source tree; the shared library it loads is found
as the binding documents (KVCODEC_LIBRARY, KVC_BUILD_DIR/capi, build/capi).
"""
import io
import os
import sys

import numpy as np

from .errors import EvalError

_BINDING_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                            "bindings", "python")


def import_kvcodec():
    """The kvcodec module; EvalError with the reason when it cannot load."""
    try:
        import kvcodec
        return kvcodec
    except ModuleNotFoundError:
        pass
    except ImportError as e:  # Found, but its shared library did not load.
        raise EvalError(str(e)) from e
    sys.path.insert(0, os.path.normpath(_BINDING_DIR))
    try:
        import kvcodec
        return kvcodec
    except ImportError as e:
        raise EvalError(f"cannot import kvcodec's Python binding: {e}") from e


def load_config(preset=None, config_path=None):
    """(kvcodec.Config, name) from a preset name or a config text file."""
    kvcodec = import_kvcodec()
    if (preset is None) == (config_path is None):
        raise EvalError("give exactly one of --preset and --config")
    try:
        if preset is not None:
            return kvcodec.Config.preset(preset), preset
        try:
            with open(config_path) as f:
                text = f.read()
        except OSError as e:
            raise EvalError(f"{config_path}: {e.strerror}") from e
        return kvcodec.Config.from_text(text), config_path
    except kvcodec.KvcodecError as e:
        raise EvalError(f"{preset or config_path}: {e}") from e


class CacheCodec:
    """A config applied to a cache of `num_layers` layers, one block per
    layer and kind, as an engine stores a prefilled sequence."""

    def __init__(self, config, num_layers, seed=None):
        """seed: if not None, replaces the seed of every method that has one
        (all but raw), to measure how much a result owes to one draw of the
        rotations."""
        self.kvcodec = import_kvcodec()
        self.num_layers = num_layers
        self.zstd_level = config.zstd_level
        try:
            self._methods = [{kind: config.layer(layer, kind, num_layers)
                              for kind in ("k", "v")} for layer in range(num_layers)]
            if seed is not None:
                for methods in self._methods:
                    for kind, method in methods.items():
                        if method.method != "raw":
                            methods[kind] = method.replace(seed=seed)
        except self.kvcodec.KvcodecError as e:
            raise EvalError(f"config: {e}") from e

    def methods(self, layer):
        return self._methods[layer]["k"].text, self._methods[layer]["v"].text

    def stored(self, layers):
        """With a zstd stage: {(layer, kind): (decoded float32, stored bytes)}
        of one window's cache, layers [(k, v)] of float32 holding fp16
        values, written as a cache file holds them (one block per layer and
        kind, each through zstd where that saves 1/64 or more)."""
        kvcodec = self.kvcodec
        lines = ["kvcodec-config 1"]
        lines += [f"layer {layer} k={m['k'].text} v={m['v'].text}"
                  for layer, m in enumerate(self._methods)]
        lines.append(f"zstd {self.zstd_level}")
        heads, tokens, head_dim = layers[0][0].shape
        out = io.BytesIO()
        try:
            config = kvcodec.Config.from_text("\n".join(lines) + "\n")
            with kvcodec.CacheWriter(out, layers=len(layers), heads=heads, tokens=tokens,
                                     head_dim=head_dim, config=config, dtype="f16",
                                     block_tokens=0) as writer:
                for k, v in layers:
                    writer.add_layer(k.astype(np.float16), v.astype(np.float16))
            config.close()
            with kvcodec.CacheFile(out.getvalue()) as cache:
                return {(b["layer"], b["kind"]): (cache.read(b["layer"], b["kind"]), b["size"])
                        for b in cache.blocks()}
        except kvcodec.KvcodecError as e:
            raise EvalError(f"stored cache: {e}") from e

    def roundtrip(self, layer, kind, x):
        """(decoded float32, encoded bytes) of x [heads, tokens, head_dim]."""
        try:
            data = self.kvcodec.encode_block(x, method=self._methods[layer][kind],
                                             kind=kind, layer=layer)
            return self.kvcodec.decode_block(data), len(data)
        except self.kvcodec.KvcodecError as e:
            raise EvalError(f"layer {layer} {kind.upper()}: {e}") from e
