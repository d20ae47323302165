"""kvcodec: compression of transformer KV caches, over kvcodec's C API.

Arrays are numpy arrays of float32 or float16; bfloat16 travels as uint16
arrays holding the bits, declared with dtype="bf16" (or an ml_dtypes bfloat16
array, or a torch tensor when torch is installed). Inputs may be strided views:
they are read in place, never copied, unless their strides are not whole
elements. Outputs are new arrays (or `out=` for blocks).

Shapes follow the C API: a block is [heads, tokens, head_dim]; a cache is
[layers, heads, tokens, head_dim] for keys and for values.

    import kvcodec, numpy as np
    k = np.random.default_rng(0).standard_normal((8, 512, 128), np.float32)
    data = kvcodec.encode_block(k, "tq-mse-b4", kind="k", layer=3)
    k2 = kvcodec.decode_block(data)

Every error the library reports is raised as KvcodecError, carrying the status
and the library's one-line diagnostic. Arguments this module can judge itself
(an unsupported dtype, a wrong number of dimensions) raise TypeError or
ValueError before any call.

The shared library is found as bindings/README.md describes (KVCODEC_LIBRARY
first); `library_path` tells which one was loaded.
"""

import ctypes
import enum

import numpy as np

from . import _capi

__version__ = "0.2.0"

_lib, library_path = _capi.load()

__all__ = [
    "Config", "KvcodecError", "Status", "TensorConfig", "block_attend", "block_info",
    "block_scores", "decode_attention", "decode_block", "decode_stream", "encode_block", "encode_stream", "library_path",
    "presets", "preset_description", "simd_target", "stream_info", "version",
    "CacheWriter", "CacheFile", "read_stream", "hash_config",
]


class Status(enum.IntEnum):
    """kvc_status, values pinned by the C API."""
    OK = 0
    INVALID_ARGUMENT = 1
    DST_TOO_SMALL = 2
    NOT_KVCODEC = 3
    UNSUPPORTED_VERSION = 4
    UNSUPPORTED_FEATURE = 5
    TRUNCATED = 6
    CHECKSUM = 7
    CORRUPT = 8
    SHAPE_MISMATCH = 9
    INVALID_VALUE = 10
    OUT_OF_MEMORY = 11
    INTERNAL = 12
    MODEL_MISMATCH = 13
    IO = 14


class KvcodecError(Exception):
    """A failed kvcodec call. `status` is a Status (an int; a plain int for a
    status newer than this module), `status_name` its C name such as
    "KVC_ERR_CHECKSUM", `diagnostic` the library's one-line detail (may be "")."""

    def __init__(self, status, diagnostic="", function=""):
        try:
            status = Status(status)
            name = "KVC_OK" if status == Status.OK else "KVC_ERR_" + status.name
        except ValueError:
            name = f"KVC_STATUS_{int(status)}"
        self.status = status
        self.status_name = name
        self.diagnostic = diagnostic
        self.function = function
        text = _lib.kvc_status_string(int(status)).decode()
        if diagnostic:
            text += ": " + diagnostic
        super().__init__(f"{function}: {text} ({name})" if function else f"{text} ({name})")


def _check(function, status, diag=None):
    if status != 0:
        message = diag.message.decode("utf-8", "replace") if diag is not None else ""
        raise KvcodecError(status, message, function)


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _lib.kvc_version_string().decode()


def simd_target():
    """The SIMD target the library dispatches to ("AVX2", "SCALAR", ...)."""
    return _lib.kvc_simd_target().decode()


def presets():
    """Names of the built-in presets, in the library's order."""
    return [_lib.kvc_preset_name(i).decode() for i in range(_lib.kvc_preset_count())]


def preset_description(name):
    """One line describing a preset."""
    for i in range(_lib.kvc_preset_count()):
        if _lib.kvc_preset_name(i).decode() == name:
            return _lib.kvc_preset_description(i).decode()
    raise ValueError(f"unknown preset {name!r}; presets: {' '.join(presets())}")


# ---------------------------------------------------------------------------
# Enumerations as the C API numbers them, spelled as the rest of kvcodec does.

_DTYPES = {"f32": 0, "f16": 1, "bf16": 2}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_NUMPY_DTYPES = {0: np.float32, 1: np.float16, 2: np.uint16}
_KINDS = {"k": 0, "keys": 0, "v": 1, "values": 1, 0: 0, 1: 1}
_ROPE = {None: 0, "unknown": 0, "split-half": 1, "interleaved": 2}
_ROPE_NAMES = {0: None, 1: "split-half", 2: "interleaved"}
_METHODS = {1: "raw", 2: "tq-mse", 3: "tq-prod", 4: "tq-outlier", 5: "polarquant",
            6: "turboangle", 7: "blockgtq"}


def _kind(kind):
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be 'k' or 'v', not {kind!r}") from None


def _dtype_code(dtype):
    """The kvc_dtype of an output dtype: np.float32, np.float16, "f32",
    "f16" or "bf16" (uint16 bits)."""
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt == np.float32:
        return 0
    if dt == np.float16:
        return 1
    if dt is not None and dt.name == "bfloat16":
        return 2
    raise TypeError(f"dtype must be float32, float16 or 'bf16', not {dtype!r}")


# ---------------------------------------------------------------------------
# Tensor views

def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _from_torch(x, dtype):
    """A numpy view of a CPU torch tensor (a copy for other devices);
    bfloat16 becomes its uint16 bits."""
    import torch
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        if dtype not in (None, "bf16"):
            raise TypeError(f"a bfloat16 tensor cannot be read as {dtype!r}")
        return x.view(torch.int16).numpy().view(np.uint16), "bf16"
    return x.numpy(), dtype


def _as_input(x, dtype, ndim, what):
    """(array, kvc_dtype) for an input tensor, read in place when possible.
    dtype declares how uint16 input is read ("bf16"); for float arrays it may
    repeat their dtype."""
    if _is_torch(x):
        x, dtype = _from_torch(x, dtype)
    a = np.asarray(x)
    if a.dtype == np.uint16:
        if dtype != "bf16":
            raise TypeError(f"{what}: uint16 input holds bfloat16 bits only with dtype='bf16'")
        code = 2
    elif a.dtype.name == "bfloat16":  # ml_dtypes
        code = 2
    elif a.dtype in (np.float32, np.float16):
        code = 0 if a.dtype == np.float32 else 1
    else:
        raise TypeError(f"{what}: dtype {a.dtype} unsupported: use float32, float16, "
                        f"or bfloat16 bits as uint16 with dtype='bf16'")
    if dtype is not None and _dtype_code(dtype) != code:
        raise TypeError(f"{what}: array of {a.dtype} given with dtype={dtype!r}")
    if a.ndim != ndim:
        raise ValueError(f"{what}: expected {ndim} dimensions, got shape {a.shape}")
    return a, code


def _tensor(a, code):
    """A kvc_tensor viewing array a in place. The C API reads all-zero strides
    as "contiguous", and counts strides in elements: arrays that break either
    rule (a broadcast scalar, a view of a structured array) are copied."""
    item = a.itemsize
    if a.size > 1 and not any(a.strides) or any(s % item for s in a.strides):
        a = np.ascontiguousarray(a)
    t = _capi.Tensor()
    t.data = a.ctypes.data
    t.dtype = code
    t.ndim = a.ndim
    for i in range(a.ndim):
        t.shape[i] = a.shape[i]
        t.strides[i] = a.strides[i] // item
    return t, a  # keep a alive while t is in use


def _as_bytes(data):
    """A uint8 view of bytes, bytearray, memoryview or any buffer (no copy)."""
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1 \
            and data.flags.c_contiguous:
        return data
    return np.frombuffer(data, dtype=np.uint8)


def _encode_into(function, bound, call):
    """Allocates `bound` bytes, runs call(buffer address, capacity, &size,
    &diag) and returns the bytes written. A bound of 0 means the arguments are
    invalid: the call then runs with one byte so that the library names the
    problem."""
    buffer = np.empty(max(bound, 1), dtype=np.uint8)
    size = ctypes.c_size_t(0)
    diag = _capi.Diagnostics()
    _check(function, call(buffer.ctypes.data, buffer.size, ctypes.byref(size),
                          ctypes.byref(diag)), diag)
    if bound == 0:
        raise KvcodecError(Status.INTERNAL, "bound was 0 for a valid input", function)
    return buffer[:size.value].tobytes()


def _u32(name, value):
    """value as a C uint32_t argument; ctypes would silently wrap others."""
    if not isinstance(value, (int, np.integer)) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must be an integer in 0..2^32-1, not {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# Configs

class TensorConfig:
    """The method and parameters for K or V of one layer (kvc_tensor_config),
    written as a method string such as "tq-mse-b4", "tq-prod-b3:nc,norm=f32"
    or "angle-n128:radius=lin8" (README, "Methods and presets")."""

    _FIELDS = [name for name, _ in _capi.TensorConfigStruct._fields_ if name != "struct_size"]

    def __init__(self, text):
        self._c = _capi.TensorConfigStruct()
        _lib.kvc_tensor_config_init(ctypes.byref(self._c))
        diag = _capi.Diagnostics()
        _check("kvc_tensor_config_parse",
               _lib.kvc_tensor_config_parse(text.encode(), ctypes.byref(self._c),
                                            ctypes.byref(diag)), diag)

    @classmethod
    def _from_struct(cls, c):
        self = cls.__new__(cls)
        self._c = c
        return self

    @property
    def text(self):
        """The canonical method string."""
        length = ctypes.c_size_t(0)
        status = _lib.kvc_tensor_config_format(ctypes.byref(self._c), None, 0,
                                               ctypes.byref(length))
        if status != Status.DST_TOO_SMALL:
            _check("kvc_tensor_config_format", status)
        buffer = ctypes.create_string_buffer(length.value + 1)
        _check("kvc_tensor_config_format",
               _lib.kvc_tensor_config_format(ctypes.byref(self._c), buffer,
                                             length.value + 1, None))
        return buffer.value.decode()

    def fields(self):
        """Every field of kvc_tensor_config as a dict (method and formats as
        the C enums' numbers)."""
        return {name: getattr(self._c, name) for name in self._FIELDS}

    def replace(self, **changes):
        """A copy with some fields changed (names as in fields()), checked by
        the library: an invalid combination raises KvcodecError."""
        c = _capi.TensorConfigStruct()
        ctypes.pointer(c)[0] = self._c
        for name, value in changes.items():
            if name not in self._FIELDS:
                raise ValueError(f"kvc_tensor_config has no field {name!r}")
            setattr(c, name, value)
        config = TensorConfig._from_struct(c)
        config.text  # validates
        return config

    @property
    def method(self):
        """The method's family: "raw", "tq-mse", "tq-prod", "tq-outlier",
        "polarquant", "turboangle" or "blockgtq"."""
        return _METHODS.get(self._c.method, str(self._c.method))

    @property
    def bits(self):
        return self._c.bits

    @property
    def seed(self):
        return self._c.seed

    def __eq__(self, other):
        return isinstance(other, TensorConfig) and self.fields() == other.fields()

    def __hash__(self):
        return hash(tuple(self.fields().values()))

    def __repr__(self):
        return f"TensorConfig({self.text!r})"


def _tensor_config(method):
    return method if isinstance(method, TensorConfig) else TensorConfig(method)


class Config:
    """A cache config (kvc_config): a rule table giving each layer its K and V
    TensorConfig. Build one from a preset or from config text:

        Config.preset("tq-mse-b4")
        Config.from_text("kvcodec-config 1\\nall kv=tq-mse-b3\\nfirst 2 kv=raw-f16\\n")

    A Config may be shared by threads that encode with it, but must not be
    changed (set_layer) while another thread uses it."""

    def __init__(self, handle):
        """Use Config.preset or Config.from_text."""
        self._handle = handle

    @classmethod
    def preset(cls, name):
        handle = ctypes.c_void_p()
        diag = _capi.Diagnostics()
        _check("kvc_config_from_preset",
               _lib.kvc_config_from_preset(name.encode(), ctypes.byref(handle),
                                           ctypes.byref(diag)), diag)
        return cls(handle)

    @classmethod
    def from_text(cls, text):
        raw = text.encode()
        handle = ctypes.c_void_p()
        diag = _capi.Diagnostics()
        _check("kvc_config_parse",
               _lib.kvc_config_parse(raw, len(raw), ctypes.byref(handle),
                                     ctypes.byref(diag)), diag)
        return cls(handle)

    @property
    def _ptr(self):
        if not self._handle:
            raise ValueError("this Config was closed")
        return self._handle

    @property
    def text(self):
        """The config as config text."""
        length = ctypes.c_size_t(0)
        status = _lib.kvc_config_format(self._ptr, None, 0, ctypes.byref(length))
        if status not in (Status.OK, Status.DST_TOO_SMALL):
            _check("kvc_config_format", status)
        buffer = ctypes.create_string_buffer(length.value + 1)
        _check("kvc_config_format",
               _lib.kvc_config_format(self._ptr, buffer, length.value + 1, None))
        return buffer.value.decode()

    @property
    def zstd_level(self):
        """The zstd level (1..19) caches written with this config store their
        blocks with unless the writer chooses (config text "zstd L"); 0:
        none. Single blocks (encode_block) are fixed-rate whatever it says."""
        return int(_lib.kvc_config_zstd_level(self._ptr))

    def set_layer(self, layer, kind, method):
        """Gives layer `layer`'s K or V (kind "k" or "v") the method (a
        method string or TensorConfig), overriding the rules."""
        c = _tensor_config(method)._c
        _check("kvc_config_set_layer",
               _lib.kvc_config_set_layer(self._ptr, _u32("layer", layer), _kind(kind),
                                         ctypes.byref(c)))

    def layer(self, layer, kind, num_layers):
        """The TensorConfig of K or V of layer `layer` in a cache of
        `num_layers` layers (rules such as "last 2" depend on it)."""
        c = _capi.TensorConfigStruct()
        _lib.kvc_tensor_config_init(ctypes.byref(c))
        _check("kvc_config_layer",
               _lib.kvc_config_layer(self._ptr, _u32("layer", layer),
                                     _u32("num_layers", num_layers), _kind(kind),
                                     ctypes.byref(c)))
        return TensorConfig._from_struct(c)

    def close(self):
        """Frees the C object now (otherwise when garbage collected)."""
        if self._handle:
            _lib.kvc_config_destroy(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) and _lib is not None:
            self.close()

    def __repr__(self):
        return f"Config.from_text({self.text!r})"


def _cache_config(preset, config):
    """(Config, owned) for the preset-or-config argument pair."""
    if (preset is None) == (config is None):
        raise TypeError("give exactly one of preset and config")
    if preset is not None:
        return Config.preset(preset), True
    if isinstance(config, Config):
        return config, False
    if isinstance(config, str):
        return Config.from_text(config), True
    raise TypeError(f"config must be a Config or config text, not {type(config).__name__}")


# The most layers a stream holds: resolving a rule table for it puts every
# layer far from the end.
_MAX_LAYERS = 0xFFFF


def _block_config(preset, config, method, layer, kind, num_layers):
    """The TensorConfig a block is encoded with."""
    if method is not None:
        if preset is not None or config is not None:
            raise TypeError("give one of preset, config and method")
        return _tensor_config(method)
    cache, owned = _cache_config(preset, config)
    try:
        if num_layers is not None:
            return cache.layer(layer, kind, num_layers)
        # Without the cache's depth, "last N" rules are ambiguous: the layer is
        # the last one, or far from the end. The choice is safe only when both
        # readings agree (then every depth agrees: a "last" rule that covers
        # the last layer can only be outranked by a later rule that covers it
        # at every depth).
        near = cache.layer(layer, kind, layer + 1)
        if near != cache.layer(layer, kind, _MAX_LAYERS):
            raise ValueError(f"this config's method for layer {layer} depends on the number "
                             f"of layers (a 'last N' rule): pass num_layers")
        return near
    finally:
        if owned:
            cache.close()


# ---------------------------------------------------------------------------
# Blocks

def encode_block(x, preset=None, *, config=None, method=None, kind="k", layer=0,
                 num_layers=None, head_start=0, token_start=0, dtype=None):
    """Encodes x, [heads, tokens, head_dim], as a standalone block; returns
    its bytes. The method comes from a preset name, a Config (or config text)
    resolved for `layer` and `kind`, or directly from `method` (a method
    string or TensorConfig). num_layers matters only for configs with "last
    N" rules. The block records layer, kind, head_start and token_start."""
    layer, head_start, token_start = (_u32("layer", layer), _u32("head_start", head_start),
                                      _u32("token_start", token_start))
    tc = _block_config(preset, config, method, layer, kind, num_layers)
    a, code = _as_input(x, dtype, 3, "x")
    t, keep = _tensor(a, code)
    heads, tokens, dim = a.shape
    too_big = max(heads, tokens, dim) > 0xFFFFFFFF
    bound = 0 if too_big else _lib.kvc_block_bound(ctypes.byref(tc._c), heads, tokens, dim)
    data = _encode_into("kvc_encode_block", bound, lambda dst, cap, size, diag:
                        _lib.kvc_encode_block(ctypes.byref(tc._c), layer, _kind(kind),
                                              head_start, token_start, ctypes.byref(t),
                                              dst, cap, size, diag))
    del keep
    return data


def _block_header(data):
    buf = _as_bytes(data)
    info = _capi.BlockInfo()
    _lib.kvc_block_info_init(ctypes.byref(info))
    c = _capi.TensorConfigStruct()
    _lib.kvc_tensor_config_init(ctypes.byref(c))
    diag = _capi.Diagnostics()
    _check("kvc_get_block_info",
           _lib.kvc_get_block_info(buf.ctypes.data, buf.size, ctypes.byref(info),
                                   ctypes.byref(c), ctypes.byref(diag)), diag)
    return buf, info, TensorConfig._from_struct(c)


def block_info(data):
    """A block's header: layer, kind ("k"/"v"), head_start, head_count,
    token_start, token_count, head_dim, and its method string."""
    _, info, tc = _block_header(data)
    return {
        "layer": info.layer,
        "kind": "k" if info.kind == 0 else "v",
        "head_start": info.head_start,
        "head_count": info.head_count,
        "token_start": info.token_start,
        "token_count": info.token_count,
        "head_dim": info.head_dim,
        "method": tc.text,
    }


def decode_block(data, dtype=None, *, out=None):
    """Decodes a block into a new [heads, tokens, head_dim] array of dtype
    (float32 by default, float16, or "bf16": uint16 bits), or into `out`, a
    writable array or strided view of that shape (uint16 `out` needs
    dtype="bf16"); returns the array."""
    buf, info, _ = _block_header(data)
    if out is None:
        code = _dtype_code(np.float32 if dtype is None else dtype)
        out = np.empty((info.head_count, info.token_count, info.head_dim),
                       dtype=_NUMPY_DTYPES[code])
    else:
        out, code = _as_output(out, dtype, 3)
    t, _ = _tensor(out, code)
    diag = _capi.Diagnostics()
    _check("kvc_decode_block",
           _lib.kvc_decode_block(buf.ctypes.data, buf.size, ctypes.byref(t),
                                 ctypes.byref(diag)), diag)
    return out


def _as_output(out, dtype, ndim):
    """(array, kvc_dtype) for a caller's output array, written in place: it
    must be writable, without overlapping elements."""
    if not isinstance(out, np.ndarray):
        raise TypeError("out must be a numpy array")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if any(s == 0 and n > 1 for s, n in zip(out.strides, out.shape)) or \
            any(s % out.itemsize for s in out.strides):
        raise ValueError("out must not repeat elements (zero strides) and its strides "
                         "must be whole elements")
    return _as_input(out, dtype, ndim, "out")


def block_scores(data, queries):
    """Inner products of queries with the block's vectors, computed by the
    codec (TurboQuant: in its rotated domain, without decoding; tq-prod:
    TurboQuant's unbiased estimator). queries: [head_count, head_dim] or
    [head_count, queries_per_head, head_dim] (GQA), converted to contiguous
    float32. Returns float32 [head_count, queries_per_head, token_count]."""
    buf, info, _ = _block_header(data)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim == 2:
        q = q[:, None, :]
    if q.ndim != 3 or q.shape[0] != info.head_count or q.shape[2] != info.head_dim \
            or q.shape[1] == 0:
        raise ValueError(f"queries must be [{info.head_count}, n, {info.head_dim}] "
                         f"(or [{info.head_count}, {info.head_dim}]), got {np.shape(queries)}")
    scores = np.empty((info.head_count, q.shape[1], info.token_count), dtype=np.float32)
    diag = _capi.Diagnostics()
    _check("kvc_block_scores",
           _lib.kvc_block_scores(buf.ctypes.data, buf.size, q.ctypes.data, q.shape[1],
                                 scores.ctypes.data, scores.size, ctypes.byref(diag)), diag)
    return scores


def block_attend(data, weights):
    """Weighted sums of the block's vectors, computed by the codec (rotation
    methods: accumulated in their rotated domain, rotated back once per
    output): out[h, q] = sum over t of weights[h, q, t] * v[h, t]. weights:
    [head_count, token_count] or [head_count, queries_per_head, token_count]
    (block_scores' layout), converted to contiguous float32. Returns float32
    [head_count, queries_per_head, head_dim]."""
    buf, info, _ = _block_header(data)
    w = np.ascontiguousarray(weights, dtype=np.float32)
    if w.ndim == 2:
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[0] != info.head_count or w.shape[2] != info.token_count \
            or w.shape[1] == 0:
        raise ValueError(f"weights must be [{info.head_count}, n, {info.token_count}] "
                         f"(or [{info.head_count}, {info.token_count}]), got {np.shape(weights)}")
    out = np.empty((info.head_count, w.shape[1], info.head_dim), dtype=np.float32)
    diag = _capi.Diagnostics()
    _check("kvc_block_attend",
           _lib.kvc_block_attend(buf.ctypes.data, buf.size, w.ctypes.data, w.shape[1],
                                 out.ctypes.data, out.size, ctypes.byref(diag)), diag)
    return out


def _buffers(blocks, what):
    """A kvc_buffer array over a sequence of blocks (bytes-like), read in
    place; the uint8 views are returned to be kept alive during the call."""
    if isinstance(blocks, (bytes, bytearray, memoryview, np.ndarray)):
        raise TypeError(f"{what} must be a sequence of blocks, not one block")
    views = [_as_bytes(block) for block in blocks]
    array = (_capi.Buffer * max(len(views), 1))()
    for slot, view in zip(array, views):
        slot.data = view.ctypes.data
        slot.size = view.size
    return array, len(views), views


# kvc_attention_options.flags
_ATTENTION_TRUSTED_BLOCKS = 0x1


def decode_attention(key_blocks, value_blocks, queries, scale=None, token_begin=0,
                     token_end=0, threads=0, return_lse=False, trusted_blocks=False):
    """One decode step of attention for one layer on its encoded K and V
    blocks (standalone blocks of that layer, in any order, together covering
    KV heads [h0, h0 + H) and, for each, one contiguous token range exactly
    once; the value blocks the same heads and tokens): for every query head
    j, out[j] = softmax(scale * q_j . k_t) . v_t over the attended tokens.

    queries: [num_query_heads, head_dim], num_query_heads a multiple of H;
    query head j reads KV head h0 + j // (num_query_heads // H) (GQA).
    scale: None for 1/sqrt(head_dim). token_begin, token_end: the attended
    tokens [token_begin, token_end) as the blocks number them; token_end 0
    means through the last token. threads: 0 for one per core.
    trusted_blocks=True skips the blocks' checksums (for blocks checked once
    when loaded, e.g. by block_info): each block is then read once per step;
    their structure is still checked, but damage gives a wrong result.

    Returns float32 out [num_query_heads, head_dim]; with return_lse=True,
    (out, lse), lse float32 [num_query_heads]: the natural log of each head's
    softmax denominator sum over t of exp(scale * q_j . k_t), to merge with
    attention over other tokens."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    keys, key_count, keep_k = _buffers(key_blocks, "key_blocks")
    values, value_count, keep_v = _buffers(value_blocks, "value_blocks")
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"queries must be [num_query_heads, head_dim], got {np.shape(queries)}")
    if key_count:
        # The library reads num_query_heads x the blocks' head_dim floats of
        # queries: the array must hold exactly that many.
        head_dim = _block_header(keep_k[0])[1].head_dim
        if q.shape[1] != head_dim:
            raise ValueError(f"queries must be [num_query_heads, {head_dim}] (the blocks' "
                             f"head_dim), got {np.shape(queries)}")
    options = _capi.AttentionOptions()
    _lib.kvc_attention_options_init(ctypes.byref(options))
    if scale is not None:
        if scale == 0:
            raise ValueError("scale 0 cannot be passed: the C API reads 0 as 1/sqrt(head_dim) "
                             "(scale=None)")
        options.scale = scale
    options.threads = _u32("threads", threads)
    options.token_begin = _u32("token_begin", token_begin)
    options.token_end = _u32("token_end", token_end)
    options.flags = _ATTENTION_TRUSTED_BLOCKS if trusted_blocks else 0
    out = np.empty(q.shape, dtype=np.float32)
    lse = np.empty(q.shape[0], dtype=np.float32) if return_lse else None
    diag = _capi.Diagnostics()
    _check("kvc_decode_attention",
           _lib.kvc_decode_attention(keys, key_count, values, value_count, q.ctypes.data,
                                     _u32("num_query_heads", q.shape[0]),
                                     ctypes.byref(options), out.ctypes.data, out.size,
                                     lse.ctypes.data if return_lse else None,
                                     ctypes.byref(diag)), diag)
    del keep_k, keep_v
    return (out, lse) if return_lse else out


# ---------------------------------------------------------------------------
# Streams: whole caches

def _as_cache(layers, dtype, what):
    """A 4-D array [layers, heads, tokens, head_dim] from one, or from a
    sequence of 3-D per-layer arrays (stacked: a copy)."""
    if isinstance(layers, (list, tuple)):
        arrays = []
        for i, x in enumerate(layers):
            a, code = _as_input(x, dtype, 3, f"{what}[{i}]")
            arrays.append((a, code))
        if not arrays:
            raise ValueError(f"{what}: no layers")
        if len({code for _, code in arrays}) != 1 or len({a.shape for a, _ in arrays}) != 1:
            raise ValueError(f"{what}: every layer needs the same dtype and shape")
        return np.stack([a for a, _ in arrays]), arrays[0][1]
    return _as_input(layers, dtype, 4, what)


def encode_stream(layers_k, layers_v, preset=None, *, config=None, threads=0,
                  block_tokens=0, dtype=None, rope_layout=None, position_offset=0,
                  rope_base=0.0, queries=None):
    """Encodes a whole cache; returns the stream's bytes.

    layers_k, layers_v: [layers, heads, tokens, head_dim] arrays (or lists of
    [heads, tokens, head_dim] per layer) of one dtype. preset or config
    (Config or config text) chooses the methods. threads: 0 for one per core.
    block_tokens: tokens per block (0: all in one). rope_layout ("split-half",
    "interleaved" or None), position_offset and rope_base describe the cache
    (recorded; Block-GTQ pairs RoPE dimensions by the layout). queries:
    optional [layers, query_heads, tokens, head_dim] sample that Block-GTQ
    adds to the keys' energy."""
    keys, code_k = _as_cache(layers_k, dtype, "layers_k")
    values, code_v = _as_cache(layers_v, dtype, "layers_v")
    if rope_layout not in _ROPE:
        raise ValueError(f"rope_layout must be 'split-half', 'interleaved' or None, "
                         f"not {rope_layout!r}")
    cache, owned = _cache_config(preset, config)
    try:
        desc = _capi.CacheDesc()
        _lib.kvc_cache_desc_init(ctypes.byref(desc))
        too_big = max(keys.shape) > 0xFFFFFFFF
        if not too_big:
            desc.num_layers, desc.num_kv_heads, desc.num_tokens, desc.head_dim = keys.shape
        desc.dtype = code_k
        desc.rope_layout = _ROPE[rope_layout]
        desc.position_offset = _u32("position_offset", position_offset)
        desc.rope_base = rope_base
        options = _capi.EncodeOptions()
        _lib.kvc_encode_options_init(ctypes.byref(options))
        options.threads = _u32("threads", threads)
        options.block_tokens = _u32("block_tokens", block_tokens)
        tk, keep_k = _tensor(keys, code_k)
        tv, keep_v = _tensor(values, code_v)
        if queries is not None:
            q, code_q = _as_input(queries, dtype, 4, "queries")
            tq, keep_q = _tensor(q, code_q)
            options.queries = ctypes.pointer(tq)
        bound = 0 if too_big else _lib.kvc_stream_bound(cache._ptr, ctypes.byref(desc),
                                                        ctypes.byref(options))
        return _encode_into("kvc_encode_stream", bound, lambda dst, cap, size, diag:
                            _lib.kvc_encode_stream(cache._ptr, ctypes.byref(desc),
                                                   ctypes.byref(tk), ctypes.byref(tv),
                                                   ctypes.byref(options), dst, cap, size,
                                                   diag))
    finally:
        if owned:
            cache.close()


def _stream_header(buf):
    info = _capi.StreamInfo()
    _lib.kvc_stream_info_init(ctypes.byref(info))
    diag = _capi.Diagnostics()
    _check("kvc_get_stream_info",
           _lib.kvc_get_stream_info(buf.ctypes.data, buf.size, ctypes.byref(info),
                                    ctypes.byref(diag)), diag)
    return info


def stream_info(data, layers=True):
    """A stream's header as a dict: format ("1.0"), num_layers, num_kv_heads,
    num_tokens, head_dim, dtype of the source ("f16"...), rope_layout,
    position_offset, rope_base; with layers=True also "layers", one dict per
    layer: its K and V method strings and bytes (this walks the stream)."""
    buf = _as_bytes(data)
    info = _stream_header(buf)
    result = {
        "format": f"{info.format_major}.{info.format_minor}",
        "num_layers": info.num_layers,
        "num_kv_heads": info.num_kv_heads,
        "num_tokens": info.num_tokens,
        "head_dim": info.head_dim,
        "dtype": _DTYPE_NAMES.get(info.dtype, str(info.dtype)),
        "rope_layout": _ROPE_NAMES.get(info.rope_layout, str(info.rope_layout)),
        "position_offset": info.position_offset,
        "rope_base": info.rope_base,
    }
    if layers:
        result["layers"] = []
        for layer in range(info.num_layers):
            k, v = _capi.TensorConfigStruct(), _capi.TensorConfigStruct()
            _lib.kvc_tensor_config_init(ctypes.byref(k))
            _lib.kvc_tensor_config_init(ctypes.byref(v))
            k_bytes, v_bytes = ctypes.c_uint64(), ctypes.c_uint64()
            diag = _capi.Diagnostics()
            _check("kvc_get_stream_layer",
                   _lib.kvc_get_stream_layer(buf.ctypes.data, buf.size, layer,
                                             ctypes.byref(k), ctypes.byref(v),
                                             ctypes.byref(k_bytes), ctypes.byref(v_bytes),
                                             ctypes.byref(diag)), diag)
            result["layers"].append({
                "k": TensorConfig._from_struct(k).text,
                "v": TensorConfig._from_struct(v).text,
                "k_bytes": k_bytes.value,
                "v_bytes": v_bytes.value,
            })
    return result


def decode_stream(data, dtype=None, *, threads=0, keys=True, values=True):
    """Decodes a whole stream into (list_k, list_v): per layer, a
    [heads, tokens, head_dim] array of dtype (float32 by default, float16 or
    "bf16"),
    views into one [layers, heads, tokens, head_dim] array each. keys=False or
    values=False skips decoding that half (its structure and checksums are
    still checked) and gives None in its place."""
    if not keys and not values:
        raise ValueError("decode keys, values or both")
    buf = _as_bytes(data)
    info = _stream_header(buf)
    code = _dtype_code(np.float32 if dtype is None else dtype)
    shape = (info.num_layers, info.num_kv_heads, info.num_tokens, info.head_dim)
    out_k = np.empty(shape, dtype=_NUMPY_DTYPES[code]) if keys else None
    out_v = np.empty(shape, dtype=_NUMPY_DTYPES[code]) if values else None
    tk = ctypes.byref(_tensor(out_k, code)[0]) if keys else None
    tv = ctypes.byref(_tensor(out_v, code)[0]) if values else None
    options = _capi.DecodeOptions()
    _lib.kvc_decode_options_init(ctypes.byref(options))
    options.threads = _u32("threads", threads)
    diag = _capi.Diagnostics()
    _check("kvc_decode_stream",
           _lib.kvc_decode_stream(buf.ctypes.data, buf.size, ctypes.byref(options), tk, tv,
                                  ctypes.byref(diag)), diag)
    return (list(out_k) if keys else None, list(out_v) if values else None)


# Whole caches on disk and on the wire (kvcodec.cache); kvcodec.prompt_cache
# builds on it for transformers caches.
from .cache import CacheFile, CacheWriter, hash_config, read_stream  # noqa: E402
