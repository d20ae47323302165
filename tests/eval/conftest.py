"""Shared fixtures of the kvc-eval and kvc tune tests.

Needs kvcodec's shared library for the Python binding (KVCODEC_LIBRARY, or
a BUILD_SHARED_LIBS build in $KVC_BUILD_DIR or build/) and the kvc tool
($KVC_BIN, else $KVC_BUILD_DIR/tools/kvc, else build/tools/kvc). The parts
on kvlab (../shared/kvlab beside the checkout) are skipped when it is absent.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOLS = os.path.join(ROOT, "tools")
KVLAB = os.path.join(ROOT, "..", "shared", "kvlab")
FIXTURE = os.path.join(ROOT, "tests", "data", "kvlab-A-2L-64T.safetensors")
# Real text for the tiny models: any bytes do, prose is more realistic.
TEXT = os.path.join(ROOT, "codec", "FORMAT.md")

sys.path.insert(0, TOOLS)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def kvc_binary():
    if os.environ.get("KVC_BIN"):
        return os.environ["KVC_BIN"]
    build = os.environ.get("KVC_BUILD_DIR", os.path.join(ROOT, "build"))
    return os.path.join(build, "tools", "kvc")


def run_kvc(*args):
    kvc = kvc_binary()
    if not os.path.exists(kvc):
        pytest.fail(f"kvc not built at {kvc} (set KVC_BIN or KVC_BUILD_DIR)")
    return subprocess.run([kvc, *args], capture_output=True, text=True)


def run_kvc_eval(*args):
    return subprocess.run([sys.executable, os.path.join(TOOLS, "kvc-eval"), *args],
                          capture_output=True, text=True)


needs_kvlab = pytest.mark.skipif(not os.path.isdir(KVLAB),
                                 reason="../shared/kvlab is not beside the checkout")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer GQA Llama with head_dim 16, written once per session."""
    from tiny_model import make_config, make_weights, write_model
    directory = str(tmp_path_factory.mktemp("tiny-llama"))
    write_model(directory, make_weights(), make_config())
    return directory
