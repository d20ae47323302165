"""The KV codec as the evaluation sees it: a kvcodec config resolved per
layer, and a round trip of one layer's K or V through an encoded block.

kvcodec's Python binding (bindings/python) is imported from an installed
package, or else from this source tree; the shared library it loads is found
as the binding documents (KVCODEC_LIBRARY, KVC_BUILD_DIR/capi, build/capi).
"""
import os
import sys

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

    def roundtrip(self, layer, kind, x):
        """(decoded float32, encoded bytes) of x [heads, tokens, head_dim]."""
        try:
            data = self.kvcodec.encode_block(x, method=self._methods[layer][kind],
                                             kind=kind, layer=layer)
            return self.kvcodec.decode_block(data), len(data)
        except self.kvcodec.KvcodecError as e:
            raise EvalError(f"layer {layer} {kind.upper()}: {e}") from e
