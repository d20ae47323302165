"""Whole caches on disk and on the wire (format 1.1): a writer that takes one
layer at a time, random access to any layer, heads and tokens of a file,
appended segments, and a reader of streams as they arrive (pipes, sockets).

    import kvcodec
    with kvcodec.CacheWriter("prompt.kvc", layers=2, heads=8, tokens=512,
                             head_dim=128, preset="tq-mse-b4") as w:
        for k, v in zip(keys, values):          # [heads, tokens, head_dim]
            w.add_layer(k, v)
    with kvcodec.CacheFile("prompt.kvc") as c:
        k0 = c.read(0, "k", tokens=slice(100, 200))
        c.append(new_keys, new_values)           # lists of [heads, new, head_dim]
    for run in kvcodec.read_stream(sock.makefile("rb")):
        use(run.layer, run.token_start, run.keys, run.values)
"""

import ctypes
import os

import numpy as np

from . import _capi
from . import _as_input, _cache_config, _check, _dtype_code, _lib, _tensor, _u32

u32, u64, i32, i64, voidp, charp = (_capi.u32, _capi.u64, ctypes.c_int32, _capi.i64,
                                     _capi.voidp, _capi.charp)
P = ctypes.POINTER

WRITE_FN = ctypes.CFUNCTYPE(ctypes.c_int, voidp, voidp, ctypes.c_size_t)
SYNC_FN = ctypes.CFUNCTYPE(ctypes.c_int, voidp)
READ_FN = ctypes.CFUNCTYPE(ctypes.c_int64, voidp, voidp, ctypes.c_size_t)
READ_AT_FN = ctypes.CFUNCTYPE(ctypes.c_int, voidp, ctypes.c_uint64, voidp, ctypes.c_size_t)


class WriterOptions(ctypes.Structure):
    _fields_ = [("struct_size", u32), ("threads", u32), ("block_tokens", u32),
                ("zstd_level", i32), ("appendable", u32), ("reserved", u32),
                ("model_name", charp), ("model_config_hash", u64), ("sync", SYNC_FN)]


class OpenOptions(ctypes.Structure):
    _fields_ = [("struct_size", u32), ("allow_model_mismatch", u32),
                ("expect_model_name", charp), ("expect_model_config_hash", u64)]


class CacheInfo(ctypes.Structure):
    _fields_ = [("struct_size", u32), ("features", u32), ("stream", _capi.StreamInfo),
                ("segments", u32), ("blocks", u32), ("size", u64), ("ignored_bytes", u64),
                ("has_model", u32), ("reserved", u32), ("model_config_hash", u64),
                ("model_name", ctypes.c_char * 256)]


class LayerRun(ctypes.Structure):
    _fields_ = [("struct_size", u32), ("end", u32), ("layer", u32), ("token_start", u32),
                ("token_count", u32), ("segment", u32)]


class BlockEntry(ctypes.Structure):
    _fields_ = [("struct_size", u32), ("layer", u32), ("kind", u32), ("token_start", u32),
                ("token_count", u32), ("reserved", u32), ("offset", u64), ("size", u64)]


_D = P(_capi.Diagnostics)
_PROTOTYPES = {
    "kvc_writer_options_init": (None, [P(WriterOptions)]),
    "kvc_hash64": (u64, [voidp, ctypes.c_size_t]),
    "kvc_writer_create": (ctypes.c_int, [voidp, P(_capi.CacheDesc), P(WriterOptions), WRITE_FN,
                                         voidp, P(voidp), _D]),
    "kvc_writer_add_layer": (ctypes.c_int, [voidp, P(_capi.Tensor), P(_capi.Tensor), _D]),
    "kvc_writer_finish": (ctypes.c_int, [voidp, P(u64), _D]),
    "kvc_writer_destroy": (None, [voidp]),
    "kvc_open_options_init": (None, [P(OpenOptions)]),
    "kvc_cache_info_init": (None, [P(CacheInfo)]),
    "kvc_cache_open": (ctypes.c_int, [READ_AT_FN, voidp, u64, P(OpenOptions), P(voidp), _D]),
    "kvc_cache_get_info": (ctypes.c_int, [voidp, P(CacheInfo), _D]),
    "kvc_cache_layer_config": (ctypes.c_int, [voidp, u32, P(_capi.TensorConfigStruct),
                                              P(_capi.TensorConfigStruct), _D]),
    "kvc_block_entry_init": (None, [P(BlockEntry)]),
    "kvc_cache_block": (ctypes.c_int, [voidp, u32, P(BlockEntry), _D]),
    "kvc_cache_read": (ctypes.c_int, [voidp, u32, ctypes.c_int, u32, u32, u32, u32,
                                      P(_capi.Tensor), _D]),
    "kvc_cache_append": (ctypes.c_int, [voidp, u32, P(WriterOptions), WRITE_FN, voidp,
                                        P(voidp), _D]),
    "kvc_cache_close": (None, [voidp]),
    "kvc_layer_run_init": (None, [P(LayerRun)]),
    "kvc_reader_create": (ctypes.c_int, [READ_FN, voidp, P(OpenOptions), P(voidp), _D]),
    "kvc_reader_get_info": (ctypes.c_int, [voidp, P(_capi.StreamInfo), _D]),
    "kvc_reader_next": (ctypes.c_int, [voidp, P(LayerRun), _D]),
    "kvc_reader_read": (ctypes.c_int, [voidp, P(_capi.Tensor), P(_capi.Tensor), _D]),
    "kvc_reader_destroy": (None, [voidp]),
}
for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    _f = getattr(_lib, _name)
    _f.restype, _f.argtypes = _restype, _argtypes

_ROPE = {None: 0, "unknown": 0, "split-half": 1, "interleaved": 2}
_KIND = {"k": 0, "v": 1}
_DTYPE_NAMES = {0: np.float32, 1: np.float16, 2: "bf16"}


def hash_config(config):
    """kvc_hash64 of a model's configuration: the bytes of its config.json
    (a path, bytes or str), the model identity's Config_Hash."""
    if isinstance(config, (str, os.PathLike)) and os.path.exists(config):
        with open(config, "rb") as f:
            config = f.read()
    if isinstance(config, str):
        config = config.encode()
    buf = ctypes.create_string_buffer(bytes(config), len(config))
    return int(_lib.kvc_hash64(buf, len(config)))


def _diag():
    return _capi.Diagnostics()


def _writer_options(threads, block_tokens, zstd_level, appendable, model_name, model_config,
                    sync):
    o = WriterOptions()
    _lib.kvc_writer_options_init(ctypes.byref(o))
    o.threads = _u32("threads", threads)
    o.block_tokens = _u32("block_tokens", block_tokens)
    # None: the config's level (kvc_config_zstd_level); 0: none (-1 in C).
    o.zstd_level = 0 if zstd_level is None else (int(zstd_level) or -1)
    o.appendable = 1 if appendable else 0
    if model_name is not None:
        o.model_name = model_name.encode()
    if model_config is not None:
        o.model_config_hash = hash_config(model_config)
    o.sync = sync if sync is not None else SYNC_FN()
    return o


def _open_options(expect_model_name, expect_model_config, allow_model_mismatch):
    o = OpenOptions()
    _lib.kvc_open_options_init(ctypes.byref(o))
    o.allow_model_mismatch = 1 if allow_model_mismatch else 0
    if expect_model_name is not None:
        o.expect_model_name = expect_model_name.encode()
    if expect_model_config is not None:
        o.expect_model_config_hash = hash_config(expect_model_config)
    return o


class _Sink:
    """write/sync callbacks over a binary file object; exceptions are kept
    and re-raised after the library call (they cannot cross C frames)."""

    def __init__(self, file):
        self.file = file
        self.error = None

        def write(_, data, size):
            try:
                self.file.write(ctypes.string_at(data, size))
                return 0
            except Exception as e:  # noqa: BLE001 - re-raised by check()
                self.error = e
                return 1

        def sync(_):
            try:
                self.file.flush()
                if hasattr(self.file, "fileno"):
                    try:
                        os.fsync(self.file.fileno())
                    except OSError:
                        pass  # pipes, sockets: nothing to make durable
                return 0
            except Exception as e:  # noqa: BLE001
                self.error = e
                return 1

        self.write_fn, self.sync_fn = WRITE_FN(write), SYNC_FN(sync)

    def check(self, function, status, diag):
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        _check(function, status, diag)


class CacheWriter:
    """Writes a cache one layer at a time to `file` (a path, written
    atomically, or a binary file object: a pipe, a socket's makefile("wb")).

    Each layer's keys and values are [heads, tokens, head_dim] (float32,
    float16, bfloat16 bits with dtype="bf16", or torch tensors). The file
    ends with a block index for random access, and is appendable unless
    appendable=False (which, without zstd, writes a stream every 1.0
    decoder reads). zstd_level: the lossless stage per block, 1..19, or 0
    for none; None (default) takes the config's (Config.zstd_level, as the
    kv-*z presets name one). model_name / model_config record
    the model's identity (model_config: its config.json path, bytes or
    str)."""

    def __init__(self, file, *, layers, heads, tokens, head_dim, preset=None, config=None,
                 dtype="f16", rope_layout="split-half", rope_base=0.0, position_offset=0,
                 zstd_level=None, block_tokens=4096, appendable=True, model_name=None,
                 model_config=None, threads=0, _append_to=None, _new_tokens=0):
        self._path = None
        if isinstance(file, (str, os.PathLike)):
            self._path = os.fspath(file)
            file = open(self._path + ".tmp", "wb")
        self._file = file
        self._sink = _Sink(file)
        self._options = _writer_options(threads, block_tokens, zstd_level, appendable,
                                        model_name, model_config, self._sink.sync_fn)
        self._handle = voidp()
        self._heads, self._head_dim = heads, head_dim
        diag = _diag()
        if _append_to is not None:
            self._tokens = _new_tokens
            status = _lib.kvc_cache_append(_append_to, _u32("tokens", _new_tokens),
                                           ctypes.byref(self._options), self._sink.write_fn,
                                           None, ctypes.byref(self._handle), ctypes.byref(diag))
            self._sink.check("kvc_cache_append", status, diag)
            return
        self._tokens = tokens
        cfg, owned = _cache_config(preset, config)
        desc = _capi.CacheDesc()
        _lib.kvc_cache_desc_init(ctypes.byref(desc))
        desc.num_layers = _u32("layers", layers)
        desc.num_kv_heads = _u32("heads", heads)
        desc.num_tokens = _u32("tokens", tokens)
        desc.head_dim = _u32("head_dim", head_dim)
        desc.dtype = _dtype_code(dtype)
        desc.rope_layout = _ROPE[rope_layout]
        desc.rope_base = float(rope_base)
        desc.position_offset = _u32("position_offset", position_offset)
        try:
            status = _lib.kvc_writer_create(cfg._ptr, ctypes.byref(desc),
                                            ctypes.byref(self._options), self._sink.write_fn,
                                            None, ctypes.byref(self._handle), ctypes.byref(diag))
            self._sink.check("kvc_writer_create", status, diag)
        except BaseException:
            self._abandon()
            raise
        finally:
            if owned:
                cfg.close()  # the writer keeps the resolved configs

    def add_layer(self, keys, values, dtype=None):
        """The next layer's keys and values, [heads, tokens, head_dim]."""
        k, kc = _as_input(keys, dtype, 3, "keys")
        v, vc = _as_input(values, dtype, 3, "values")
        kt, k = _tensor(k, kc)
        vt, v = _tensor(v, vc)
        diag = _diag()
        status = _lib.kvc_writer_add_layer(self._handle, ctypes.byref(kt), ctypes.byref(vt),
                                           ctypes.byref(diag))
        self._sink.check("kvc_writer_add_layer", status, diag)

    def finish(self):
        """Writes the index and End; returns the stream's size in bytes."""
        total = ctypes.c_uint64(0)
        diag = _diag()
        status = _lib.kvc_writer_finish(self._handle, ctypes.byref(total), ctypes.byref(diag))
        self._sink.check("kvc_writer_finish", status, diag)
        self._close_handle()
        if self._path is not None:
            self._file.close()
            os.replace(self._path + ".tmp", self._path)
            self._path = None
        else:
            self._file.flush()
        return int(total.value)

    def _close_handle(self):
        if self._handle:
            _lib.kvc_writer_destroy(self._handle)
            self._handle = voidp()

    def _abandon(self):
        self._close_handle()
        if self._path is not None:
            self._file.close()
            os.unlink(self._path + ".tmp")
            self._path = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.finish()
        else:
            self._abandon()

    def __del__(self):
        if getattr(self, "_handle", None):
            self._abandon()


class CacheFile:
    """Random access to a cache file (or bytes): `info`, `read` any layer,
    kind, heads and tokens (only the blocks holding them are read), and
    `append` more tokens to every layer (files only). A file whose last
    append was interrupted opens as it was before it (info["ignored_bytes"]).
    With expect_model_name / expect_model_config, a cache made for another
    model raises KvcodecError(MODEL_MISMATCH) unless allow_model_mismatch."""

    def __init__(self, source, *, expect_model_name=None, expect_model_config=None,
                 allow_model_mismatch=False):
        self._path = None
        if isinstance(source, (str, os.PathLike)):
            self._path = os.fspath(source)
            self._fd = os.open(self._path, os.O_RDONLY)
            size = os.fstat(self._fd).st_size

            def read_at(_, offset, data, n):
                try:
                    chunk = os.pread(self._fd, n, offset)
                except OSError:
                    return 1
                if len(chunk) != n:
                    return 1
                ctypes.memmove(data, chunk, n)
                return 0
        else:
            self._fd = None
            self._bytes = bytes(source)
            size = len(self._bytes)
            buf = ctypes.create_string_buffer(self._bytes, size)
            self._buf = buf

            def read_at(_, offset, data, n):
                if offset + n > size:
                    return 1
                ctypes.memmove(data, ctypes.addressof(buf) + offset, n)
                return 0
        self._read_at = READ_AT_FN(read_at)
        self._open = (expect_model_name, expect_model_config, allow_model_mismatch)
        self._handle = voidp()
        options = _open_options(*self._open)
        diag = _diag()
        status = _lib.kvc_cache_open(self._read_at, None, size, ctypes.byref(options),
                                     ctypes.byref(self._handle), ctypes.byref(diag))
        if status != 0:
            self.close()
        _check("kvc_cache_open", status, diag)
        self.info = self._info()

    def _info(self):
        i = CacheInfo()
        _lib.kvc_cache_info_init(ctypes.byref(i))
        diag = _diag()
        _check("kvc_cache_get_info", _lib.kvc_cache_get_info(self._handle, ctypes.byref(i),
                                                             ctypes.byref(diag)), diag)
        s = i.stream
        return {
            "format": f"{s.format_major}.{s.format_minor}", "features": i.features,
            "layers": s.num_layers, "heads": s.num_kv_heads, "tokens": s.num_tokens,
            "head_dim": s.head_dim, "dtype": _DTYPE_NAMES.get(s.dtype),
            "rope_layout": {0: None, 1: "split-half", 2: "interleaved"}.get(s.rope_layout),
            "rope_base": s.rope_base, "position_offset": s.position_offset,
            "segments": i.segments, "blocks": i.blocks, "size": i.size,
            "ignored_bytes": i.ignored_bytes,
            "model_name": i.model_name.decode() if i.has_model else None,
            "model_config_hash": i.model_config_hash if i.has_model else None,
        }

    def read(self, layer, kind, *, heads=slice(None), tokens=slice(None), dtype=np.float32):
        """[heads, tokens, head_dim] of one layer's K ("k") or V ("v");
        heads and tokens are slices (step 1)."""
        h0, h1, hs = heads.indices(self.info["heads"])
        t0, t1, ts = tokens.indices(self.info["tokens"])
        if hs != 1 or ts != 1 or h1 <= h0 or t1 <= t0:
            raise ValueError("heads and tokens must be non-empty slices with step 1")
        code = _dtype_code(dtype)
        out = np.empty((h1 - h0, t1 - t0, self.info["head_dim"]),
                       dtype=np.uint16 if code == 2 else dtype)
        t, out = _tensor(out, code)
        diag = _diag()
        _check("kvc_cache_read", _lib.kvc_cache_read(
            self._handle, _u32("layer", layer), _KIND[kind], h0, h1 - h0, t0, t1 - t0,
            ctypes.byref(t), ctypes.byref(diag)), diag)
        return out

    def blocks(self):
        """Every block's place in stream order: dicts of layer, kind ("k" or
        "v"), token_start, token_count, and offset and size (bytes) of its
        section as stored (after the zstd stage, if any)."""
        out = []
        for index in range(self.info["blocks"]):
            e = BlockEntry()
            _lib.kvc_block_entry_init(ctypes.byref(e))
            diag = _diag()
            _check("kvc_cache_block", _lib.kvc_cache_block(self._handle, index, ctypes.byref(e),
                                                           ctypes.byref(diag)), diag)
            out.append({"layer": e.layer, "kind": "k" if e.kind == _KIND["k"] else "v",
                        "token_start": e.token_start, "token_count": e.token_count,
                        "offset": e.offset, "size": e.size})
        return out

    def layer(self, layer, dtype=np.float32):
        """(keys, values) of one layer, all heads and tokens."""
        return self.read(layer, "k", dtype=dtype), self.read(layer, "v", dtype=dtype)

    def append(self, keys, values, *, zstd_level=0, block_tokens=4096, threads=0, dtype=None):
        """Adds tokens to every layer: keys, values are lists (one per layer)
        of [heads, new_tokens, head_dim]. Writes after the complete cache
        (dropping an interrupted append's bytes); until the new End is
        written and synced, readers see the cache as before."""
        if self._path is None:
            raise ValueError("append needs a cache opened from a file")
        if len(keys) != self.info["layers"] or len(values) != self.info["layers"]:
            raise ValueError(f"append needs {self.info['layers']} layers of keys and values")
        new_tokens = np.asarray(keys[0]).shape[1] if not hasattr(keys[0], "shape") \
            else keys[0].shape[1]
        with open(self._path, "r+b") as f:
            f.truncate(self.info["size"])
            f.seek(self.info["size"])
            writer = CacheWriter(f, layers=0, heads=0, tokens=0, head_dim=0,
                                 zstd_level=zstd_level, block_tokens=block_tokens,
                                 threads=threads, _append_to=self._handle,
                                 _new_tokens=new_tokens)
            for k, v in zip(keys, values):
                writer.add_layer(k, v, dtype=dtype)
            writer.finish()
        self._reopen()

    def _reopen(self):
        path, opts = self._path, self._open
        self.close()
        self.__init__(path, expect_model_name=opts[0], expect_model_config=opts[1],
                      allow_model_mismatch=opts[2])

    def close(self):
        if getattr(self, "_handle", None):
            _lib.kvc_cache_close(self._handle)
            self._handle = voidp()
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class LayerRunData:
    """One layer's tokens [token_start, token_start + token_count) of a
    segment, as read_stream delivers them."""

    def __init__(self, layer, token_start, segment, keys, values):
        self.layer, self.token_start, self.segment = layer, token_start, segment
        self.keys, self.values = keys, values

    def __repr__(self):
        return (f"LayerRunData(layer={self.layer}, tokens={self.token_start}.."
                f"{self.token_start + self.keys.shape[1] - 1}, segment={self.segment})")


def read_stream(file, *, dtype=np.float32, expect_model_name=None, expect_model_config=None,
                allow_model_mismatch=False):
    """Yields every layer run of a stream read from a binary file object (a
    pipe, a socket's makefile("rb"), an open file) as it arrives: all layers
    of the first segment, then of each appended one. Memory: one block plus
    the run being yielded. Raises KvcodecError on damage."""
    error = []

    def read(_, data, n):
        try:
            chunk = file.read1(n) if hasattr(file, "read1") else file.read(n)
        except Exception as e:  # noqa: BLE001 - re-raised below
            error.append(e)
            return -1
        ctypes.memmove(data, chunk, len(chunk))
        return len(chunk)

    read_fn = READ_FN(read)
    options = _open_options(expect_model_name, expect_model_config, allow_model_mismatch)
    handle = voidp()
    diag = _diag()

    def check(function, status):
        if error:
            raise error.pop()
        _check(function, status, diag)

    check("kvc_reader_create", _lib.kvc_reader_create(read_fn, None, ctypes.byref(options),
                                                      ctypes.byref(handle), ctypes.byref(diag)))
    try:
        info = _capi.StreamInfo()
        _lib.kvc_stream_info_init(ctypes.byref(info))
        check("kvc_reader_get_info", _lib.kvc_reader_get_info(handle, ctypes.byref(info),
                                                              ctypes.byref(diag)))
        code = _dtype_code(dtype)
        while True:
            run = LayerRun()
            _lib.kvc_layer_run_init(ctypes.byref(run))
            check("kvc_reader_next", _lib.kvc_reader_next(handle, ctypes.byref(run),
                                                          ctypes.byref(diag)))
            if run.end:
                return
            shape = (info.num_kv_heads, run.token_count, info.head_dim)
            np_dtype = np.uint16 if code == 2 else dtype
            k, v = np.empty(shape, np_dtype), np.empty(shape, np_dtype)
            kt, k = _tensor(k, code)
            vt, v = _tensor(v, code)
            check("kvc_reader_read", _lib.kvc_reader_read(handle, ctypes.byref(kt),
                                                          ctypes.byref(vt), ctypes.byref(diag)))
            yield LayerRunData(run.layer, run.token_start, run.segment, k, v)
    finally:
        _lib.kvc_reader_destroy(handle)
