"""Reading (and, for fixtures, writing) the safetensors format with numpy.

A safetensors file is an 8-byte little-endian header size, a JSON header
naming each tensor's dtype, shape and byte range, then the data. Tensors are
memory-mapped, so a checkpoint larger than memory can still be read layer by
layer.
"""
import json
import os
import struct

import numpy as np

from .errors import EvalError

# safetensors dtype -> numpy dtype; BF16 is read as uint16 and widened.
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
          np.dtype(np.int32): "I32", np.dtype(np.int64): "I64",
          np.dtype(np.uint8): "U8"}
_MAX_HEADER = 100 << 20  # The format's own limit for the JSON header.


def bf16_to_f32(bits):
    """bfloat16 bit patterns (uint16) to float32: the high half of an f32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """The tensors of one file: names, then arrays on demand."""

    def __init__(self, path):
        self.path = path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                prefix = f.read(8)
                if len(prefix) < 8:
                    raise EvalError(f"{path}: not a safetensors file (shorter than 8 bytes)")
                (header_size,) = struct.unpack("<Q", prefix)
                if header_size > min(_MAX_HEADER, size - 8):
                    raise EvalError(f"{path}: not a safetensors file (header size "
                                    f"{header_size} for a file of {size} bytes)")
                header = json.loads(f.read(header_size))
        except OSError as e:
            raise EvalError(f"{path}: {e.strerror}") from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EvalError(f"{path}: safetensors header is not JSON ({e})") from e
        if not isinstance(header, dict):
            raise EvalError(f"{path}: safetensors header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._base = 8 + header_size
        self._data_size = size - self._base
        self._entries = {}
        for name, entry in header.items():
            self._entries[name] = self._check_entry(name, entry)
        self._map = None

    def _check_entry(self, name, entry):
        where = f"{self.path}: tensor {name}"
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = [int(n) for n in entry["shape"]]
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise EvalError(f"{where}: malformed entry {entry!r}") from e
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= self._data_size or \
                end - begin != count * np.dtype(dtype).itemsize:
            raise EvalError(f"{where}: byte range {begin}..{end} does not hold "
                            f"{entry['dtype']} {shape} within the file")
        return entry["dtype"], dtype, shape, begin

    def names(self):
        return list(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def shape(self, name):
        return list(self._entries[name][2])

    def get(self, name, dtype=np.float32):
        """The tensor as a numpy array converted to `dtype` (None: as stored)."""
        if name not in self._entries:
            raise EvalError(f"{self.path}: no tensor {name}")
        st_dtype, np_dtype, shape, begin = self._entries[name]
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        raw = self._map[self._base + begin:self._base + begin + count *
                        np.dtype(np_dtype).itemsize]
        array = raw.view(np_dtype).reshape(shape)
        if st_dtype == "BF16":
            array = bf16_to_f32(array)
        if dtype is None:
            return np.array(array)
        return array.astype(dtype)


def write_safetensors(path, tensors, metadata=None):
    """Writes [(name, array)] (f32, f16, i32, i64 or u8) with string metadata.
    A (name, array, dtype) triple records another safetensors dtype for the
    same bytes, as "BF16" for uint16 bfloat16 bit patterns."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = []
    for name, array, *dtype in tensors:
        array = np.ascontiguousarray(array)
        header[name] = {"dtype": dtype[0] if dtype else _NAMES[array.dtype],
                        "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # Aligns the data, as the reference writer does.
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for array in arrays:
            f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
