"""ctypes declarations of kvcodec's C API (capi/include/kvcodec/kvcodec.h) and
the search for the shared library.

The structs are written by hand; tests/test_abi.py compiles
bindings/conformance/abi_layout.c against the header and compares every size
and offset, so a header change these declarations have not followed fails a
test instead of corrupting memory.
"""

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

# The C API version these declarations follow. While the API is 0.x its ABI
# may change with the minor version (kvcodec.h), so the library must match
# major and minor; the SONAME carries the same pair (libkvcodec.so.0.2).
ABI_MAJOR = 0
ABI_MINOR = 2

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
i64 = ctypes.c_int64
size_t = ctypes.c_size_t
voidp = ctypes.c_void_p
charp = ctypes.c_char_p


class Diagnostics(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char * 256)]


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", voidp),
        ("dtype", u32),
        ("ndim", u32),
        ("shape", u64 * 4),
        ("strides", i64 * 4),
    ]


class TensorConfigStruct(ctypes.Structure):
    _fields_ = [
        ("struct_size", u32),
        ("method", u32),
        ("bits", u32),
        ("scalar_format", u32),
        ("flags", u32),
        ("rotation", u32),
        ("seed", u64),
        ("outlier_sixteenths", u32),
        ("angle_bins", u32),
        ("radius_format", u32),
        ("level_bits", u32),
        ("min_bits", u32),
        ("rope_pairing", u32),
    ]


class BlockInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", u32),
        ("layer", u32),
        ("kind", u32),
        ("head_dim", u32),
        ("head_start", u32),
        ("head_count", u32),
        ("token_start", u32),
        ("token_count", u32),
    ]


class CacheDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", u32),
        ("num_layers", u32),
        ("num_kv_heads", u32),
        ("head_dim", u32),
        ("num_tokens", u32),
        ("dtype", u32),
        ("rope_layout", u32),
        ("position_offset", u32),
        ("rope_base", ctypes.c_float),
    ]


class EncodeOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", u32),
        ("threads", u32),
        ("block_tokens", u32),
        ("queries", ctypes.POINTER(Tensor)),
    ]


class DecodeOptions(ctypes.Structure):
    _fields_ = [("struct_size", u32), ("threads", u32)]


class StreamInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", u32),
        ("format_major", u32),
        ("format_minor", u32),
        ("num_layers", u32),
        ("num_kv_heads", u32),
        ("head_dim", u32),
        ("num_tokens", u32),
        ("dtype", u32),
        ("rope_layout", u32),
        ("position_offset", u32),
        ("rope_base", ctypes.c_float),
    ]


class Buffer(ctypes.Structure):
    _fields_ = [("data", voidp), ("size", size_t)]


class AttentionOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", u32),
        ("threads", u32),
        ("scale", ctypes.c_float),
        ("token_begin", u32),
        ("token_end", u32),
        ("flags", u32),
        ("runner", ctypes.c_void_p),  # kvc_parallel_runner: not used from Python
        ("runner_opaque", ctypes.c_void_p),
    ]


STRUCTS = {
    "kvc_diagnostics": Diagnostics,
    "kvc_tensor": Tensor,
    "kvc_tensor_config": TensorConfigStruct,
    "kvc_block_info": BlockInfo,
    "kvc_cache_desc": CacheDesc,
    "kvc_encode_options": EncodeOptions,
    "kvc_decode_options": DecodeOptions,
    "kvc_stream_info": StreamInfo,
    "kvc_buffer": Buffer,
    "kvc_attention_options": AttentionOptions,
}

P = ctypes.POINTER
status = ctypes.c_int  # kvc_status: a C enum, int-sized

# name: (restype, argtypes), in the header's order.
PROTOTYPES = {
    "kvc_version": (u32, []),
    "kvc_version_string": (charp, []),
    "kvc_simd_target": (charp, []),
    "kvc_status_string": (charp, [status]),
    "kvc_tensor_config_init": (None, [P(TensorConfigStruct)]),
    "kvc_tensor_config_parse": (status, [charp, P(TensorConfigStruct), P(Diagnostics)]),
    "kvc_tensor_config_format": (status, [P(TensorConfigStruct), charp, size_t, P(size_t)]),
    "kvc_preset_count": (u32, []),
    "kvc_preset_name": (charp, [u32]),
    "kvc_preset_description": (charp, [u32]),
    "kvc_config_from_preset": (status, [charp, P(voidp), P(Diagnostics)]),
    "kvc_config_parse": (status, [charp, size_t, P(voidp), P(Diagnostics)]),
    "kvc_config_format": (status, [voidp, charp, size_t, P(size_t)]),
    "kvc_config_zstd_level": (ctypes.c_int32, [voidp]),
    "kvc_config_set_layer": (status, [voidp, u32, ctypes.c_int, P(TensorConfigStruct)]),
    "kvc_config_layer": (status, [voidp, u32, u32, ctypes.c_int, P(TensorConfigStruct)]),
    "kvc_config_destroy": (None, [voidp]),
    "kvc_block_bound": (size_t, [P(TensorConfigStruct), u32, u32, u32]),
    "kvc_encode_block": (
        status,
        [P(TensorConfigStruct), u32, ctypes.c_int, u32, u32, P(Tensor), voidp, size_t,
         P(size_t), P(Diagnostics)],
    ),
    "kvc_block_info_init": (None, [P(BlockInfo)]),
    "kvc_get_block_info": (
        status, [voidp, size_t, P(BlockInfo), P(TensorConfigStruct), P(Diagnostics)]),
    "kvc_decode_block": (status, [voidp, size_t, P(Tensor), P(Diagnostics)]),
    "kvc_block_scores": (status, [voidp, size_t, voidp, u32, voidp, size_t, P(Diagnostics)]),
    "kvc_block_attend": (status, [voidp, size_t, voidp, u32, voidp, size_t, P(Diagnostics)]),
    "kvc_attention_options_init": (None, [P(AttentionOptions)]),
    "kvc_decode_attention": (
        status,
        [P(Buffer), size_t, P(Buffer), size_t, voidp, u32, P(AttentionOptions), voidp, size_t,
         voidp, P(Diagnostics)],
    ),
    "kvc_cache_desc_init": (None, [P(CacheDesc)]),
    "kvc_encode_options_init": (None, [P(EncodeOptions)]),
    "kvc_decode_options_init": (None, [P(DecodeOptions)]),
    "kvc_stream_bound": (size_t, [voidp, P(CacheDesc), P(EncodeOptions)]),
    "kvc_encode_stream": (
        status,
        [voidp, P(CacheDesc), P(Tensor), P(Tensor), P(EncodeOptions), voidp, size_t,
         P(size_t), P(Diagnostics)],
    ),
    "kvc_stream_info_init": (None, [P(StreamInfo)]),
    "kvc_get_stream_info": (status, [voidp, size_t, P(StreamInfo), P(Diagnostics)]),
    "kvc_get_stream_layer": (
        status,
        [voidp, size_t, u32, P(TensorConfigStruct), P(TensorConfigStruct), P(u64), P(u64),
         P(Diagnostics)],
    ),
    "kvc_decode_stream": (
        status, [voidp, size_t, P(DecodeOptions), P(Tensor), P(Tensor), P(Diagnostics)]),
}


def _library_names():
    """File names of the shared library on this platform, most specific
    first: the SONAME of the ABI this module follows, then the plain name."""
    if sys.platform == "darwin":
        return [f"libkvcodec.{ABI_MAJOR}.{ABI_MINOR}.dylib", "libkvcodec.dylib"]
    if sys.platform == "win32":
        return ["kvcodec.dll"]
    return [f"libkvcodec.so.{ABI_MAJOR}.{ABI_MINOR}", "libkvcodec.so"]


def _repo_build_dirs():
    """build/capi of the repository this file sits in, when run from the
    tree (bindings/python/kvcodec/_capi.py): KVC_BUILD_DIR first, as
    tools/setup.sh uses it, then build/."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "capi" / "include" / "kvcodec" / "kvcodec.h").is_file():
        return []
    dirs = []
    if os.environ.get("KVC_BUILD_DIR"):
        dirs.append(Path(os.environ["KVC_BUILD_DIR"]) / "capi")
    dirs.append(root / "build" / "capi")
    return dirs


def candidates():
    """Where the library is looked for, in order (bindings/README.md):
    1. $KVCODEC_LIBRARY, a full path: the only candidate when set;
    2. this package's directory (a library shipped inside the package);
    3. the repository's build/capi (KVC_BUILD_DIR/capi first) when this
       package runs from the source tree;
    4. the dynamic loader's own search by SONAME (LD_LIBRARY_PATH, the ld.so
       cache, system directories), then ctypes.util.find_library."""
    env = os.environ.get("KVCODEC_LIBRARY")
    if env:
        return [env]
    found = []
    for directory in [Path(__file__).resolve().parent] + _repo_build_dirs():
        for name in _library_names():
            if (directory / name).is_file():
                found.append(str(directory / name))
    found.extend(_library_names())
    system = ctypes.util.find_library("kvcodec")
    if system:
        found.append(system)
    return found


def load():
    """Loads the first candidate that opens and has the ABI this module
    follows; declares every prototype. Returns (library, path)."""
    tried = []
    for path in candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        missing = [name for name in PROTOTYPES if not hasattr(lib, name)]
        if missing:
            tried.append(f"{path}: lacks {', '.join(missing)}")
            continue
        for name, (restype, argtypes) in PROTOTYPES.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        version = lib.kvc_version()
        major, minor = version // 1000000, version // 1000 % 1000
        if (major, minor) != (ABI_MAJOR, ABI_MINOR):
            tried.append(f"{path}: version {lib.kvc_version_string().decode()}, "
                         f"this binding needs {ABI_MAJOR}.{ABI_MINOR}.x")
            continue
        return lib, path
    raise ImportError(
        "kvcodec: shared library not found; set KVCODEC_LIBRARY to the full path of "
        "libkvcodec (a build configured with -DBUILD_SHARED_LIBS=ON) or install it. Tried:\n  "
        + "\n  ".join(tried))
