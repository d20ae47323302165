"""The hand-written ctypes declarations against the C header: every struct's
size and field offsets (bindings/conformance/abi_layout.c, compiled here), and
every function bound being in the header."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kvcodec import _capi

ROOT = Path(__file__).resolve().parents[3]
HEADER_DIR = ROOT / "capi" / "include"


def test_struct_layout_matches_the_header(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler")
    program = tmp_path / "abi_layout"
    subprocess.run([compiler, "-std=c99", "-I", str(HEADER_DIR),
                    str(ROOT / "bindings" / "conformance" / "abi_layout.c"), "-o",
                    str(program)], check=True)
    lines = subprocess.run([str(program)], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    structs = dict(_capi.STRUCTS)
    from kvcodec import cache  # caches on disk (format 1.1)
    structs.update({"kvc_writer_options": cache.WriterOptions,
                    "kvc_open_options": cache.OpenOptions, "kvc_cache_info": cache.CacheInfo,
                    "kvc_layer_run": cache.LayerRun, "kvc_block_entry": cache.BlockEntry})
    checked = set()
    for line in filter(None, lines):
        name, value = line.split()
        struct_name, _, field = name.partition(".")
        struct = structs[struct_name]
        actual = getattr(struct, field).offset if field else __import__("ctypes").sizeof(struct)
        assert actual == int(value), f"{name}: ctypes {actual}, C {value}"
        if field:
            checked.add((struct_name, field))
    for struct_name, struct in structs.items():
        for field, _ in struct._fields_:
            assert (struct_name, field) in checked, f"{struct_name}.{field} unchecked"


def test_every_bound_function_is_in_the_header():
    # A subset, not equality: the header may grow ahead of the bindings (a
    # function not bound is no hazard); the structs bound are checked above.
    header = (HEADER_DIR / "kvcodec" / "kvcodec.h").read_text()
    declared = set(re.findall(r"KVC_API\s[^;(]*?\b(kvc_\w+)\s*\(", header))
    assert len(declared) > 20
    assert set(_capi.PROTOTYPES) <= declared


def test_every_status_of_the_header_is_named():
    import kvcodec
    header = (HEADER_DIR / "kvcodec" / "kvcodec.h").read_text()
    statuses = {name: int(value) for name, value in
                re.findall(r"\bKVC_(?:ERR_)?(\w+) = (\d+),?\s", header.split("kvc_status;")[0]
                           .split("typedef enum kvc_status")[1])}
    assert statuses["OK"] == 0 and len(statuses) > 10
    assert statuses == {s.name: s.value for s in kvcodec.Status}
